/**
 * Steps the ControlNet-XS pipelines (SD and SDXL) share: prompt checks and tokenization, control
 * image and latent preparation, and the denoising loop itself (diffusers' step 8).
 */
import { InputError } from '../errors.js';
import type { VaeImageProcessor } from '../image/processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import type { ModelRuntimeOptions } from '../models/traced-model.js';
import type { AutoencoderKL, VaeRunOptions } from '../models/autoencoder-kl.js';
import type { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import { randnTensor, type Generator } from '../random/index.js';
import type { SchedulerRun } from '../schedulers/index.js';
import { Tensor, expectFloat32, type TensorLike } from '../tensor.js';
import type { CLIPTokenizer } from '../tokenizer/index.js';
import { catBatch, divide, guide, repeatInterleave, scale } from './batch.js';
import { checkControlWindow, checkFinite, checkPositiveInt, controlAppliesAt, imageBatchSize, throwIfAborted } from './inputs.js';
import type { PipelineLoadOptions } from './resolve.js';
import { runStepCallback, type StepCallback } from './callbacks.js';
import { checkImageSize, type SizeRules } from './image-size.js';

/** One denoising step, as `steps()` yields it (latents after the scheduler step). */
export interface PipelineStep {
  index: number;
  total: number;
  timestep: number;
  applyControl: boolean;
  latents: Tensor<'float32'>;
}

/** What a pipeline call can return (`outputType`); 'pil' is the default. */
export type PipelineOutputType = 'pil' | 'np' | 'latent';

/**
 * What `images` holds for an `outputType`: 'pil' or none (the default) → RGBImage[]; 'np' and
 * 'latent' → a float32 Tensor. It distributes over a union, so a call whose `outputType` is only
 * known as `PipelineOutputType` gets `RGBImage[] | Tensor<'float32'>`.
 */
export type PipelineImages<T extends PipelineOutputType | undefined> = T extends 'np' | 'latent' ? Tensor<'float32'> : RGBImage[];

/** A generation's result; `run({ ..., outputType: 'np' })` types it as `PipelineOutput<'np'>`. */
export interface PipelineOutput<T extends PipelineOutputType | undefined = PipelineOutputType> {
  /** 'pil': RGBImage[]; 'np': Tensor [B, H, W, 3] in [0, 1]; 'latent': the final latents [B, 4, h, w]. */
  images: PipelineImages<T>;
  /** Always null: no safety checker is bundled. */
  nsfwContentDetected: boolean[] | null;
}

/** Tokenize to `maxLength` with truncation, warning about what was cut (diffusers' message). */
export function tokenizeTruncating(
  tokenizer: CLIPTokenizer,
  text: string | readonly string[],
  o: { maxLength?: number; warn?: (message: string) => void } = {},
): Tensor<'int64'> {
  const texts = typeof text === 'string' ? [text] : text;
  const maxLength = o.maxLength ?? tokenizer.modelMaxLength;
  if (o.warn) {
    for (const t of texts) {
      const full = tokenizer.encode(t).inputIds;
      if (full.length > maxLength) {
        const removed = tokenizer.decode(full.slice(maxLength - 1, -1));
        o.warn(`The following part of your input was truncated because CLIP can only handle sequences up to ${maxLength} tokens: ${removed}`);
      }
    }
  }
  return tokenizer.call(texts, { padding: 'max_length', maxLength, truncation: true }).inputIds;
}

export interface PrepareImageOptions {
  height?: number;
  width?: number;
  batchSize: number;
  numImagesPerPrompt: number;
  doClassifierFreeGuidance: boolean;
}

/** Control image → [B·N(·2), 3, H, W] in [0, 1], rows repeated for the batch and for CFG. */
export function prepareControlImage(processor: VaeImageProcessor, image: RGBImage[] | TensorLike, o: PrepareImageOptions): Tensor<'float32'> {
  const size = { ...(o.height !== undefined ? { height: o.height } : {}), ...(o.width !== undefined ? { width: o.width } : {}) };
  const t = processor.preprocess(image, size);
  const repeated = repeatInterleave(t, t.dims[0] === 1 ? o.batchSize : o.numImagesPerPrompt);
  return o.doClassifierFreeGuidance ? catBatch([repeated, repeated]) : repeated;
}

/** Initial latents: given (checked against `shape`) or drawn with `randnTensor`, times the run's init noise sigma. */
export function prepareLatents(shape: number[], generator: Generator | Generator[], latents: TensorLike | undefined, initNoiseSigma: number): Tensor<'float32'> {
  const batch = shape[0]!;
  if (Array.isArray(generator) && generator.length !== batch) {
    throw new InputError(
      `You have passed a list of generators of length ${generator.length}, but requested an effective batch size of ${batch}. Make sure the batch size matches the length of the generators.`,
    );
  }
  const noise = latents ? expectFloat32('latents', latents, shape) : randnTensor(shape, { generator });
  return scale(noise, initNoiseSigma);
}

export interface DenoiseOptions<P> {
  pipe: P;
  unet: UNetControlNetXSModel;
  run: SchedulerRun;
  latents: Tensor<'float32'>;
  encoderHiddenStates: Tensor<'float32'>;
  /** The negative half of `encoderHiddenStates` under CFG (for callbacks), else null. */
  negativePromptEmbeds: Tensor<'float32'> | null;
  controlImage: Tensor<'float32'>;
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
  guidanceScale: number;
  conditioningScale: number;
  controlGuidanceStart: number;
  controlGuidanceEnd: number;
  generator: Generator | Generator[];
  eta: number;
  callbackOnStepEnd?: StepCallback<P, string>;
  /** Tensors the callback asked for (checked against the pipeline's list). */
  callbackOnStepEndTensorInputs?: readonly string[];
  /** Further tensors a callback may ask for, read-only (SDXL's added conditioning). */
  callbackExtras?: Readonly<Record<string, Tensor<'float32'> | null>>;
  onProgress?: (p: { step: number; total: number; timestep: number }) => void;
  signal?: AbortSignal;
}

/**
 * diffusers' denoising loop: per timestep, scale the (CFG-doubled) latents, run the fused UNet with
 * control on or off, guide, and step this generation's scheduler run. Yields after every step and
 * returns the final latents.
 */
export async function* denoise<P>(o: DenoiseOptions<P>): AsyncGenerator<PipelineStep, Tensor<'float32'>, void> {
  const doCfg = o.guidanceScale > 1.0;
  const timesteps = o.run.timesteps;
  let latents = o.latents;
  let promptEmbeds = o.encoderHiddenStates;
  let negativePromptEmbeds = o.negativePromptEmbeds;
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(o.signal);
    const t = timesteps[i]!;
    const latentModelInput = o.run.scaleModelInput(doCfg ? catBatch([latents, latents]) : latents, t);
    const applyControl = controlAppliesAt(i, timesteps.length, o.controlGuidanceStart, o.controlGuidanceEnd);
    const { sample: noisePred } = await o.unet.forward({
      sample: latentModelInput,
      timestep: t,
      encoderHiddenStates: promptEmbeds,
      controlnetCond: o.controlImage,
      conditioningScale: o.conditioningScale,
      applyControl,
      ...(o.addedCondKwargs ? { addedCondKwargs: o.addedCondKwargs } : {}),
    });
    const guided = doCfg ? guide(noisePred, o.guidanceScale) : noisePred;
    latents = o.run.step(guided, t, latents, { generator: o.generator, eta: o.eta }).prevSample;
    if (o.callbackOnStepEnd) {
      const at = { pipe: o.pipe, step: i, timestep: t, names: o.callbackOnStepEndTensorInputs ?? ['latents'] };
      ({ latents, promptEmbeds, negativePromptEmbeds } = await runStepCallback(o.callbackOnStepEnd, at, { latents, promptEmbeds, negativePromptEmbeds }, o.callbackExtras ?? {}));
    }
    o.onProgress?.({ step: i + 1, total: timesteps.length, timestep: t });
    yield { index: i, total: timesteps.length, timestep: t, applyControl, latents };
  }
  throwIfAborted(o.signal);
  return latents;
}

