/**
 * DepthAnythingForDepthEstimation's config.json (transformers 4.44 DepthAnythingConfig, `model_type`
 * "depth_anything", V1 and V2): a Dinov2 `backbone_config` plus the neck and head sizes.
 * `depth_estimation_type` / `max_depth` (metric checkpoints, transformers ≥ 4.45) are read too; their
 * defaults give 4.44's relative head exactly.
 */
import { ConfigError } from '../errors.js';
import type { DepthAnythingNetConfig } from '../nn/depth-anything-net.js';
import { checkReassembleFactor } from '../nn/dpt-neck.js';
import { hfActivation } from '../nn/hf-activation.js';
import { parseConfig, requirePositiveInteger, type Warn } from '../util/config.js';
import { ownKeys, parseDinov2Config, type Dinov2Config } from './backbone-config.js';

/** DepthAnythingConfig's keys with transformers' defaults (4.44, plus the metric keys of 4.45). */
const DEFAULTS = {
  model_type: 'depth_anything',
  backbone_config: null as unknown,
  backbone: null as unknown,
  use_pretrained_backbone: false,
  use_timm_backbone: false,
  backbone_kwargs: null as unknown,
  patch_size: 14,
  initializer_range: 0.02,
  reassemble_hidden_size: 384,
  reassemble_factors: [4, 2, 1, 0.5] as number[],
  neck_hidden_sizes: [48, 96, 192, 384] as number[],
  fusion_hidden_size: 64,
  head_in_index: -1,
  head_hidden_size: 32,
  depth_estimation_type: 'relative',
  max_depth: null as number | null,
};

/** The Dinov2 backbone DepthAnythingConfig builds when there is no backbone_config. */
const DEFAULT_BACKBONE = { model_type: 'dinov2', image_size: 518, hidden_size: 384, num_attention_heads: 6, out_indices: [9, 10, 11, 12], apply_layernorm: true, reshape_hidden_states: false };

export interface DepthAnythingConfig extends DepthAnythingNetConfig {
  readonly modelType: 'depth_anything';
  readonly backbone: Dinov2Config;
}

export function parseDepthAnythingConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): DepthAnythingConfig {
  const c = parseConfig(ownKeys(raw, DEFAULTS), DEFAULTS, origin, warn);
  if (c.modelType !== 'depth_anything') throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)} is not a Depth Anything config ("depth_anything")`);
  if (c.backbone != null || c.useTimmBackbone) throw new ConfigError(`${origin}: Depth Anything with a named/timm backbone (${JSON.stringify(c.backbone)}) is not supported`);
  const nested = c.backboneConfig ?? DEFAULT_BACKBONE;
  if (typeof nested !== 'object' || Array.isArray(nested)) throw new ConfigError(`${origin}: "backbone_config" must be an object, got ${JSON.stringify(nested)}`);
  const nestedOrigin = `${origin} backbone_config`;
  const backbone = parseDinov2Config(nested as Record<string, unknown>, nestedOrigin, warn);
  hfActivation(backbone.hiddenAct, nestedOrigin);
  if (backbone.reshapeHiddenStates) {
    throw new ConfigError(`${nestedOrigin}: reshape_hidden_states must be false for Depth Anything (its neck drops the class token from token maps itself)`);
  }
  if (backbone.patchSize !== c.patchSize) {
    throw new ConfigError(`${origin}: patch_size ${c.patchSize} differs from the backbone's patch_size ${backbone.patchSize} (the neck reshapes the backbone's tokens by it)`);
  }
  for (const [k, v] of [['patch_size', c.patchSize], ['reassemble_hidden_size', c.reassembleHiddenSize], ['fusion_hidden_size', c.fusionHiddenSize], ['head_hidden_size', c.headHiddenSize]] as const) {
    requirePositiveInteger(origin, k, v);
  }
  c.neckHiddenSizes.forEach((v, i) => requirePositiveInteger(origin, `neck_hidden_sizes[${i}]`, v));
  if (c.reassembleFactors.length !== c.neckHiddenSizes.length) {
    throw new ConfigError(`${origin}: reassemble_factors has ${c.reassembleFactors.length} entries, neck_hidden_sizes ${c.neckHiddenSizes.length}`);
  }
  c.reassembleFactors.forEach((f, i) => checkReassembleFactor(origin, i, f));
  if (c.depthEstimationType !== 'relative' && c.depthEstimationType !== 'metric') {
    throw new ConfigError(`${origin}: depth_estimation_type ${JSON.stringify(c.depthEstimationType)} is not one of "relative", "metric"`);
  }
  // 4.44 has no max_depth (relative head); metric heads scale the sigmoid by it (a missing or 0 value means 1, as transformers).
  const maxDepth = c.depthEstimationType === 'metric' ? c.maxDepth || 1 : 1;
  if (!(maxDepth > 0)) throw new ConfigError(`${origin}: max_depth must be > 0, got ${maxDepth}`);
  return {
    modelType: 'depth_anything',
    patchSize: c.patchSize,
    reassembleHiddenSize: c.reassembleHiddenSize,
    reassembleFactors: c.reassembleFactors,
    neckHiddenSizes: c.neckHiddenSizes,
    fusionHiddenSize: c.fusionHiddenSize,
    headInIndex: c.headInIndex,
    headHiddenSize: c.headHiddenSize,
    depthEstimationType: c.depthEstimationType,
    maxDepth,
    backbone,
  };
}
