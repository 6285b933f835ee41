/**
 * DPTForDepthEstimation's config.json (transformers 4.44 DPTConfig, `model_type` "dpt"): the plain
 * ViT variant (dpt-large) and DPT-hybrid (`is_hybrid`: a BiT `backbone_config`, dpt-hybrid-midas).
 * DPT over other backbones (`backbone_config` without `is_hybrid`: BEiT, Swinv2, Dinov2) is refused
 * by name. Keys for segmentation heads are known but unused.
 */
import { ConfigError } from '../errors.js';
import type { DPTNetConfig } from '../nn/dpt-net.js';
import { checkReassembleFactor } from '../nn/dpt-neck.js';
import { hfActivation } from '../nn/hf-activation.js';
import { checkTransformerSizes, parseConfig, requirePositiveInteger, type Warn } from '../util/config.js';
import { BIT_DEFAULTS, ownKeys, parseBitConfig, type BitConfig } from './backbone-config.js';

/** DPTConfig's keys with transformers' defaults (4.44). */
const DEFAULTS = {
  model_type: 'dpt',
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  initializer_range: 0.02,
  layer_norm_eps: 1e-12,
  image_size: 384,
  patch_size: 16,
  num_channels: 3,
  is_hybrid: false,
  qkv_bias: true,
  backbone_out_indices: [2, 5, 8, 11] as number[],
  readout_type: 'project',
  reassemble_factors: [4, 2, 1, 0.5] as number[],
  neck_hidden_sizes: [96, 192, 384, 768] as number[],
  fusion_hidden_size: 256,
  head_in_index: -1,
  use_batch_norm_in_fusion_residual: false,
  use_bias_in_fusion_residual: null as boolean | null,
  add_projection: false,
  use_auxiliary_head: true,
  auxiliary_loss_weight: 0.4,
  semantic_loss_ignore_index: 255,
  semantic_classifier_dropout: 0.1,
  backbone_featmap_shape: [1, 1024, 24, 24] as number[],
  neck_ignore_stages: [0, 1] as number[],
  backbone_config: null as unknown,
  backbone: null as unknown,
  use_pretrained_backbone: false,
  use_timm_backbone: false,
  backbone_kwargs: null as unknown,
  /** Derived by DPTConfig (true for non-hybrid backbone configs); saved, not read. */
  use_autobackbone: false,
  /** Older hybrid conversions wrote `embedding_type: "hybrid"` next to is_hybrid; not read by 4.44. */
  embedding_type: null as unknown,
  /** DPTModel's pooler (releases after 4.44 save these keys); the depth model has no pooler, so they are not read. */
  pooler_output_size: null as number | null,
  pooler_act: 'tanh',
};

/** The BiT config DPTConfig builds for a hybrid model without a backbone_config. */
const DEFAULT_HYBRID_BIT = { global_padding: 'same', layer_type: 'bottleneck', depths: [3, 4, 9], out_features: ['stage1', 'stage2', 'stage3'], embedding_dynamic_padding: true };

export interface DPTConfig extends DPTNetConfig {
  readonly modelType: 'dpt';
  readonly bit: BitConfig | null;
}

