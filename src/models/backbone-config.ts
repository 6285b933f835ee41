/**
 * The backbone configs nested in the depth models' `backbone_config` (transformers 4.44): BitConfig
 * (DPT-hybrid) and Dinov2Config (Depth Anything), each with transformers' defaults, and the
 * backbone rule that aligns `out_features` with `out_indices` over the stage names.
 */
import { ConfigError } from '../errors.js';
import { checkTransformerSizes, parseConfig, requirePositiveInteger, type Camelize, type Warn } from '../util/config.js';
import { PRETRAINED_CONFIG_KEYS } from './clip-text-config.js';

/** Keys PretrainedConfig keeps on every config that say nothing about a backbone's forward pass. */
const GENERIC_KEYS = new Set([...PRETRAINED_CONFIG_KEYS, 'bos_token_id', 'pad_token_id', 'eos_token_id']);

/** A nested config without the keys every PretrainedConfig serialises (kept if the class lists them). */
export function ownKeys(raw: Readonly<Record<string, unknown>>, defaults: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(raw).filter(([k]) => !GENERIC_KEYS.has(k) || k in defaults));
}

/**
 * transformers' get_aligned_output_features_output_indices + its checks: neither given → the last
 * stage; one given → the other derived; both → they must name the same stages. Stages must be
 * known, unique and in stage order. Returns the indices into `stageNames`.
 */
export function alignedOutIndices(outFeatures: unknown, outIndices: unknown, stageNames: readonly string[], origin: string): number[] {
  const n = stageNames.length;
  let fromIndices: number[] | null = null;
  let fromFeatures: number[] | null = null;
  if (outIndices != null) {
    if (!Array.isArray(outIndices) || !outIndices.every((i) => Number.isInteger(i))) throw new ConfigError(`${origin}: out_indices must be a list of integers, got ${JSON.stringify(outIndices)}`);
    fromIndices = outIndices.map((i: number) => {
      if (i < -n || i >= n) throw new ConfigError(`${origin}: out_indices ${JSON.stringify(outIndices)}: ${i} is not a stage (stages: ${stageNames.join(', ')})`);
      return i < 0 ? i + n : i;
    });
  }
  if (outFeatures != null) {
    if (!Array.isArray(outFeatures) || !outFeatures.every((f) => typeof f === 'string')) throw new ConfigError(`${origin}: out_features must be a list of stage names, got ${JSON.stringify(outFeatures)}`);
    fromFeatures = outFeatures.map((f: string) => {
      const i = stageNames.indexOf(f);
      if (i < 0) throw new ConfigError(`${origin}: out_features names "${f}", which is not a stage (stages: ${stageNames.join(', ')})`);
      return i;
    });
  }
  if (fromIndices && fromFeatures && fromIndices.join() !== fromFeatures.join()) {
    throw new ConfigError(`${origin}: out_features ${JSON.stringify(outFeatures)} and out_indices ${JSON.stringify(outIndices)} name different stages`);
  }
  const out = fromIndices ?? fromFeatures ?? [n - 1];
  for (let i = 1; i < out.length; i++) {
    if (out[i]! <= out[i - 1]!) throw new ConfigError(`${origin}: output stages [${out.join(', ')}] must be unique and in stage order (${stageNames.join(', ')})`);
  }
  return out;
}

/** BitConfig's keys with transformers' defaults (4.44). */
export const BIT_DEFAULTS = {
  model_type: 'bit',
  num_channels: 3,
  embedding_size: 64,
  hidden_sizes: [256, 512, 1024, 2048] as number[],
  depths: [3, 4, 6, 3] as number[],
  layer_type: 'preactivation',
  hidden_act: 'relu',
  global_padding: null as string | null,
  num_groups: 32,
  drop_path_rate: 0,
  embedding_dynamic_padding: false,
  output_stride: 32,
  width_factor: 1,
  out_features: null as string[] | null,
  out_indices: null as number[] | null,
  /** Derived from depths; what a saved config says is not read. */
  stage_names: null as unknown,
};

export type BitConfig = Omit<Camelize<typeof BIT_DEFAULTS>, 'layerType' | 'outIndices' | 'outFeatures' | 'stageNames'> & {
  readonly layerType: 'preactivation' | 'bottleneck';
  /** Indices into ["stem", "stage1", …] of the returned feature maps. */
  readonly outIndices: readonly number[];
};

