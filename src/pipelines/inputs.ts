/**
 * Step 1 of both pipelines, in one place: the control image decoded, diffusers' defaults filled in
 * and every argument checked (diffusers' check_inputs / check_image, plus sizes in pixels).
 */
import { InputError } from '../errors.js';
import { loadImage } from '../image/load.js';
import type { VaeImageProcessor } from '../image/processor.js';
import { RGBImage } from '../image/rgb-image.js';
import type { TensorLike } from '../tensor.js';
import { checkImageSize, type SizeRules } from './image-size.js';
import type { PipelineOutputType } from './output.js';

/** A control image: a path, encoded bytes, a decoded image, a list of those, or a [B,3,H,W] tensor in [0, 1]. */
export type ControlImageInput = string | Uint8Array | RGBImage | TensorLike | readonly (string | Uint8Array | RGBImage)[];

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === 'object' && x !== null && 'data' in x && 'dims' in x && !(x instanceof RGBImage) && !(x instanceof Uint8Array);
}

/** Decode paths/bytes; images and tensors pass through. */
export async function resolveControlImage(image: ControlImageInput | undefined): Promise<RGBImage[] | TensorLike> {
  if (image === undefined || image === null) {
    throw new InputError('`image` must be passed: a path, image bytes, an RGBImage, a list of those, or a [B, 3, H, W] tensor');
  }
  if (isTensorLike(image)) return image;
  const list = Array.isArray(image) ? (image as readonly (string | Uint8Array | RGBImage)[]) : [image as string | Uint8Array | RGBImage];
  if (list.length === 0) throw new InputError('`image` is an empty list');
  return Promise.all(list.map((x) => (x instanceof RGBImage ? x : loadImage(x))));
}

/** Number of control images given (diffusers' check_image). */
export function imageBatchSize(image: RGBImage[] | TensorLike): number {
  return Array.isArray(image) ? image.length : isTensorLike(image) && image.dims.length === 4 ? image.dims[0]! : 1;
}

/** The call arguments both pipelines take, with diffusers' defaults resolved. */
export interface CommonCallArgs {
  prompt?: string | string[];
  promptEmbeds?: TensorLike;
  negativePrompt?: unknown;
  negativePromptEmbeds?: TensorLike;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  numImagesPerPrompt?: number;
  controlnetConditioningScale?: number;
  controlGuidanceStart?: number;
  controlGuidanceEnd?: number;
  outputType?: PipelineOutputType;
  embedGuidanceScale?: boolean;
}

export interface ResolvedCall {
  numInferenceSteps: number;
  guidanceScale: number;
  numImagesPerPrompt: number;
  conditioningScale: number;
  start: number;
  end: number;
  outputType: PipelineOutputType;
  /** Prompts in the call (before numImagesPerPrompt). */
  batchSize: number;
  doClassifierFreeGuidance: boolean;
  /** The guidance scale goes to an LCM UNet as its embedding instead of classifier-free guidance. */
  embedGuidanceScale: boolean;
}

/** What `resolveCall` needs of the pipeline: its default guidance and how it sizes images. */
export interface CallDefaults {
  guidanceScale: number;
  sizeRules: SizeRules;
  controlImageProcessor: VaeImageProcessor;
}

