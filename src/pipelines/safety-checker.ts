/**
 * The SD pipeline's safety checker, as diffusers 0.33.1 runs it: loading `safety_checker/` and
 * `feature_extractor/` where `model_index.json` declares them, the `__init__` checks
 * (`requires_safety_checker`), and `run_safety_checker` in step 9 — the decoded images → uint8 images
 * (`postprocess(..., 'pil')`) → the feature extractor → the checker, which zeroes the flagged images;
 * those are then not denormalised, so they come out black (0 in 'np', RGB 0 in 'pil').
 */
import { join } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { CLIPImageProcessor } from '../image/clip-image-processor.js';
import type { VaeImageProcessor } from '../image/processor.js';
import { StableDiffusionSafetyChecker } from '../models/safety-checker.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import { componentClass, withVariant, type ComponentLoadOptions, type ModelIndex } from './components.js';
import type { ModelOffload } from './offload.js';

/** diffusers' warning when an image is flagged (logged by the checker itself there). */
export const NSFW_WARNING =
  'Potential NSFW content was detected in one or more images. A black image will be returned instead. Try again with a different prompt and/or seed.';

/** diffusers' warning for a pipeline built without a checker while `requires_safety_checker` is on, for this port's option name. */
export function disabledSafetyCheckerWarning(pipeline: string): string {
  return (
    `You have disabled the safety checker for ${pipeline} by passing \`safetyChecker: null\`. Ensure that you abide to the ` +
    'conditions of the Stable Diffusion license and do not expose unfiltered results in services or applications open to the ' +
    'public. Both the diffusers team and Hugging Face strongly recommend to keep the safety filter enabled in all public facing ' +
    'circumstances, disabling it only for use-cases that involve analyzing network behavior or auditing its results. For more ' +
    'information, please have a look at https://github.com/huggingface/diffusers/pull/254 .'
  );
}

/** The classes a pipeline folder may declare for each (`CLIPFeatureExtractor` is the older name of the same processor). */
const CHECKER_CLASSES = new Set(['StableDiffusionSafetyChecker']);
const FEATURE_EXTRACTOR_CLASSES = new Set(['CLIPImageProcessor', 'CLIPFeatureExtractor']);

export interface SafetyCheckerComponents {
  safetyChecker: StableDiffusionSafetyChecker | null;
  featureExtractor: CLIPImageProcessor | null;
  /** diffusers' `requires_safety_checker`: warn when built without a checker. */
  requiresSafetyChecker: boolean;
}

/** `fromPretrained` options of the SD pipeline: a given component (null: none) replaces the folder's, as in diffusers. */
export interface SafetyCheckerLoadOptions {
  /** null: run without a checker (and do not download its folder); default: the folder's, if declared. */
  safetyChecker?: StableDiffusionSafetyChecker | null;
  /** Default: the folder's `feature_extractor/`, if declared. */
  featureExtractor?: CLIPImageProcessor | null;
  /** Default: model_index.json's `requires_safety_checker` (true when absent, diffusers' default). */
  requiresSafetyChecker?: boolean;
}

/** diffusers' `__init__` checks: a checker needs a feature extractor; no checker while one is required is a warning. */
export function checkSafetyComponents(pipeline: string, c: SafetyCheckerComponents, warn: (message: string) => void): void {
  if (c.safetyChecker !== null && c.featureExtractor === null) {
    throw new InputError(
      `Make sure to define a feature extractor when loading ${pipeline} if you want to use the safety checker. ` +
        'If you do not want to use the safety checker, you can pass `safetyChecker: null` instead.',
    );
  }
  if (c.safetyChecker === null && c.requiresSafetyChecker) warn(disabledSafetyCheckerWarning(pipeline));
}

/**
 * The checker, feature extractor and `requires_safety_checker` of a pipeline folder, options first.
 * A checker declared without a feature extractor is refused before its weights are opened.
 */