export function parseBitConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): BitConfig {
  const c = parseConfig(ownKeys(raw, BIT_DEFAULTS), BIT_DEFAULTS, origin, warn);
  if (c.modelType !== 'bit') throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)}: DPT-hybrid needs a BiT backbone ("bit")`);
  if (c.layerType !== 'preactivation' && c.layerType !== 'bottleneck') {
    throw new ConfigError(`${origin}: layer_type ${JSON.stringify(c.layerType)} is not one of "preactivation", "bottleneck"`);
  }
  let globalPadding = c.globalPadding;
  if (globalPadding !== null) {
    if (!['SAME', 'VALID'].includes(globalPadding.toUpperCase())) throw new ConfigError(`${origin}: global_padding ${JSON.stringify(globalPadding)} is not supported ("SAME", "VALID" or null)`);
    globalPadding = globalPadding.toUpperCase();
  }
  for (const [k, v] of [['num_channels', c.numChannels], ['embedding_size', c.embeddingSize], ['num_groups', c.numGroups], ['output_stride', c.outputStride]] as const) requirePositiveInteger(origin, k, v);
  if (!(c.widthFactor > 0)) throw new ConfigError(`${origin}: width_factor must be > 0, got ${c.widthFactor}`);
  c.hiddenSizes.forEach((v, i) => requirePositiveInteger(origin, `hidden_sizes[${i}]`, v));
  c.depths.forEach((v, i) => requirePositiveInteger(origin, `depths[${i}]`, v));
  const stageNames = ['stem', ...c.depths.map((_, i) => `stage${i + 1}`)];
  const outIndices = alignedOutIndices(c.outFeatures, c.outIndices, stageNames, origin);
  const { outFeatures: _f, stageNames: _s, ...rest } = c;
  return { ...rest, layerType: c.layerType, globalPadding, outIndices };
}

/** Dinov2Config's keys with transformers' defaults (4.44; `use_mask_token` from later versions, default true). */
export const DINOV2_DEFAULTS = {
  model_type: 'dinov2',
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  mlp_ratio: 4,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  initializer_range: 0.02,
  layer_norm_eps: 1e-6,
  image_size: 224,
  patch_size: 16,
  num_channels: 3,
  qkv_bias: true,
  layerscale_value: 1,
  drop_path_rate: 0,
  use_swiglu_ffn: false,
  out_features: null as string[] | null,
  out_indices: null as number[] | null,
  apply_layernorm: true,
  reshape_hidden_states: true,
  use_mask_token: true,
  stage_names: null as unknown,
};

export type Dinov2Config = Omit<Camelize<typeof DINOV2_DEFAULTS>, 'outIndices' | 'outFeatures' | 'stageNames'> & {
  readonly outIndices: readonly number[];
};

export function parseDinov2Config(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): Dinov2Config {
  const c = parseConfig(ownKeys(raw, DINOV2_DEFAULTS), DINOV2_DEFAULTS, origin, warn);
  if (c.modelType !== 'dinov2') throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)}: only a Dinov2 backbone ("dinov2") is supported`);
  const sizes: [string, number][] = [
    ['hidden_size', c.hiddenSize],
    ['num_hidden_layers', c.numHiddenLayers],
    ['num_attention_heads', c.numAttentionHeads],
    ['image_size', c.imageSize],
    ['patch_size', c.patchSize],
    ['num_channels', c.numChannels],
  ];
  checkTransformerSizes(origin, sizes, c.hiddenSize, c.numAttentionHeads);
  if (!(c.mlpRatio > 0)) throw new ConfigError(`${origin}: mlp_ratio must be > 0, got ${c.mlpRatio}`);
  if (!(c.layerNormEps > 0)) throw new ConfigError(`${origin}: layer_norm_eps must be > 0, got ${c.layerNormEps}`);
  if (c.patchSize > c.imageSize) throw new ConfigError(`${origin}: patch_size ${c.patchSize} is larger than image_size ${c.imageSize}`);
  const stageNames = ['stem', ...Array.from({ length: c.numHiddenLayers }, (_, i) => `stage${i + 1}`)];
  const outIndices = alignedOutIndices(c.outFeatures, c.outIndices, stageNames, origin);
  const { outFeatures: _f, stageNames: _s, ...rest } = c;
  return { ...rest, outIndices };
}
