/** UNet2DConditionModel's config.json keys with diffusers' defaults, and the subset this port runs. */
import { ConfigError } from '../errors.js';
import { parseConfig, type Camelize, type Warn } from '../util/config.js';

const DEFAULTS = {
  sample_size: null as number | null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'] as string[],
  mid_block_type: 'UNetMidBlock2DCrossAttn' as string | null,
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'] as string[],
  only_cross_attention: false as boolean | boolean[],
  block_out_channels: [320, 640, 1280, 1280] as number[],
  layers_per_block: 2 as number | number[],
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  dropout: 0,
  act_fn: 'silu',
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280 as number | number[],
  transformer_layers_per_block: 1 as number | number[],
  reverse_transformer_layers_per_block: null as number[][] | null,
  encoder_hid_dim: null as number | null,
  encoder_hid_dim_type: null as string | null,
  attention_head_dim: 8 as number | number[],
  num_attention_heads: null as number | number[] | null,
  dual_cross_attention: false,
  use_linear_projection: false,
  class_embed_type: null as string | null,
  addition_embed_type: null as string | null,
  addition_time_embed_dim: null as number | null,
  num_class_embeds: null as number | null,
  upcast_attention: false,
  resnet_time_scale_shift: 'default',
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1,
  time_embedding_type: 'positional',
  time_embedding_dim: null as number | null,
  time_embedding_act_fn: null as string | null,
  timestep_post_act: null as string | null,
  time_cond_proj_dim: null as number | null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  projection_class_embeddings_input_dim: null as number | null,
  attention_type: 'default',
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null as boolean | null,
  cross_attention_norm: null as string | null,
  addition_embed_type_num_heads: 64,
};

export type UNet2DConditionConfig = Camelize<typeof DEFAULTS>;

export function parseUNet2DConditionConfig(raw: Record<string, unknown>, origin: string, warn: Warn): UNet2DConditionConfig {
  const c = parseConfig(raw, DEFAULTS, origin, warn);
  const unsupported = (key: string, v: unknown, want: unknown): never => {
    throw new ConfigError(`${origin}: ${key}=${JSON.stringify(v)} is not supported (supported: ${JSON.stringify(want)})`);
  };
  if (c.numAttentionHeads !== null) {
    unsupported('num_attention_heads', c.numAttentionHeads, null); // diffusers refuses it too
  }
  const checks: [string, unknown, unknown][] = [
    ['class_embed_type', c.classEmbedType, null],
    ['encoder_hid_dim_type', c.encoderHidDimType, null],
    ['time_embedding_type', c.timeEmbeddingType, 'positional'],
    ['time_embedding_act_fn', c.timeEmbeddingActFn, null],
    ['timestep_post_act', c.timestepPostAct, null],
    ['resnet_time_scale_shift', c.resnetTimeScaleShift, 'default'],
    ['resnet_skip_time_act', c.resnetSkipTimeAct, false],
    ['attention_type', c.attentionType, 'default'],
    ['dual_cross_attention', c.dualCrossAttention, false],
    ['cross_attention_norm', c.crossAttentionNorm, null],
    ['act_fn', c.actFn, 'silu'],
    ['class_embeddings_concat', c.classEmbeddingsConcat, false],
  ];
  for (const [key, v, want] of checks) if (v !== want) unsupported(key, v, want);
  checkTimeCondProjDim(c.timeCondProjDim, origin);
  if (c.onlyCrossAttention !== false && !(Array.isArray(c.onlyCrossAttention) && c.onlyCrossAttention.every((x) => !x))) {
    unsupported('only_cross_attention', c.onlyCrossAttention, false);
  }
  if (c.midBlockType !== 'UNetMidBlock2DCrossAttn') unsupported('mid_block_type', c.midBlockType, 'UNetMidBlock2DCrossAttn');
  if (c.additionEmbedType !== null && c.additionEmbedType !== 'text_time') {
    unsupported('addition_embed_type', c.additionEmbedType, [null, 'text_time']);
  }
  if (c.additionEmbedType === 'text_time' && (c.additionTimeEmbedDim === null || c.projectionClassEmbeddingsInputDim === null)) {
    throw new ConfigError(`${origin}: addition_embed_type "text_time" needs addition_time_embed_dim and projection_class_embeddings_input_dim`);
  }
  const n = c.downBlockTypes.length;
  if (c.upBlockTypes.length !== n || c.blockOutChannels.length !== n) {
    throw new ConfigError(`${origin}: down_block_types, up_block_types and block_out_channels must have the same length`);
  }
  for (const t of c.downBlockTypes) if (t !== 'CrossAttnDownBlock2D' && t !== 'DownBlock2D') unsupported('down_block_types', t, ['CrossAttnDownBlock2D', 'DownBlock2D']);
  for (const t of c.upBlockTypes) if (t !== 'CrossAttnUpBlock2D' && t !== 'UpBlock2D') unsupported('up_block_types', t, ['CrossAttnUpBlock2D', 'UpBlock2D']);
  return c;
}

/** LCM-distilled UNets' `time_cond_proj_dim` (the width of `timestep_cond`): null or a positive integer. */
export function checkTimeCondProjDim(v: number | null, origin: string): void {
  if (v !== null && !(Number.isInteger(v) && v > 0)) throw new ConfigError(`${origin}: time_cond_proj_dim must be null or a positive integer, got ${v}`);
}
