/**
 * diffusers' `UNetControlNetXSModel.from_unet` as data: where each UNet and adapter key lives in
 * the fused model, and the fused config built from both configs.
 */
import { ConfigError } from '../errors.js';
import { WeightSource, type WeightRef } from '../weights/source.js';
import type { ControlNetXSAdapterConfig } from './controlnet-xs-adapter.js';
import type { UNet2DConditionConfig } from './unet-2d-condition-config.js';
import type { UNetControlNetXSConfig } from './unet-controlnet-xs-config.js';

/** One rename: a key prefix in a source checkpoint and the fused prefix it becomes. `{i}` is a block index. */
export interface Rename {
  readonly from: 'unet' | 'controlnet';
  readonly src: string;
  readonly dst: string;
}

/** The whole fusion. Order is irrelevant: prefixes never overlap within one source. */
export const FUSION_RENAMES: readonly Rename[] = [
  // from the UNet: everything outside the blocks gets a `base_` prefix
  { from: 'unet', src: 'time_embedding', dst: 'base_time_embedding' },
  { from: 'unet', src: 'conv_in', dst: 'base_conv_in' },
  { from: 'unet', src: 'conv_norm_out', dst: 'base_conv_norm_out' },
  { from: 'unet', src: 'conv_out', dst: 'base_conv_out' },
  { from: 'unet', src: 'add_embedding', dst: 'base_add_embedding' },
  { from: 'unet', src: 'down_blocks.{i}.resnets', dst: 'down_blocks.{i}.base_resnets' },
  { from: 'unet', src: 'down_blocks.{i}.attentions', dst: 'down_blocks.{i}.base_attentions' },
  { from: 'unet', src: 'down_blocks.{i}.downsamplers.0', dst: 'down_blocks.{i}.base_downsamplers' },
  { from: 'unet', src: 'mid_block', dst: 'mid_block.base_midblock' },
  { from: 'unet', src: 'up_blocks.{i}.resnets', dst: 'up_blocks.{i}.resnets' },
  { from: 'unet', src: 'up_blocks.{i}.attentions', dst: 'up_blocks.{i}.attentions' },
  { from: 'unet', src: 'up_blocks.{i}.upsamplers.0', dst: 'up_blocks.{i}.upsamplers' },
  // from the adapter
  { from: 'controlnet', src: 'controlnet_cond_embedding', dst: 'controlnet_cond_embedding' },
  { from: 'controlnet', src: 'conv_in', dst: 'ctrl_conv_in' },
  { from: 'controlnet', src: 'time_embedding', dst: 'ctrl_time_embedding' },
  { from: 'controlnet', src: 'control_to_base_for_conv_in', dst: 'control_to_base_for_conv_in' },
  { from: 'controlnet', src: 'down_blocks.{i}.resnets', dst: 'down_blocks.{i}.ctrl_resnets' },
  { from: 'controlnet', src: 'down_blocks.{i}.attentions', dst: 'down_blocks.{i}.ctrl_attentions' },
  { from: 'controlnet', src: 'down_blocks.{i}.downsamplers', dst: 'down_blocks.{i}.ctrl_downsamplers' },
  { from: 'controlnet', src: 'down_blocks.{i}.base_to_ctrl', dst: 'down_blocks.{i}.base_to_ctrl' },
  { from: 'controlnet', src: 'down_blocks.{i}.ctrl_to_base', dst: 'down_blocks.{i}.ctrl_to_base' },
  { from: 'controlnet', src: 'mid_block.base_to_ctrl', dst: 'mid_block.base_to_ctrl' },
  { from: 'controlnet', src: 'mid_block.midblock', dst: 'mid_block.ctrl_midblock' },
  { from: 'controlnet', src: 'mid_block.ctrl_to_base', dst: 'mid_block.ctrl_to_base' },
  { from: 'controlnet', src: 'up_connections.{i}.ctrl_to_base', dst: 'up_blocks.{i}.ctrl_to_base' },
];

