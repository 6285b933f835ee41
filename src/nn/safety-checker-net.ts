/**
 * diffusers' StableDiffusionSafetyChecker as a module tree with its checkpoint keys: a transformers
 * CLIPVisionModel (`vision_model.vision_model.*`), `visual_projection` (no bias), and the concept
 * tables `concept_embeds` / `special_care_embeds` with their thresholds `*_weights`. The graph ends
 * at the cosine similarities; the per-image thresholding is plain TypeScript (models/safety-checker.ts).
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { ParameterSpec } from '../weights/source.js';
import { CLIPVisionTransformer } from './clip.js';
import { clipEncoderOptions } from './clip-text-net.js';
import { Linear } from './layers.js';
import { Module } from './module.js';

/** Concept rows diffusers' checker declares (fixed there, whatever the config). */
export const CONCEPT_COUNT = 17;
export const SPECIAL_CARE_COUNT = 3;

/** torch.nn.functional.normalize's default eps: the norm is clamped to at least this. */
const NORMALIZE_EPS = 1e-12;

/**
 * The fields of transformers' CLIPVisionConfig (camelCased, defaults filled) the vision tower reads.
 * A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface CLIPVisionNetConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numChannels: number;
  readonly imageSize: number;
  readonly patchSize: number;
  readonly hiddenAct: string;
  readonly layerNormEps: number;
}

/** transformers' CLIPVisionModel: a wrapper whose only child is the transformer (hence `vision_model.vision_model`). */
export class CLIPVisionModelNet extends Module {
  readonly vision_model: CLIPVisionTransformer;

  constructor(path: string, c: CLIPVisionNetConfig, origin = '') {
    super(path);
    this.vision_model = this.child('vision_model', (p) =>
      new CLIPVisionTransformer(p, {
        ...clipEncoderOptions(c, origin),
        channels: c.numChannels,
        imageSize: c.imageSize,
        patchSize: c.patchSize,
      }),
    );
  }
}

export interface SafetyCheckerNetOutputs {
  /** CLIPVisionModel's pooler output: [B, D]. */
  pooled: Value;
  /** visual_projection(pooled): [B, P]. */
  imageEmbeds: Value;
  /** Cosine similarity of each image to each concept: [B, 17]. */
  cosDist: Value;
  /** … and to each special-care concept: [B, 3]. */
  specialCosDist: Value;
}

/** The root tree; `projectionDim` is the CLIPConfig's top-level `projection_dim`. */
export class StableDiffusionSafetyCheckerNet extends Module {
  readonly vision_model: CLIPVisionModelNet;
  readonly visual_projection: Linear;
  readonly concept_embeds: ParameterSpec;
  readonly special_care_embeds: ParameterSpec;
  readonly concept_embeds_weights: ParameterSpec;
  readonly special_care_embeds_weights: ParameterSpec;

  constructor(
    readonly vision: CLIPVisionNetConfig,
    readonly projectionDim: number,
    origin = '',
  ) {
    super('');
    this.vision_model = this.child('vision_model', (p) => new CLIPVisionModelNet(p, vision, origin));
    this.visual_projection = this.child('visual_projection', (p) => new Linear(p, vision.hiddenSize, projectionDim, { bias: false }));
    this.concept_embeds = this.param('concept_embeds', [CONCEPT_COUNT, projectionDim]);
    this.special_care_embeds = this.param('special_care_embeds', [SPECIAL_CARE_COUNT, projectionDim]);
    this.concept_embeds_weights = this.param('concept_embeds_weights', [CONCEPT_COUNT]);
    this.special_care_embeds_weights = this.param('special_care_embeds_weights', [SPECIAL_CARE_COUNT]);
  }

  /** clipInput [B, C, S, S] (the feature extractor's pixel_values) */
  build(op: GraphBuilder, clipInput: Value): SafetyCheckerNetOutputs {
    const b = op.at('cosine_distance');
    const { pooled } = this.vision_model.vision_model.build(op, clipInput);
    const imageEmbeds = this.visual_projection.build(op, pooled); // [B, D] → [B, P]
    const images = normalize(b, imageEmbeds); // [B, P]
    // diffusers' cosine_distance: normalize(image) @ normalize(concepts)ᵀ (the concept side folds to a constant)
    const similarity = (concepts: ParameterSpec): Value => b.matMul(images, b.transpose(normalize(b, b.param(concepts)), { perm: [1, 0] })); // [B, P] · [P, K] → [B, K]
    return { pooled, imageEmbeds, cosDist: similarity(this.concept_embeds), specialCosDist: similarity(this.special_care_embeds) };
  }
}

/** torch's F.normalize over the last axis: x / max(‖x‖₂, eps). [N, P] → [N, P] */
function normalize(b: GraphBuilder, x: Value): Value {
  const norm = b.reduceL2(x, b.ints([-1]), { keepdims: 1 }); // [N, 1]
  return b.div(x, b.max(norm, b.scalar(NORMALIZE_EPS)));
}
