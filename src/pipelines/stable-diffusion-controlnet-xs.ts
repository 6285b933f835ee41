/**
 * StableDiffusionControlNetXSPipeline (SD 1.x / 2.x with a ControlNet-XS adapter), step for step
 * diffusers 0.33.1's `__call__`. Everything a generation changes lives in that call (its scheduler
 * run, latents, generator), so concurrent generations on one pipeline never interfere.
 */
import type { CLIPImageProcessor } from '../image/clip-image-processor.js';
import { VaeImageProcessor } from '../image/processor.js';
import type { CLIPTextModel } from '../models/clip-text-model.js';
import type { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import type { StableDiffusionSafetyChecker } from '../models/safety-checker.js';
import type { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import type { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import type { Generator } from '../random/index.js';
import type { Scheduler } from '../schedulers/index.js';
import { Tensor, expectFloat32, type TensorLike } from '../tensor.js';
import type { CLIPTokenizer } from '../tokenizer/index.js';
import { catBatch, repeatInterleave } from './batch.js';
import {
  componentClass,
  fusedUnet,
  loadAdapter,
  loadScheduler,
  loadTextEncoder,
  loadTokenizer,
  loadUnet,
  loadVae,
  loadModelIndex,
  type PipelineVae,
} from './components.js';
import { denoise, loopHooks, type PipelineStep } from './denoise.js';
import { guidanceTimestepCond } from './guidance-embedding.js';
import { resolveCall, resolveControlImage, type ControlImageInput } from './inputs.js';
import { decodeOutput, finish, type PipelineOutput, type PipelineOutputType } from './output.js';
import { defaultGenerator, pickFromEnd, prepareLatents, tokenizeTruncating, uncondTokens } from './prepare.js';
import { modelOptions, resolvePipelineDir, type PipelineLoadOptions } from './resolve.js';
import {
  checkSafetyComponents,
  loadSafetyComponents,
  runSafetyChecker,
  type SafetyCheckResult,
  type SafetyCheckerLoadOptions,
} from './safety-checker.js';
import { ControlNetXSPipelineBase } from './pipeline-base.js';
import { loadSingleFileParts, type SingleFilePipelineOptions } from './single-file.js';
import type { LoraModels } from './lora.js';
import type { TextEncoderPair } from './textual-inversion.js';
import { SD_CALLBACK_TENSOR_INPUTS, checkCallbackTensorInputs, type SDCallbackTensorName, type StepCallback } from './callbacks.js';

export type { PipelineOutput } from './output.js';
export type { PipelineStep } from './denoise.js';
export type { StepCallbackResult } from './callbacks.js';

export interface StableDiffusionControlNetXSComponents {
  /** AutoencoderKL, or AutoencoderTiny (TAESD) for a fast decode, as diffusers allows. */
  vae: PipelineVae;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  /** A plain UNet is fused with `controlnet` on construction, as diffusers does. */
  unet: UNet2DConditionModel | UNetControlNetXSModel;
  controlnet: ControlNetXSAdapter | null;
  scheduler: Scheduler;
  /** diffusers' NSFW filter (default none); it needs `featureExtractor`. */
  safetyChecker?: StableDiffusionSafetyChecker | null;
  featureExtractor?: CLIPImageProcessor | null;
  /** Warn when built without a checker (diffusers' `requires_safety_checker`; default true, as there). */
  requiresSafetyChecker?: boolean;
}

export interface StableDiffusionControlNetXSCallArgs {
  prompt?: string | string[];
  image?: ControlImageInput;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  negativePrompt?: string | string[];
  numImagesPerPrompt?: number;
  eta?: number;
  generator?: Generator | Generator[];
  latents?: TensorLike;
  promptEmbeds?: TensorLike;
  negativePromptEmbeds?: TensorLike;
  outputType?: PipelineOutputType;
  controlnetConditioningScale?: number;
  controlGuidanceStart?: number;
  controlGuidanceEnd?: number;
  clipSkip?: number;
  /**
   * diffusers' `cross_attention_kwargs`; only `scale` is read: the LoRA scale of this run, applied to the
   * UNet's and the text encoder(s)' LoRA layers alike, as the plain SD/SDXL pipelines do (default 1).
   */
  crossAttentionKwargs?: { scale?: number };
  /**
   * Beyond diffusers (whose ControlNet-XS pipelines never do this): for an LCM-distilled UNet
   * (`time_cond_proj_dim`), pass `guidanceScale` as its guidance embedding (w = guidanceScale − 1,
   * `timestep_cond`) and run no classifier-free guidance, as diffusers' plain SD/LCM pipelines do.
   * The fused model routes the embedding as diffusers' forward does (see UNetControlNetXSForwardArgs),
   * so it only reaches the output where an adapter blends a learned time embedding with
   * time_embedding_mix < 1. A negative prompt then has no effect, as with guidanceScale ≤ 1.
   * Off (the default): diffusers' behaviour, CFG whenever guidanceScale > 1.
   */
  embedGuidanceScale?: boolean;
  /** After every step (diffusers' callback_on_step_end); may replace `latents` and `promptEmbeds`. */
  callbackOnStepEnd?: StepCallback<StableDiffusionControlNetXSPipeline, SDCallbackTensorName>;
  /** Which tensors besides `latents` the callback receives (diffusers' callback_on_step_end_tensor_inputs). */
  callbackOnStepEndTensorInputs?: readonly SDCallbackTensorName[];
  /** Cancels the generation between steps. */
  signal?: AbortSignal;
  /** Called after every denoising step. */
  onProgress?: (p: { step: number; total: number; timestep: number }) => void;
}

export interface EncodePromptOptions {
  numImagesPerPrompt: number;
  doClassifierFreeGuidance: boolean;
  negativePrompt?: string | string[];
  promptEmbeds?: TensorLike;
  negativePromptEmbeds?: TensorLike;
  clipSkip?: number;
}

export class StableDiffusionControlNetXSPipeline extends ControlNetXSPipelineBase {
  /** The tensors `callbackOnStepEndTensorInputs` may name (diffusers' `_callback_tensor_inputs`). */
  static readonly callbackTensorInputs: readonly SDCallbackTensorName[] = SD_CALLBACK_TENSOR_INPUTS;
  vae: PipelineVae;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  unet: UNetControlNetXSModel;
  controlnet: ControlNetXSAdapter | null;
  /** Swappable: `pipe.scheduler = EulerDiscreteScheduler.fromConfig(pipe.scheduler.config)`. */
  scheduler: Scheduler;
  readonly vaeScaleFactor: number;
  readonly imageProcessor: VaeImageProcessor;
  readonly controlImageProcessor: VaeImageProcessor;
  /** Run on every decoded image (step 9) when set; flagged images come back black. */
  safetyChecker: StableDiffusionSafetyChecker | null;
  featureExtractor: CLIPImageProcessor | null;
  readonly requiresSafetyChecker: boolean;
  private readonly warn: (message: string) => void;

  constructor(components: StableDiffusionControlNetXSComponents, options: { warn?: (message: string) => void } = {}) {
    super();
    this.warn = options.warn ?? console.warn;
    const { unet, controlnet } = components;
    this.unet = fusedUnet(unet, controlnet, 'sd');
    this.vae = components.vae;
    this.textEncoder = components.textEncoder;
    this.tokenizer = components.tokenizer;
    this.controlnet = controlnet;
    this.scheduler = components.scheduler;
    this.vaeScaleFactor = 2 ** (this.vae.config.blockOutChannels.length - 1);
    this.imageProcessor = new VaeImageProcessor({ vaeScaleFactor: this.vaeScaleFactor, doConvertRgb: true });
    this.controlImageProcessor = new VaeImageProcessor({ vaeScaleFactor: this.vaeScaleFactor, doConvertRgb: true, doNormalize: false });
    this.safetyChecker = components.safetyChecker ?? null;
    this.featureExtractor = components.featureExtractor ?? null;
    this.requiresSafetyChecker = components.requiresSafetyChecker ?? true;
    checkSafetyComponents('StableDiffusionControlNetXSPipeline', this, this.warn);
  }

  /** Load a diffusers pipeline folder or Hub repo; the adapter comes from `controlnet` or the repo's `controlnet/`. */
  static async fromPretrained(
    idOrDir: string,
    options: PipelineLoadOptions & SafetyCheckerLoadOptions & { controlnet?: ControlNetXSAdapter; vae?: PipelineVae } = {},
  ): Promise<StableDiffusionControlNetXSPipeline> {
    const warn = options.warn ?? console.warn;
    // A checker passed in (or null) replaces the repo's, whose folder is then not downloaded (as diffusers).
    const dir = await resolvePipelineDir(idOrDir, options, options.safetyChecker === undefined ? [] : ['safety_checker']);
    const index = await loadModelIndex(dir);
    const opts = { ...modelOptions(options), warn };
    const safety = await loadSafetyComponents(dir, index, options, opts);
    const [vae, textEncoder, tokenizer, unet, controlnet] = await Promise.all([
      options.vae ?? loadVae(dir, opts),
      loadTextEncoder(dir, 'text_encoder', opts),
      loadTokenizer(dir, 'tokenizer'),
      loadUnet(dir, index, opts),
      options.controlnet ?? (componentClass(index, 'controlnet') !== null ? loadAdapter(dir, opts) : Promise.resolve(null)),
    ]);
    const scheduler = await loadScheduler(dir);
    return new StableDiffusionControlNetXSPipeline({ vae, textEncoder, tokenizer, unet, controlnet, scheduler, ...safety }, { warn });
  }

  /**
   * Load an original SD 1.x / 2.x single file (`.safetensors`, `.ckpt`): UNet, VAE and text encoder
   * from the file, configs from `config` or the bundled defaults of the detected model type (see
   * SingleFilePipelineOptions); the adapter from `controlnet` (single files never hold one).
   */
  static async fromSingleFile(path: string, options: SingleFilePipelineOptions = {}): Promise<StableDiffusionControlNetXSPipeline> {
    const p = await loadSingleFileParts(path, 'sd', options);
    const { vae, textEncoder, tokenizer, unet, controlnet, scheduler, requiresSafetyChecker } = p;
    return new StableDiffusionControlNetXSPipeline(
      { vae, textEncoder, tokenizer, unet, controlnet, scheduler, safetyChecker: null, requiresSafetyChecker },
      options.warn ? { warn: options.warn } : {},
    );
  }

  protected get loraModels(): LoraModels {
    return { unet: this.unet, textEncoders: [{ name: 'text_encoder', model: this.textEncoder }] };
  }

  protected get textEncoderPairs(): readonly TextEncoderPair[] {
    return [{ name: 'text_encoder', tokenizer: this.tokenizer, textEncoder: this.textEncoder }];
  }

  /** The components, to build another pipeline without loading anything twice. */
  get components(): StableDiffusionControlNetXSComponents {
    const { vae, textEncoder, tokenizer, unet, controlnet, scheduler, safetyChecker, featureExtractor, requiresSafetyChecker } = this;
    return { vae, textEncoder, tokenizer, unet, controlnet, scheduler, safetyChecker, featureExtractor, requiresSafetyChecker };
  }

  /**
   * diffusers' `run_safety_checker` (step 9): decoded images [B, 3, H, W] in [-1, 1] → the same with
   * every flagged image zeroed, and per image whether it was flagged (null without a checker).
   */
  async runSafetyChecker(images: TensorLike): Promise<SafetyCheckResult> {
    return runSafetyChecker(this, images, this.warn);
  }

  /**
   * Generate: diffusers' `__call__`. The output's type follows `outputType`: `images` is an
   * `RGBImage[]` for 'pil' (the default), a float32 `Tensor` for 'np' and 'latent'.
   */
  async run<T extends PipelineOutputType | undefined = undefined>(args: StableDiffusionControlNetXSCallArgs & { outputType?: T }): Promise<PipelineOutput<T>> {
    return finish(this.steps(args));
  }

  /** The same generation as an async iterator of steps (for previews); its return value is the output. */
  steps<T extends PipelineOutputType | undefined = undefined>(
    args: StableDiffusionControlNetXSCallArgs & { outputType?: T },
  ): AsyncGenerator<PipelineStep, PipelineOutput<T>, void> {
    // generate() returns what decodeOutput made for args.outputType, so `images` has the type T names;
    // TypeScript cannot follow that through the runtime branch, hence the one assertion.
    return this.offload.track(this.generate(args)) as AsyncGenerator<PipelineStep, PipelineOutput<T>, void>;
  }

  private async *generate(args: StableDiffusionControlNetXSCallArgs): AsyncGenerator<PipelineStep, PipelineOutput, void> {
    // 1. Check inputs (diffusers' defaults filled in)
    const image = await resolveControlImage(args.image);
    const call = resolveCall(args, image, { guidanceScale: 7.5, sizeRules: this.sizeRules, controlImageProcessor: this.controlImageProcessor });
    checkCallbackTensorInputs(args.callbackOnStepEndTensorInputs, StableDiffusionControlNetXSPipeline.callbackTensorInputs);
    this.applyLoraScale(args.crossAttentionKwargs?.scale); // before the text encoders run
    const { numInferenceSteps, guidanceScale, numImagesPerPrompt, conditioningScale, start, end, outputType } = call;

    // 2. Define call parameters (and, opted in, the guidance embedding that replaces CFG)
    const { batchSize, doClassifierFreeGuidance: doCfg } = call;
    const timestepCond = call.embedGuidanceScale ? guidanceTimestepCond(this.unet, guidanceScale, batchSize * numImagesPerPrompt) : null;

    // 3. Encode input prompt (negative rows first for classifier-free guidance)
    const { promptEmbeds, negativePromptEmbeds } = await this.encodePrompt(args.prompt, {
      numImagesPerPrompt,
      doClassifierFreeGuidance: doCfg,
      ...(args.negativePrompt !== undefined ? { negativePrompt: args.negativePrompt } : {}),
      ...(args.promptEmbeds ? { promptEmbeds: args.promptEmbeds } : {}),
      ...(args.negativePromptEmbeds ? { negativePromptEmbeds: args.negativePromptEmbeds } : {}),
      ...(args.clipSkip !== undefined ? { clipSkip: args.clipSkip } : {}),
    });
    const encoderHiddenStates = doCfg ? catBatch([negativePromptEmbeds!, promptEmbeds]) : promptEmbeds;

    await this.offload.afterUse(this.textEncoder);

    // 4. Prepare image
    const controlImage = this.prepareImage(image, {
      ...(args.height !== undefined ? { height: args.height } : {}),
      ...(args.width !== undefined ? { width: args.width } : {}),
      batchSize: batchSize * numImagesPerPrompt,
      numImagesPerPrompt,
      doClassifierFreeGuidance: doCfg,
    });
    const [height, width] = controlImage.dims.slice(-2) as [number, number];

    // 5. Prepare timesteps (this generation's own scheduler run)
    const run = this.scheduler.createRun(numInferenceSteps);

    // 6. Prepare latent variables
    const generator = args.generator ?? defaultGenerator();
    const latentShape = [batchSize * numImagesPerPrompt, 4, Math.floor(height / this.vaeScaleFactor), Math.floor(width / this.vaeScaleFactor)];
    const latents0 = prepareLatents(latentShape, generator, args.latents, run.initNoiseSigma);

    // 7. Prepare extra step kwargs (generator, eta) and 8. the denoising loop
    const latents = yield* denoise({
      pipe: this,
      unet: this.unet,
      run,
      latents: latents0,
      encoderHiddenStates,
      negativePromptEmbeds,
      controlImage,
      doClassifierFreeGuidance: doCfg,
      ...(timestepCond ? { timestepCond } : {}),
      guidanceScale,
      conditioningScale,
      controlGuidanceStart: start,
      controlGuidanceEnd: end,
      generator,
      ...loopHooks(args),
    });

    // 9. Decode and post-process
    return decodeOutput(this, latents, outputType);
  }

  /** diffusers' encode_prompt: [B·N, L, D] embeddings (each prompt repeated N times), and the negative ones for CFG. */
  async encodePrompt(
    prompt: string | string[] | undefined,
    o: EncodePromptOptions,
  ): Promise<{ promptEmbeds: Tensor<'float32'>; negativePromptEmbeds: Tensor<'float32'> | null }> {
    const batchSize = prompt === undefined ? o.promptEmbeds!.dims[0]! : typeof prompt === 'string' ? 1 : prompt.length;
    let promptEmbeds: Tensor<'float32'>;
    if (o.promptEmbeds) {
      promptEmbeds = expectFloat32('promptEmbeds', o.promptEmbeds, [null, null, null]);
    } else {
      const ids = tokenizeTruncating(this.tokenizer, this.maybeConvertPrompt(prompt!, this.tokenizer), { warn: this.warn });
      const out = await this.textEncoder.forward(ids, { outputHiddenStates: o.clipSkip !== undefined });
      promptEmbeds = o.clipSkip === undefined ? out.lastHiddenState : pickFromEnd(out.normedHiddenStates!, o.clipSkip + 1, 'clipSkip');
    }
    promptEmbeds = repeatInterleave(promptEmbeds, o.numImagesPerPrompt);

    let negative: Tensor<'float32'> | null = null;
    if (o.doClassifierFreeGuidance) {
      if (o.negativePromptEmbeds) {
        negative = expectFloat32('negativePromptEmbeds', o.negativePromptEmbeds, [null, null, null]);
      } else {
        const uncond = this.maybeConvertPrompt(uncondTokens(prompt, o.negativePrompt, batchSize), this.tokenizer);
        const out = await this.textEncoder.forward(tokenizeTruncating(this.tokenizer, uncond, { maxLength: promptEmbeds.dims[1]! }));
        negative = out.lastHiddenState;
      }
      negative = repeatInterleave(negative, o.numImagesPerPrompt);
    }
    return { promptEmbeds, negativePromptEmbeds: negative };
  }
}