export function parseDPTConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): DPTConfig {
  const c = parseConfig(ownKeys(raw, DEFAULTS), DEFAULTS, origin, warn);
  if (c.modelType !== 'dpt') throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)} is not a DPT config ("dpt")`);
  if (c.backbone != null || c.useTimmBackbone) throw new ConfigError(`${origin}: DPT with a named/timm backbone (${JSON.stringify(c.backbone)}) is not supported`);
  if (!['ignore', 'add', 'project'].includes(c.readoutType)) throw new ConfigError(`${origin}: readout_type ${JSON.stringify(c.readoutType)} is not one of "ignore", "add", "project"`);
  const sizes: [string, number][] = [
    ['hidden_size', c.hiddenSize],
    ['num_hidden_layers', c.numHiddenLayers],
    ['num_attention_heads', c.numAttentionHeads],
    ['intermediate_size', c.intermediateSize],
    ['image_size', c.imageSize],
    ['patch_size', c.patchSize],
    ['num_channels', c.numChannels],
    ['fusion_hidden_size', c.fusionHiddenSize],
  ];
  checkTransformerSizes(origin, sizes, c.hiddenSize, c.numAttentionHeads);
  if (!(c.layerNormEps > 0)) throw new ConfigError(`${origin}: layer_norm_eps must be > 0, got ${c.layerNormEps}`);
  if (c.patchSize > c.imageSize) throw new ConfigError(`${origin}: patch_size ${c.patchSize} is larger than image_size ${c.imageSize}`);
  hfActivation(c.hiddenAct, origin);
  c.neckHiddenSizes.forEach((v, i) => requirePositiveInteger(origin, `neck_hidden_sizes[${i}]`, v));
  if (c.reassembleFactors.length !== c.neckHiddenSizes.length) {
    throw new ConfigError(`${origin}: reassemble_factors has ${c.reassembleFactors.length} entries, neck_hidden_sizes ${c.neckHiddenSizes.length}`);
  }
  c.reassembleFactors.forEach((f, i) => checkReassembleFactor(origin, i, f));
  if (c.addProjection && c.fusionHiddenSize !== 256) throw new ConfigError(`${origin}: add_projection needs fusion_hidden_size 256 (transformers' head projection is 256 → 256), got ${c.fusionHiddenSize}`);

  let bit: BitConfig | null = null;
  let neckIgnoreStages: number[] = [];
  let featmap: number[] | null = null;
  if (c.isHybrid) {
    const nested = c.backboneConfig ?? DEFAULT_HYBRID_BIT;
    if (typeof nested !== 'object' || Array.isArray(nested)) throw new ConfigError(`${origin}: "backbone_config" must be an object, got ${JSON.stringify(nested)}`);
    bit = parseBitConfig({ model_type: BIT_DEFAULTS.model_type, ...(nested as Record<string, unknown>) }, `${origin} backbone_config`, warn);
    if (c.readoutType !== 'project') throw new ConfigError(`${origin}: readout_type must be "project" for DPT-hybrid, got ${JSON.stringify(c.readoutType)}`);
    if (c.neckIgnoreStages.join() !== '0,1') throw new ConfigError(`${origin}: DPT-hybrid feeds BiT's maps to neck stages 0 and 1 as they are; neck_ignore_stages must be [0, 1], got ${JSON.stringify(c.neckIgnoreStages)}`);
    if (c.neckHiddenSizes.length < 2) throw new ConfigError(`${origin}: DPT-hybrid needs at least 2 neck stages (the BiT maps), got ${c.neckHiddenSizes.length}`);
    neckIgnoreStages = [0, 1];
    featmap = c.backboneFeatmapShape;
    if (featmap.length !== 4) throw new ConfigError(`${origin}: backbone_featmap_shape must be [1, C, h, w], got ${JSON.stringify(featmap)}`);
  } else if (c.backboneConfig != null) {
    const type = (c.backboneConfig as { model_type?: unknown }).model_type;
    throw new ConfigError(`${origin}: DPT with a ${JSON.stringify(type ?? null)} backbone_config (not is_hybrid) is not supported; the supported DPT variants are the plain ViT and DPT-hybrid (BiT)`);
  }
  return {
    modelType: 'dpt',
    hiddenSize: c.hiddenSize,
    numHiddenLayers: c.numHiddenLayers,
    numAttentionHeads: c.numAttentionHeads,
    intermediateSize: c.intermediateSize,
    hiddenAct: c.hiddenAct,
    layerNormEps: c.layerNormEps,
    imageSize: c.imageSize,
    patchSize: c.patchSize,
    numChannels: c.numChannels,
    qkvBias: c.qkvBias,
    isHybrid: c.isHybrid,
    backboneOutIndices: c.backboneOutIndices,
    readoutType: c.readoutType as DPTNetConfig['readoutType'],
    reassembleFactors: c.reassembleFactors,
    neckHiddenSizes: c.neckHiddenSizes,
    fusionHiddenSize: c.fusionHiddenSize,
    headInIndex: c.headInIndex,
    useBatchNormInFusionResidual: c.useBatchNormInFusionResidual,
    useBiasInFusionResidual: c.useBiasInFusionResidual,
    addProjection: c.addProjection,
    backboneFeatmapShape: featmap,
    // transformers empties neck_ignore_stages for the plain ViT, whatever the file says.
    neckIgnoreStages,
    bit,
  };
}