/** Drain a steps() iterator and return its output. */
export async function finish<T>(it: AsyncGenerator<PipelineStep, T, void>): Promise<T> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
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

/** The negative side of CFG: "" per prompt, or the given negative prompt(s), checked against the prompt. */
export function uncondTokens(prompt: string | string[] | undefined, negative: string | string[] | undefined, batchSize: number): string[] {
  if (negative === undefined) return Array(batchSize).fill('');
  if (prompt !== undefined && typeof prompt !== typeof negative) {
    throw new InputError(`\`negativePrompt\` should be the same type to \`prompt\`, but got ${typeof negative} != ${typeof prompt}.`);
  }
  if (typeof negative === 'string') return [negative];
  if (negative.length !== batchSize) {
    throw new InputError(
      `\`negativePrompt\` has batch size ${negative.length}, but \`prompt\` has batch size ${batchSize}. Please make sure that passed \`negativePrompt\` matches the batch size of \`prompt\`.`,
    );
  }
  return [...negative];
}

/** `list[-k]` with a named error when k is out of range. */
export function pickFromEnd<T>(list: readonly T[], k: number, name: string): T {
  if (!Number.isInteger(k) || k < 1 || k > list.length) throw new InputError(`${name} must be between 0 and ${list.length - 1}, got ${k - 1}`);
  return list[list.length - k]!;
}

/** Model-level options of a pipeline load. */
export function modelOptions(o: PipelineLoadOptions): ModelRuntimeOptions & { variant?: string } {
  const providers = o.device && o.device !== 'cpu' ? { executionProviders: [o.device, 'cpu'] } : {};
  const runtime = { ...providers, ...o.runtime, ...(o.warn && !o.runtime?.warn ? { warn: o.warn } : {}) };
  return {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(Object.keys(runtime).length ? { runtime } : {}),
    ...(o.trace ? { trace: o.trace } : {}),
  };
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
  outputType?: 'pil' | 'np' | 'latent';
}

