/**
 * diffusers' StableDiffusionSafetyChecker (SD 1.x's NSFW filter) on its folder layout: `config.json`
 * (a CLIPConfig) + `model[.variant].safetensors`. The CLIP vision tower, the projection and the
 * cosine similarities to the concept tables run in the traced graph; the per-image decision is
 * diffusers' Python loop, reproduced in float64 with numpy's rounding (`nsfwDecision`).
 */
import type { GraphBuilder } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { InputError } from '../errors.js';
import { CONCEPT_COUNT, SPECIAL_CARE_COUNT, StableDiffusionSafetyCheckerNet } from '../nn/safety-checker-net.js';
import { Tensor, expectFloat32, numel, type TensorLike } from '../tensor.js';
import { WeightSource, type BoundWeights, type WeightRef } from '../weights/source.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';
import { parseSafetyCheckerConfig, type SafetyCheckerConfig } from './safety-checker-config.js';
import { TracedModel, type ModelRuntimeOptions } from './traced-model.js';

/** A buffer (arange of positions) older transformers saved with the vision tower; not a parameter, so not bound. */
export const VISION_POSITION_IDS_KEY = 'vision_model.vision_model.embeddings.position_ids';

/** What diffusers' checker adds to the later scores of an image once a special-care concept fires. */
const SPECIAL_CARE_ADJUSTMENT = 0.01;

export interface SafetyCheckerPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {}

export interface SafetyCheckerForwardArgs {
  /** The feature extractor's `pixel_values`: float32 [B, C, S, S], S = vision_config.image_size. */
  clipInput: TensorLike;
  /**
   * The images to filter, batch first and float32 ([B, 3, H, W] decoded images in the pipelines;
   * any layout): each flagged image comes back as zeros (diffusers' black image). Optional.
   */
  images?: TensorLike;
}

/** One image's scores, as diffusers' checker keeps them (its `result` entries). */
export interface SafetyScores {
  /** Per special-care concept: round(cos − threshold + adjustment, 3). */
  specialScores: number[];
  /** Special-care concepts with a score above 0 (each raises the adjustment for the rest of the image). */
  specialCare: number[];
  /** Per concept: round(cos − threshold + adjustment, 3). */
  conceptScores: number[];
  /** Concepts with a score above 0: the image is flagged if there is one. */
  badConcepts: number[];
}

export interface SafetyCheckerOutput {
  /** `images` with every flagged image zeroed (a copy; null when no images were given). */
  images: Tensor<'float32'> | null;
  /** Per image: whether it shows an NSFW concept (diffusers' `has_nsfw_concepts`). */
  hasNsfwConcepts: boolean[];
  scores: SafetyScores[];
  /** CLIPVisionModel's pooler output [B, D], the projected embeddings [B, P], the cosine similarities [B, 17] and [B, 3]. */
  pooledOutput: Tensor<'float32'>;
  imageEmbeds: Tensor<'float32'>;
  cosDist: Tensor<'float32'>;
  specialCosDist: Tensor<'float32'>;
}

/** numpy's `round(x, 3)` on a float64: `rint(x · 1000) / 1000`, ties to even. */
function round3(x: number): number {
  const y = x * 1000;
  let r = Math.round(y); // ties go up
  if (r - y === 0.5 && r % 2 !== 0) r -= 1;
  return r / 1000;
}

/**
 * diffusers' per-image decision. Scores are float64 (`cos − threshold + adjustment`, the numpy
 * float32 cosine widened, as numpy 1.x does when a Python float meets a float32 scalar), rounded to 3
 * decimals; a score must be above 0. The special-care concepts come first, in order: once one
 * fires, 0.01 is added to every later score of that image (later special-care ones included). Only
 * the ordinary concepts flag an image.
 */
export function nsfwDecision(
  cos: ArrayLike<number>,
  specialCos: ArrayLike<number>,
  thresholds: ArrayLike<number>,
  specialThresholds: ArrayLike<number>,
): SafetyScores & { hasNsfwConcept: boolean } {
  if (cos.length !== thresholds.length || specialCos.length !== specialThresholds.length) {
    throw new InputError(`nsfwDecision: ${cos.length} concept scores for ${thresholds.length} thresholds, ${specialCos.length} special-care scores for ${specialThresholds.length}`);
  }
  let adjustment = 0;
  const specialScores: number[] = [];
  const specialCare: number[] = [];
  for (let j = 0; j < specialCos.length; j++) {
    const s = round3(specialCos[j]! - specialThresholds[j]! + adjustment); // bounds: lengths checked above
    specialScores.push(s);
    if (s > 0) {
      specialCare.push(j);
      adjustment = SPECIAL_CARE_ADJUSTMENT;
    }
  }
  const conceptScores: number[] = [];
  const badConcepts: number[] = [];
  for (let j = 0; j < cos.length; j++) {
    const s = round3(cos[j]! - thresholds[j]! + adjustment);
    conceptScores.push(s);
    if (s > 0) badConcepts.push(j);
  }
  return { specialScores, specialCare, conceptScores, badConcepts, hasNsfwConcept: badConcepts.length > 0 };
}