/** Defaults filled in and diffusers' check_inputs/check_image applied (step 1 of both pipelines). */
export function resolveCall(args: CommonCallArgs, image: RGBImage[] | TensorLike, defaults: CallDefaults): ResolvedCall {
  checkPromptInputs(args);
  const r: ResolvedCall = {
    numInferenceSteps: args.numInferenceSteps ?? 50,
    guidanceScale: args.guidanceScale ?? defaults.guidanceScale,
    numImagesPerPrompt: args.numImagesPerPrompt ?? 1,
    conditioningScale: args.controlnetConditioningScale ?? 1.0,
    start: args.controlGuidanceStart ?? 0.0,
    end: args.controlGuidanceEnd ?? 1.0,
    outputType: args.outputType ?? 'pil',
    batchSize: args.prompt === undefined ? args.promptEmbeds!.dims[0]! : typeof args.prompt === 'string' ? 1 : args.prompt.length,
    doClassifierFreeGuidance: false,
    embedGuidanceScale: args.embedGuidanceScale ?? false,
  };
  // Imagen's guidance weight w; 1 means no guidance. An embedded guidance scale replaces CFG, as in
  // diffusers' plain pipelines for UNets with time_cond_proj_dim.
  r.doClassifierFreeGuidance = r.guidanceScale > 1.0 && !r.embedGuidanceScale;
  checkPositiveInt('numInferenceSteps', r.numInferenceSteps);
  checkPositiveInt('numImagesPerPrompt', r.numImagesPerPrompt);
  checkFinite('guidanceScale', r.guidanceScale);
  checkFinite('controlnetConditioningScale', r.conditioningScale);
  if (!['pil', 'np', 'latent'].includes(r.outputType)) throw new InputError(`outputType must be 'pil', 'np' or 'latent', got ${JSON.stringify(r.outputType)}`);
  const { sizeRules } = defaults;
  for (const [name, d] of [['height', args.height], ['width', args.width]] as const) {
    if (d !== undefined && (!Number.isInteger(d) || d < sizeRules.multiple)) throw new InputError(`${name} must be an integer ≥ ${sizeRules.multiple} px, got ${d}`);
  }
  // The size step 4 will produce (diffusers: the given size or the first image's, rounded down to the
  // VAE's factor), checked now in pixels rather than as latents deep inside the UNet.
  const first = Array.isArray(image) ? (image as RGBImage[])[0]! : (image as TensorLike);
  const size = defaults.controlImageProcessor.getDefaultHeightWidth(first, {
    ...(args.height !== undefined ? { height: args.height } : {}),
    ...(args.width !== undefined ? { width: args.width } : {}),
  });
  const given = args.height !== undefined && args.width !== undefined;
  checkImageSize(size, sizeRules, given ? 'height and width given' : 'from the control image; height and width not given');
  const imageBatch = imageBatchSize(image);
  if (imageBatch !== 1 && imageBatch !== r.batchSize) {
    throw new InputError(`If image batch size is not 1, image batch size must be same as prompt batch size. image batch size: ${imageBatch}, prompt batch size: ${r.batchSize}`);
  }
  checkControlWindow(r.start, r.end);
  return r;
}

/** Prompt/embedding exclusivity and agreement (diffusers' check_inputs). */
export function checkPromptInputs(args: { prompt?: unknown; promptEmbeds?: TensorLike; negativePrompt?: unknown; negativePromptEmbeds?: TensorLike }): void {
  if (args.prompt !== undefined && args.promptEmbeds !== undefined) {
    throw new InputError('Cannot forward both `prompt` and `promptEmbeds`. Please make sure to only forward one of the two.');
  }
  if (args.prompt === undefined && args.promptEmbeds === undefined) {
    throw new InputError('Provide either `prompt` or `promptEmbeds`. Cannot leave both `prompt` and `promptEmbeds` undefined.');
  }
  if (args.prompt !== undefined && typeof args.prompt !== 'string' && !Array.isArray(args.prompt)) {
    throw new InputError(`\`prompt\` has to be of type string or string[] but is ${typeof args.prompt}`);
  }
  if (args.negativePrompt !== undefined && args.negativePromptEmbeds !== undefined) {
    throw new InputError('Cannot forward both `negativePrompt` and `negativePromptEmbeds`. Please make sure to only forward one of the two.');
  }
  if (args.promptEmbeds && args.negativePromptEmbeds && args.promptEmbeds.dims.join() !== args.negativePromptEmbeds.dims.join()) {
    throw new InputError(
      `\`promptEmbeds\` and \`negativePromptEmbeds\` must have the same shape when passed directly, but got: [${args.promptEmbeds.dims.join(', ')}] != [${args.negativePromptEmbeds.dims.join(', ')}].`,
    );
  }
}

export function checkControlWindow(start: number, end: number): void {
  if (!(start < end)) throw new InputError(`control guidance start: ${start} cannot be larger or equal to control guidance end: ${end}.`);
  if (start < 0) throw new InputError(`control guidance start: ${start} can't be smaller than 0.`);
  if (end > 1) throw new InputError(`control guidance end: ${end} can't be larger than 1.0.`);
}

export function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new InputError(`${name} must be a positive integer, got ${v}`);
}

export function checkFinite(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${name} must be a finite number, got ${String(v)}`);
}