const compiled = FUSION_RENAMES.map((r) => ({
  ...r,
  re: new RegExp(`^${r.src.replace(/\./g, '\\.').replace('{i}', '(\\d+)')}\\.(.+)$`),
}));

/** The fused key of `key` from checkpoint `from`, or null when no rule covers it. */
export function fusedKey(from: Rename['from'], key: string): string | null {
  for (const r of compiled) {
    if (r.from !== from) continue;
    const m = r.re.exec(key);
    if (!m) continue;
    const rest = m[m.length - 1]!;
    const dst = m.length === 3 ? r.dst.replace('{i}', m[1]!) : r.dst;
    return `${dst}.${rest}`;
  }
  return null;
}

/** Re-key both checkpoints into one fused weight source; an unmapped key is an error naming it. */
export function fuseWeights(unet: WeightSource, controlnet: WeightSource): WeightSource {
  const map = new Map<string, WeightRef>();
  for (const [from, source] of [['unet', unet], ['controlnet', controlnet]] as const) {
    for (const key of source.keys()) {
      const dst = fusedKey(from, key);
      if (dst === null) throw new ConfigError(`${source.origin}: key "${key}" has no place in a UNetControlNetXSModel`);
      map.set(dst, source.get(key)!);
    }
  }
  return new WeightSource(map, `fromUnet(${unet.origin}, ${controlnet.origin})`);
}

/** The fused config diffusers' from_unet builds (`num_attention_heads` = the UNet's attention_head_dim). */
export function fusedConfig(unet: UNet2DConditionConfig, adapter: ControlNetXSAdapterConfig): UNetControlNetXSConfig {
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (!same(adapter.baseBlockOutChannels, unet.blockOutChannels)) {
    throw new ConfigError(
      `ControlNet-XS adapter was made for a UNet with block_out_channels [${adapter.baseBlockOutChannels.join(', ')}], ` +
        `but this UNet has [${unet.blockOutChannels.join(', ')}] (an SD adapter with an SDXL UNet, or vice versa?)`,
    );
  }
  if (adapter.downBlockTypes.length !== unet.downBlockTypes.length || adapter.downBlockTypes.some((t, i) => t !== unet.downBlockTypes[i])) {
    throw new ConfigError(`ControlNet-XS adapter down_block_types [${adapter.downBlockTypes.join(', ')}] differ from the UNet's [${unet.downBlockTypes.join(', ')}]`);
  }
  return {
    sampleSize: unet.sampleSize,
    downBlockTypes: unet.downBlockTypes,
    upBlockTypes: unet.upBlockTypes,
    blockOutChannels: unet.blockOutChannels,
    normNumGroups: unet.normNumGroups,
    crossAttentionDim: unet.crossAttentionDim,
    transformerLayersPerBlock: unet.transformerLayersPerBlock,
    numAttentionHeads: unet.attentionHeadDim,
    additionEmbedType: unet.additionEmbedType,
    additionTimeEmbedDim: unet.additionTimeEmbedDim,
    upcastAttention: unet.upcastAttention,
    useLinearProjection: unet.useLinearProjection,
    timeCondProjDim: unet.timeCondProjDim,
    projectionClassEmbeddingsInputDim: unet.projectionClassEmbeddingsInputDim,
    timeEmbeddingMix: adapter.timeEmbeddingMix,
    ctrlConditioningChannels: adapter.conditioningChannels,
    ctrlConditioningEmbeddingOutChannels: adapter.conditioningEmbeddingOutChannels,
    ctrlConditioningChannelOrder: adapter.conditioningChannelOrder,
    ctrlLearnTimeEmbedding: adapter.learnTimeEmbedding,
    ctrlBlockOutChannels: adapter.blockOutChannels,
    ctrlNumAttentionHeads: adapter.numAttentionHeads,
    ctrlMaxNormNumGroups: adapter.maxNormNumGroups,
  };
}
