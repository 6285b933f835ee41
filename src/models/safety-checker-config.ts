/**
 * The safety checker's config.json: a transformers CLIPConfig (`model_type` "clip") of which the
 * checker reads only `vision_config` and the top-level `projection_dim`; its `text_config` describes a
 * text tower the checker never builds, so it is not read.
 *
 * Checkpoints saved by transformers before 4.23 (SD 1.x's) also carry `vision_config_dict`, which
 * transformers then takes as the whole vision config (every field it does not give at its default),
 * overriding `vision_config`; so does this port.
 */
import { ConfigError } from '../errors.js';
import { clipActivation } from '../nn/clip-text-net.js';
import { checkTransformerSizes, parseConfig, type Camelize, type Warn } from '../util/config.js';
import { PRETRAINED_CONFIG_KEYS } from './clip-text-config.js';

/** CLIPVisionConfig's keys with transformers' defaults (4.44). */
const VISION_DEFAULTS = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  attention_dropout: 0,
  /** Older CLIPVisionConfig versions had it; unused at inference. */
  dropout: 0,
  initializer_range: 0.02,
  initializer_factor: 1,
  model_type: 'clip_vision_model',
};

/** CLIPConfig's own top-level keys (the sub-configs are read apart). */
const CLIP_DEFAULTS = {
  projection_dim: 512,
  logit_scale_init_value: 2.6592,
  initializer_factor: 1,
  model_type: 'clip',
  text_config: null as unknown,
  text_config_dict: null as unknown,
  vision_config: null as unknown,
  vision_config_dict: null as unknown,
};

/** Token ids PretrainedConfig keeps on every config (null on a vision config): nothing to the vision tower. */
const TOKEN_KEYS = new Set(['bos_token_id', 'pad_token_id', 'eos_token_id']);

export type CLIPVisionConfig = Camelize<typeof VISION_DEFAULTS>;

export interface SafetyCheckerConfig {
  /** Width of `visual_projection` and of the concept embeddings. */
  readonly projectionDim: number;
  readonly visionConfig: CLIPVisionConfig;
}

export function parseCLIPVisionConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): CLIPVisionConfig {
  const own = Object.fromEntries(
    Object.entries(raw).filter(([k]) => !(PRETRAINED_CONFIG_KEYS.has(k) || TOKEN_KEYS.has(k)) || k in VISION_DEFAULTS),
  );
  const c = parseConfig(own, VISION_DEFAULTS, origin, warn);
  if (c.modelType !== 'clip_vision_model') {
    throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)} is not a CLIP vision model (expected "clip_vision_model")`);
  }
  const positive: [string, number][] = [
    ['hidden_size', c.hiddenSize],
    ['intermediate_size', c.intermediateSize],
    ['num_hidden_layers', c.numHiddenLayers],
    ['num_attention_heads', c.numAttentionHeads],
    ['num_channels', c.numChannels],
    ['image_size', c.imageSize],
    ['patch_size', c.patchSize],
  ];
  checkTransformerSizes(origin, positive, c.hiddenSize, c.numAttentionHeads);
  if (c.patchSize > c.imageSize) throw new ConfigError(`${origin}: patch_size ${c.patchSize} is larger than image_size ${c.imageSize}`);
  if (!(c.layerNormEps > 0)) throw new ConfigError(`${origin}: layer_norm_eps must be > 0, got ${c.layerNormEps}`);
  clipActivation(c, origin);
  return c;
}

/** A safety checker's config.json (a CLIPConfig). */
export function parseSafetyCheckerConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): SafetyCheckerConfig {
  const own = Object.fromEntries(Object.entries(raw).filter(([k]) => !PRETRAINED_CONFIG_KEYS.has(k) || k in CLIP_DEFAULTS));
  const c = parseConfig(own, CLIP_DEFAULTS, origin, warn);
  if (c.modelType !== 'clip') {
    throw new ConfigError(`${origin}: model_type ${JSON.stringify(c.modelType)} is not a CLIPConfig (expected "clip", with the vision tower under "vision_config")`);
  }
  if (!Number.isInteger(c.projectionDim) || c.projectionDim < 1) {
    throw new ConfigError(`${origin}: "projection_dim" must be a positive integer, got ${JSON.stringify(c.projectionDim)}`);
  }
  const key = c.visionConfigDict != null ? 'vision_config_dict' : 'vision_config';
  const vision = c.visionConfigDict ?? c.visionConfig ?? {};
  if (typeof vision !== 'object' || vision === null || Array.isArray(vision)) {
    throw new ConfigError(`${origin}: "${key}" must be an object, got ${JSON.stringify(vision)}`);
  }
  return { projectionDim: c.projectionDim, visionConfig: parseCLIPVisionConfig(vision as Record<string, unknown>, `${origin} ${key}`, warn) };
}