export class StableDiffusionSafetyChecker extends TracedModel {
  protected readonly graphName = 'StableDiffusionSafetyChecker';

  private constructor(
    readonly config: SafetyCheckerConfig,
    readonly net: StableDiffusionSafetyCheckerNet,
    /** The checkpoint as loaded (the position_ids buffer included, if it had one). */
    readonly source: WeightSource,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  static async fromPretrained(dir: string, options: SafetyCheckerPretrainedOptions = {}): Promise<StableDiffusionSafetyChecker> {
    const folder = await resolveModelFolder(dir, options);
    const config = parseSafetyCheckerConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'model', options.variant);
    return StableDiffusionSafetyChecker.fromSource(config, source, options);
  }

  static fromSource(config: SafetyCheckerConfig, source: WeightSource, options: ModelRuntimeOptions = {}): StableDiffusionSafetyChecker {
    const net = new StableDiffusionSafetyCheckerNet(config.visionConfig, config.projectionDim, source.origin);
    const weights = withoutPositionIds(source).bindStrict(net.parameters());
    return new StableDiffusionSafetyChecker(config, net, source, weights, options);
  }

  /** The side of the square input the vision tower takes (`vision_config.image_size`). */
  get imageSize(): number {
    return this.config.visionConfig.imageSize;
  }

  protected trace(op: GraphBuilder): void {
    const v = this.config.visionConfig;
    const F = OnnxDataType.FLOAT;
    const clipInput = op.input('clip_input', F, ['batch', v.numChannels, v.imageSize, v.imageSize]);
    const out = this.net.build(op, clipInput);
    op.output(out.pooled, 'pooled_output', F, ['batch', v.hiddenSize]);
    op.output(out.imageEmbeds, 'image_embeds', F, ['batch', this.config.projectionDim]);
    op.output(out.cosDist, 'cos_dist', F, ['batch', CONCEPT_COUNT]);
    op.output(out.specialCosDist, 'special_cos_dist', F, ['batch', SPECIAL_CARE_COUNT]);
    // The thresholds (concept_embeds_weights, special_care_embeds_weights) leave through the graph too, so
    // onnxruntime alone reads the weights; outputs need names of their own.
    op.output(op.param(this.net.concept_embeds_weights), 'concept_thresholds', F, [CONCEPT_COUNT]);
    op.output(op.param(this.net.special_care_embeds_weights), 'special_care_thresholds', F, [SPECIAL_CARE_COUNT]);
  }

  /** diffusers' `forward(clip_input, images)`: scores every image and zeroes the flagged ones in `images`. */
  async forward(args: SafetyCheckerForwardArgs): Promise<SafetyCheckerOutput> {
    const v = this.config.visionConfig;
    const clipInput = expectFloat32('clipInput', args.clipInput, [null, v.numChannels, v.imageSize, v.imageSize]);
    const batch = clipInput.dims[0]!;
    if (batch < 1) throw new InputError('clipInput must hold at least one image');
    const images = args.images === undefined ? null : expectFloat32('images', args.images, [batch, ...args.images.dims.slice(1).map(() => null)]);
    const out = await this.run({ clip_input: clipInput });
    const cosDist = out['cos_dist'] as Tensor<'float32'>;
    const specialCosDist = out['special_cos_dist'] as Tensor<'float32'>;
    const thresholds = out['concept_thresholds']!.data as Float32Array;
    const specialThresholds = out['special_care_thresholds']!.data as Float32Array;
    const scores: SafetyScores[] = [];
    const hasNsfwConcepts: boolean[] = [];
    for (let i = 0; i < batch; i++) {
      const row = (t: Tensor<'float32'>, k: number) => t.data.subarray(i * k, (i + 1) * k);
      const { hasNsfwConcept, ...s } = nsfwDecision(row(cosDist, CONCEPT_COUNT), row(specialCosDist, SPECIAL_CARE_COUNT), thresholds, specialThresholds);
      scores.push(s);
      hasNsfwConcepts.push(hasNsfwConcept);
    }
    return {
      images: images === null ? null : zeroFlagged(images, hasNsfwConcepts),
      hasNsfwConcepts,
      scores,
      pooledOutput: out['pooled_output'] as Tensor<'float32'>,
      imageEmbeds: out['image_embeds'] as Tensor<'float32'>,
      cosDist,
      specialCosDist,
    };
  }
}

/** A copy of `images` [B, …] with the flagged items set to zero. */
function zeroFlagged(images: Tensor<'float32'>, flagged: readonly boolean[]): Tensor<'float32'> {
  const out = images.data.slice();
  const per = numel(images.dims.slice(1));
  flagged.forEach((f, i) => f && out.fill(0, i * per, (i + 1) * per));
  return new Tensor('float32', out, images.dims);
}

/** The source without the vision position_ids buffer, if it has one. */
function withoutPositionIds(source: WeightSource): WeightSource {
  if (source.get(VISION_POSITION_IDS_KEY) === undefined) return source;
  const kept = new Map<string, WeightRef>();
  for (const k of source.keys()) if (k !== VISION_POSITION_IDS_KEY) kept.set(k, source.get(k)!);
  return new WeightSource(kept, source.origin);
}
