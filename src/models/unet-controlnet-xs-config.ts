/** UNetControlNetXSModel's config.json keys with diffusers' defaults. */
import { ConfigError } from '../errors.js';
import { parseConfig, type Camelize, type Warn } from '../util/config.js';
import { checkTimeCondProjDim } from './unet-2d-condition-config.js';

export const UNET_CNXS_DEFAULTS = {
  sample_size: 96 as number | null,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'] as string[],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'] as string[],
  block_out_channels: [320, 640, 1280, 1280] as number[],
  norm_num_groups: 32,
  cross_attention_dim: 1024 as number | number[],
  transformer_layers_per_block: 1 as number | number[],
  num_attention_heads: 8 as number | number[],
  addition_embed_type: null as string | null,
  addition_time_embed_dim: null as number | null,
  upcast_attention: true,
  use_linear_projection: true,
  time_cond_proj_dim: null as number | null,
  projection_class_embeddings_input_dim: null as number | null,
  time_embedding_mix: 1.0,
  ctrl_conditioning_channels: 3,
  ctrl_conditioning_embedding_out_channels: [16, 32, 96, 256] as number[],
  ctrl_conditioning_channel_order: 'rgb',
  ctrl_learn_time_embedding: false,
  ctrl_block_out_channels: [4, 8, 16, 16] as number[],
  ctrl_num_attention_heads: 4 as number | number[],
  ctrl_max_norm_num_groups: 32,
};

export type UNetControlNetXSConfig = Camelize<typeof UNET_CNXS_DEFAULTS>;
export type UNetControlNetXSConfigJson = typeof UNET_CNXS_DEFAULTS;

export function parseUNetControlNetXSConfig(raw: Record<string, unknown>, origin: string, warn: Warn): UNetControlNetXSConfig {
  const c = parseConfig(raw, UNET_CNXS_DEFAULTS, origin, warn);
  if (c.timeEmbeddingMix < 0 || c.timeEmbeddingMix > 1) {
    throw new ConfigError(`${origin}: time_embedding_mix must be between 0 and 1, got ${c.timeEmbeddingMix}`);
  }
  if (c.timeEmbeddingMix < 1 && !c.ctrlLearnTimeEmbedding) {
    throw new ConfigError(`${origin}: time_embedding_mix < 1 needs ctrl_learn_time_embedding true`);
  }
  if (c.additionEmbedType !== null && c.additionEmbedType !== 'text_time') {
    throw new ConfigError(`${origin}: addition_embed_type must be null or "text_time", got "${c.additionEmbedType}"`);
  }
  checkTimeCondProjDim(c.timeCondProjDim, origin);
  if (c.ctrlConditioningChannelOrder !== 'rgb' && c.ctrlConditioningChannelOrder !== 'bgr') {
    throw new ConfigError(`${origin}: unknown ctrl_conditioning_channel_order "${c.ctrlConditioningChannelOrder}"`);
  }
  const n = c.downBlockTypes.length;
  for (const [k, v] of [['up_block_types', c.upBlockTypes], ['block_out_channels', c.blockOutChannels], ['ctrl_block_out_channels', c.ctrlBlockOutChannels]] as const) {
    if (v.length !== n) throw new ConfigError(`${origin}: ${k} has ${v.length} entries, down_block_types has ${n}`);
  }
  return c;
}