export async function loadSafetyComponents(dir: string, index: ModelIndex, options: SafetyCheckerLoadOptions, opts: ComponentLoadOptions): Promise<SafetyCheckerComponents> {
  const checkerClass = componentClass(index, 'safety_checker');
  const extractorClass = componentClass(index, 'feature_extractor');
  const declared = index['requires_safety_checker'];
  const requiresSafetyChecker = options.requiresSafetyChecker ?? (typeof declared === 'boolean' ? declared : true);
  const wantChecker = options.safetyChecker === undefined && checkerClass !== null;
  if (wantChecker && !CHECKER_CLASSES.has(checkerClass)) {
    throw new ConfigError(`${dir}/model_index.json: safety_checker class "${checkerClass}" is not supported (StableDiffusionSafetyChecker is)`);
  }
  let featureExtractor = options.featureExtractor;
  if (featureExtractor === undefined) {
    const usable = extractorClass !== null && FEATURE_EXTRACTOR_CLASSES.has(extractorClass);
    const needed = wantChecker || (options.safetyChecker ?? null) !== null;
    if (needed && !usable) {
      const what = extractorClass === null ? 'no feature_extractor' : `feature_extractor class "${extractorClass}", not a CLIPImageProcessor`;
      const checker = wantChecker ? `declares safety_checker ${checkerClass}` : 'is given a safetyChecker';
      throw new ConfigError(
        `${dir}: the pipeline ${checker} but model_index.json has ${what}; the checker sees the images through that ` +
          'feature extractor: add it (feature_extractor/), pass `featureExtractor`, or pass `safetyChecker: null` to load without the checker',
      );
    }
    featureExtractor = usable ? CLIPImageProcessor.fromPretrained(dir, { subfolder: 'feature_extractor', warn: opts.warn }) : null;
  }
  const safetyChecker = wantChecker ? await loadSafetyChecker(dir, opts) : (options.safetyChecker ?? null);
  return { safetyChecker, featureExtractor, requiresSafetyChecker };
}

/** The checker in a pipeline folder's `safety_checker/` (its variant where it has one, as the other components). */
export async function loadSafetyChecker(dir: string, opts: ComponentLoadOptions): Promise<StableDiffusionSafetyChecker> {
  return withVariant('safety_checker', opts, (variant) =>
    StableDiffusionSafetyChecker.fromPretrained(join(dir, 'safety_checker'), {
      warn: opts.warn,
      ...(opts.runtime ? { runtime: opts.runtime } : {}),
      ...(opts.trace ? { trace: opts.trace } : {}),
      ...(variant ? { variant } : {}),
    }),
  );
}

/** What `runSafetyChecker` needs of a pipeline. */
export interface SafetyStage {
  safetyChecker: StableDiffusionSafetyChecker | null;
  featureExtractor: CLIPImageProcessor | null;
  imageProcessor: VaeImageProcessor;
  offload: ModelOffload;
}

export interface SafetyCheckResult {
  /** The images with every flagged one zeroed (the input itself when there is no checker). */
  images: Tensor<'float32'>;
  /** Per image whether it was flagged; null without a checker (diffusers' `has_nsfw_concept` None). */
  nsfwContentDetected: boolean[] | null;
}

/**
 * diffusers' `run_safety_checker` on decoded images [B, 3, H, W] in [-1, 1]: the feature extractor
 * sees them as uint8 images (postprocessed as for 'pil'), the checker flags and zeroes. Warns with
 * diffusers' text when any is flagged; the checker's session is released after it when model offload
 * is on.
 */
export async function runSafetyChecker(p: SafetyStage, decoded: TensorLike, warn: (message: string) => void): Promise<SafetyCheckResult> {
  const images = expectFloat32('images', decoded, [null, 3, null, null]);
  if (p.safetyChecker === null) return { images, nsfwContentDetected: null };
  if (p.featureExtractor === null) throw new InputError('the safety checker needs a feature extractor (CLIPImageProcessor); none is set');
  const clipInput = p.featureExtractor.preprocess(p.imageProcessor.postprocess(images, 'pil'));
  const out = await p.safetyChecker.forward({ clipInput, images });
  await p.offload.afterUse(p.safetyChecker);
  if (out.hasNsfwConcepts.some(Boolean)) warn(NSFW_WARNING);
  return { images: out.images!, nsfwContentDetected: out.hasNsfwConcepts };
}