export interface ResolvedCall {
  numInferenceSteps: number;
  guidanceScale: number;
  numImagesPerPrompt: number;
  conditioningScale: number;
  start: number;
  end: number;
  outputType: 'pil' | 'np' | 'latent';
  /** Prompts in the call (before numImagesPerPrompt). */
  batchSize: number;
  doClassifierFreeGuidance: boolean;
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
  };
  r.doClassifierFreeGuidance = r.guidanceScale > 1.0; // Imagen's guidance weight w; 1 means no guidance
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

/** The pipelines' UNet: a fused model as given, or a plain UNet fused with the adapter (diffusers' __init__). */
export function fusedUnet(unet: UNet2DConditionModel | UNetControlNetXSModel, controlnet: ControlNetXSAdapter | null, kind: 'sd' | 'sdxl'): UNetControlNetXSModel {
  let fused: UNetControlNetXSModel;
  if (unet instanceof UNet2DConditionModel) {
    if (!controlnet) throw new InputError('a plain UNet2DConditionModel needs a `controlnet` (ControlNetXSAdapter) to fuse with');
    fused = UNetControlNetXSModel.fuse(unet, controlnet, unet.runtimeSettings);
  } else {
    fused = unet;
  }
  const isXL = fused.config.additionEmbedType === 'text_time';
  if (kind === 'sd' && isXL) throw new InputError('this UNet is an SDXL UNet (addition_embed_type "text_time"): use StableDiffusionXLControlNetXSPipeline');
  if (kind === 'sdxl' && !isXL) throw new InputError('this UNet has no SDXL text_time embedding: use StableDiffusionControlNetXSPipeline for SD 1.x/2.x');
  return fused;
}

/** What step 9 needs of a pipeline. */
export interface DecodeStage {
  unet: UNetControlNetXSModel;
  vae: AutoencoderKL;
  imageProcessor: VaeImageProcessor;
  vaeDecode: VaeRunOptions;
  offload: ModelOffload;
}

/**
 * Step 9: `vae.decode(latents / scaling_factor)` and postprocess (or the latents themselves), closing
 * the UNet's and then the VAE's session after their stage when model offload is on.
 */
export async function decodeOutput(p: DecodeStage, latents: Tensor<'float32'>, outputType: 'pil' | 'np' | 'latent'): Promise<PipelineOutput> {
  await p.offload.afterUse(p.unet);
  if (outputType === 'latent') return { images: latents, nsfwContentDetected: null };
  const { sample } = await p.vae.decode(divide(latents, p.vae.config.scalingFactor), p.vaeDecode);
  await p.offload.afterUse(p.vae);
  const images = outputType === 'pil' ? p.imageProcessor.postprocess(sample, 'pil') : p.imageProcessor.postprocess(sample, 'np');
  return { images, nsfwContentDetected: null };
}

/** The per-call loop settings the pipelines pass straight through to `denoise`. */
export function loopHooks<P>(args: {
  eta?: number;
  callbackOnStepEnd?: DenoiseOptions<P>['callbackOnStepEnd'];
  callbackOnStepEndTensorInputs?: readonly string[];
  onProgress?: DenoiseOptions<P>['onProgress'];
  signal?: AbortSignal;
}): Pick<DenoiseOptions<P>, 'eta' | 'callbackOnStepEnd' | 'callbackOnStepEndTensorInputs' | 'onProgress' | 'signal'> {
  return {
    eta: args.eta ?? 0.0,
    ...(args.callbackOnStepEnd ? { callbackOnStepEnd: args.callbackOnStepEnd } : {}),
    ...(args.callbackOnStepEndTensorInputs ? { callbackOnStepEndTensorInputs: args.callbackOnStepEndTensorInputs } : {}),
    ...(args.onProgress ? { onProgress: args.onProgress } : {}),
    ...(args.signal ? { signal: args.signal } : {}),
  };
}

/**
 * diffusers' `enable_model_cpu_offload`, for onnxruntime sessions: when on, every model releases its
 * session right after its stage of a generation (text encoders, then the UNet, then the VAE), so a
 * generation's peak memory is its largest model's rather than the sum of all; sessions are re-created
 * on next use (in seconds with `runtime.graphCacheDir`, whose weights onnxruntime maps from disk).
 * Nothing is released while another generation is in flight.
 */
export class ModelOffload {
  enabled = false;
  private active = 0;

  /** Count a generation in for the duration of `body`. */
  async *track<S, R>(body: AsyncGenerator<S, R, void>): AsyncGenerator<S, R, void> {
    this.active++;
    try {
      return yield* body;
    } finally {
      this.active--;
    }
  }

  /** Release `models` if offloading is on and this is the only generation running. */
  async afterUse(...models: { release(): Promise<void> }[]): Promise<void> {
    if (this.enabled && this.active === 1) await Promise.all(models.map((m) => m.release()));
  }
}
