/**
 * StableDiffusionXLControlNetXSPipeline, step for step diffusers 0.33.1's `__call__`: two text
 * encoders (penultimate hidden states concatenated, pooled embeddings from the second), SDXL
 * micro-conditioning (`add_time_ids`) and a fused SDXL UNet + ControlNet-XS adapter.
 */
import { InputError } from '../errors.js';
import { VaeImageProcessor } from '../image/processor.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text-model.js';
import type { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
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
  loadTextEncoderWithProjection,
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
import { defaultGenerator, pickFromEnd, prepareLatents, tokenizeTruncating } from './prepare.js';
import { modelOptions, resolvePipelineDir, type PipelineLoadOptions } from './resolve.js';
import { ControlNetXSPipelineBase } from './pipeline-base.js';
import { loadSingleFileParts, type SingleFileXLPipelineOptions } from './single-file.js';
import type { LoraModels } from './lora.js';
import type { TextEncoderPair } from './textual-inversion.js';
import { SDXL_CALLBACK_TENSOR_INPUTS, checkCallbackTensorInputs, type SDXLCallbackTensorName, type StepCallback } from './callbacks.js';

export interface StableDiffusionXLControlNetXSComponents {
  /** AutoencoderKL, or AutoencoderTiny (TAESD) for a fast decode, as diffusers allows. */
  vae: PipelineVae;
  textEncoder: CLIPTextModel;
  textEncoder2: CLIPTextModelWithProjection;
  tokenizer: CLIPTokenizer;
  tokenizer2: CLIPTokenizer;
  /** A plain SDXL UNet is fused with `controlnet` on construction, as diffusers does. */
  unet: UNet2DConditionModel | UNetControlNetXSModel;
  controlnet: ControlNetXSAdapter | null;
  scheduler: Scheduler;
  /** With no negative prompt, negative embeddings are zeros (model_index.json; default true). */
  forceZerosForEmptyPrompt?: boolean;
  featureExtractor?: null;
}

type Size = readonly [number, number];

export interface StableDiffusionXLControlNetXSCallArgs {
  prompt?: string | string[];
  prompt2?: string | string[];
  image?: ControlImageInput;
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  negativePrompt?: string | string[];
  negativePrompt2?: string | string[];
  numImagesPerPrompt?: number;
  eta?: number;
  generator?: Generator | Generator[];
  latents?: TensorLike;
  promptEmbeds?: TensorLike;
  negativePromptEmbeds?: TensorLike;
  pooledPromptEmbeds?: TensorLike;
  negativePooledPromptEmbeds?: TensorLike;
  outputType?: PipelineOutputType;
  controlnetConditioningScale?: number;
  controlGuidanceStart?: number;
  controlGuidanceEnd?: number;
  /** (height, width) of the original image; defaults to the control image's size. */
  originalSize?: Size;
  cropsCoordsTopLeft?: Size;
  targetSize?: Size;
  negativeOriginalSize?: Size;
  negativeCropsCoordsTopLeft?: Size;
  negativeTargetSize?: Size;
  clipSkip?: number;
  /**
   * diffusers' `cross_attention_kwargs`; only `scale` is read: the LoRA scale of this run, applied to the
   * UNet's and the text encoder(s)' LoRA layers alike, as the plain SD/SDXL pipelines do (default 1).
   */
  crossAttentionKwargs?: { scale?: number };
  /**
   * Beyond diffusers: an LCM-distilled UNet (`time_cond_proj_dim`, e.g. LCM-SDXL) gets `guidanceScale`
   * as its guidance embedding instead of classifier-free guidance. As in the SD pipeline's
   * `embedGuidanceScale`, which says where it reaches the output.
   */
  embedGuidanceScale?: boolean;
  /** After every step (diffusers' callback_on_step_end); may replace `latents` and `promptEmbeds`. */
  callbackOnStepEnd?: StepCallback<StableDiffusionXLControlNetXSPipeline, SDXLCallbackTensorName>;
  /** Which tensors besides `latents` the callback receives (diffusers' callback_on_step_end_tensor_inputs). */
  callbackOnStepEndTensorInputs?: readonly SDXLCallbackTensorName[];
  signal?: AbortSignal;
  onProgress?: (p: { step: number; total: number; timestep: number }) => void;
}

export interface SDXLPromptEmbeddings {
  promptEmbeds: Tensor<'float32'>;
  negativePromptEmbeds: Tensor<'float32'> | null;
  pooledPromptEmbeds: Tensor<'float32'>;
  negativePooledPromptEmbeds: Tensor<'float32'> | null;
}

export class StableDiffusionXLControlNetXSPipeline extends ControlNetXSPipelineBase {
  /** The tensors `callbackOnStepEndTensorInputs` may name (diffusers' `_callback_tensor_inputs`). */
  static readonly callbackTensorInputs: readonly SDXLCallbackTensorName[] = SDXL_CALLBACK_TENSOR_INPUTS;
  vae: PipelineVae;
  textEncoder: CLIPTextModel;
  textEncoder2: CLIPTextModelWithProjection;
  tokenizer: CLIPTokenizer;
  tokenizer2: CLIPTokenizer;
  unet: UNetControlNetXSModel;
  controlnet: ControlNetXSAdapter | null;
  scheduler: Scheduler;
  readonly forceZerosForEmptyPrompt: boolean;
  readonly vaeScaleFactor: number;
  readonly imageProcessor: VaeImageProcessor;
  readonly controlImageProcessor: VaeImageProcessor;
  private readonly warn: (message: string) => void;

  constructor(components: StableDiffusionXLControlNetXSComponents, options: { warn?: (message: string) => void } = {}) {
    super();
    this.warn = options.warn ?? console.warn;
    const { unet, controlnet } = components;
    this.unet = fusedUnet(unet, controlnet, 'sdxl');
    this.vae = components.vae;
    this.textEncoder = components.textEncoder;
    this.textEncoder2 = components.textEncoder2;
    this.tokenizer = components.tokenizer;
    this.tokenizer2 = components.tokenizer2;
    this.controlnet = controlnet;
    this.scheduler = components.scheduler;
    this.forceZerosForEmptyPrompt = components.forceZerosForEmptyPrompt ?? true;
    this.vaeScaleFactor = 2 ** (this.vae.config.blockOutChannels.length - 1);
    this.imageProcessor = new VaeImageProcessor({ vaeScaleFactor: this.vaeScaleFactor, doConvertRgb: true });
    this.controlImageProcessor = new VaeImageProcessor({ vaeScaleFactor: this.vaeScaleFactor, doConvertRgb: true, doNormalize: false });
  }

  static async fromPretrained(
    idOrDir: string,
    options: PipelineLoadOptions & { controlnet?: ControlNetXSAdapter; vae?: PipelineVae } = {},
  ): Promise<StableDiffusionXLControlNetXSPipeline> {
    const warn = options.warn ?? console.warn;
    const dir = await resolvePipelineDir(idOrDir, options);
    const index = await loadModelIndex(dir);
    const opts = { ...modelOptions(options), warn };
    const [vae, textEncoder, textEncoder2, tokenizer, tokenizer2, unet, controlnet] = await Promise.all([
      options.vae ?? loadVae(dir, opts),
      loadTextEncoder(dir, 'text_encoder', opts),
      loadTextEncoderWithProjection(dir, 'text_encoder_2', opts),
      loadTokenizer(dir, 'tokenizer'),
      loadTokenizer(dir, 'tokenizer_2'),
      loadUnet(dir, index, opts),
      options.controlnet ?? (componentClass(index, 'controlnet') !== null ? loadAdapter(dir, opts) : Promise.resolve(null)),
    ]);
    const forceZerosForEmptyPrompt = index['force_zeros_for_empty_prompt'] !== false;
    return new StableDiffusionXLControlNetXSPipeline(
      { vae, textEncoder, textEncoder2, tokenizer, tokenizer2, unet, controlnet, scheduler: await loadScheduler(dir), forceZerosForEmptyPrompt },
      { warn },
    );
  }

  /**
   * Load an original SDXL base single file (`.safetensors`, `.ckpt`): UNet, VAE and both text encoders
   * from the file (each from its own keys), configs from `config` or the bundled SDXL base defaults;
   * the adapter from `controlnet` (single files never hold one).
   */
  static async fromSingleFile(path: string, options: SingleFileXLPipelineOptions = {}): Promise<StableDiffusionXLControlNetXSPipeline> {
    const p = await loadSingleFileParts(path, 'sdxl', options);
    const { vae, textEncoder, tokenizer, unet, controlnet, scheduler, forceZerosForEmptyPrompt } = p;
    if (!p.textEncoder2 || !p.tokenizer2) throw new Error('loadSingleFileParts returned an SDXL pipeline without its second text encoder');
    return new StableDiffusionXLControlNetXSPipeline(
      { vae, textEncoder, textEncoder2: p.textEncoder2, tokenizer, tokenizer2: p.tokenizer2, unet, controlnet, scheduler, forceZerosForEmptyPrompt },
      options.warn ? { warn: options.warn } : {},
    );
  }

  protected get loraModels(): LoraModels {
    return { unet: this.unet, textEncoders: [{ name: 'text_encoder', model: this.textEncoder }, { name: 'text_encoder_2', model: this.textEncoder2 }] };
  }

  protected get textEncoderPairs(): readonly TextEncoderPair[] {
    return [
      { name: 'text_encoder', tokenizer: this.tokenizer, textEncoder: this.textEncoder },
      { name: 'text_encoder_2', tokenizer: this.tokenizer2, textEncoder: this.textEncoder2 },
    ];
  }

  get components(): StableDiffusionXLControlNetXSComponents {
    const { vae, textEncoder, textEncoder2, tokenizer, tokenizer2, unet, controlnet, scheduler, forceZerosForEmptyPrompt } = this;
    return { vae, textEncoder, textEncoder2, tokenizer, tokenizer2, unet, controlnet, scheduler, forceZerosForEmptyPrompt, featureExtractor: null };
  }

  /**
   * Generate: diffusers' `__call__`. The output's type follows `outputType`: `images` is an
   * `RGBImage[]` for 'pil' (the default), a float32 `Tensor` for 'np' and 'latent'.
   */
  async run<T extends PipelineOutputType | undefined = undefined>(args: StableDiffusionXLControlNetXSCallArgs & { outputType?: T }): Promise<PipelineOutput<T>> {
    return finish(this.steps(args));
  }

  /** The same generation as an async iterator of steps (for previews); its return value is the output. */
  steps<T extends PipelineOutputType | undefined = undefined>(
    args: StableDiffusionXLControlNetXSCallArgs & { outputType?: T },
  ): AsyncGenerator<PipelineStep, PipelineOutput<T>, void> {
    // generate() returns what decodeOutput made for args.outputType, so `images` has the type T names;
    // TypeScript cannot follow that through the runtime branch, hence the one assertion.
    return this.offload.track(this.generate(args)) as AsyncGenerator<PipelineStep, PipelineOutput<T>, void>;
  }

  private async *generate(args: StableDiffusionXLControlNetXSCallArgs): AsyncGenerator<PipelineStep, PipelineOutput, void> {
    // 1. Check inputs (diffusers' defaults filled in)
    const image = await resolveControlImage(args.image);
    const call = resolveCall(args, image, { guidanceScale: 5.0, sizeRules: this.sizeRules, controlImageProcessor: this.controlImageProcessor });
    checkCallbackTensorInputs(args.callbackOnStepEndTensorInputs, StableDiffusionXLControlNetXSPipeline.callbackTensorInputs);
    this.checkXLInputs(args);
    this.applyLoraScale(args.crossAttentionKwargs?.scale); // before the text encoders run
    const { numInferenceSteps, guidanceScale, numImagesPerPrompt, conditioningScale, start, end, outputType } = call;

    // 2. Define call parameters (and, opted in, the guidance embedding that replaces CFG)
    const { batchSize, doClassifierFreeGuidance: doCfg } = call;
    const timestepCond = call.embedGuidanceScale ? guidanceTimestepCond(this.unet, guidanceScale, batchSize * numImagesPerPrompt) : null;

    // 3. Encode input prompt
    const emb = await this.encodePrompt(args, { numImagesPerPrompt, doClassifierFreeGuidance: doCfg });
    await this.offload.afterUse(this.textEncoder, this.textEncoder2);

    // 4. Prepare image
    const controlImage = this.prepareImage(image, {
      ...(args.height !== undefined ? { height: args.height } : {}),
      ...(args.width !== undefined ? { width: args.width } : {}),
      batchSize: batchSize * numImagesPerPrompt,
      numImagesPerPrompt,
      doClassifierFreeGuidance: doCfg,
    });
    const [height, width] = controlImage.dims.slice(-2) as [number, number];

    // 5. Prepare timesteps
    const run = this.scheduler.createRun(numInferenceSteps);

    // 6. Prepare latent variables
    const generator = args.generator ?? defaultGenerator();
    const rows = batchSize * numImagesPerPrompt;
    const latentShape = [rows, 4, Math.floor(height / this.vaeScaleFactor), Math.floor(width / this.vaeScaleFactor)];
    const latents0 = prepareLatents(latentShape, generator, args.latents, run.initNoiseSigma);

    // 7. Prepare added time ids & embeddings (micro-conditioning)
    const originalSize = args.originalSize ?? ([height, width] as const);
    const targetSize = args.targetSize ?? ([height, width] as const);
    const addTimeIds = this.getAddTimeIds(originalSize, args.cropsCoordsTopLeft ?? [0, 0], targetSize, emb.pooledPromptEmbeds.dims[1]!);
    const negativeAddTimeIds =
      args.negativeOriginalSize && args.negativeTargetSize
        ? this.getAddTimeIds(args.negativeOriginalSize, args.negativeCropsCoordsTopLeft ?? [0, 0], args.negativeTargetSize, emb.pooledPromptEmbeds.dims[1]!)
        : addTimeIds;
    const encoderHiddenStates = doCfg ? catBatch([emb.negativePromptEmbeds!, emb.promptEmbeds]) : emb.promptEmbeds;
    const textEmbeds = doCfg ? catBatch([emb.negativePooledPromptEmbeds!, emb.pooledPromptEmbeds]) : emb.pooledPromptEmbeds;
    // `cat([neg, pos]).repeat(B·N, 1)`: rows alternate neg, pos, … against embeddings [neg × B·N, pos × B·N]
    // (a diffusers quirk, kept for parity when B·N > 1 and the negative ids differ).
    const idsOnce = doCfg ? catBatch([negativeAddTimeIds, addTimeIds]) : addTimeIds;
    const timeIds = catBatch(Array(rows).fill(idsOnce));

    // 8. Denoising loop
    const latents = yield* denoise({
      pipe: this,
      unet: this.unet,
      run,
      latents: latents0,
      encoderHiddenStates,
      negativePromptEmbeds: emb.negativePromptEmbeds,
      controlImage,
      addedCondKwargs: { textEmbeds, timeIds },
      callbackExtras: {
        addTextEmbeds: textEmbeds,
        addTimeIds: timeIds,
        negativePooledPromptEmbeds: emb.negativePooledPromptEmbeds,
        negativeAddTimeIds,
      },
      doClassifierFreeGuidance: doCfg,
      ...(timestepCond ? { timestepCond } : {}),
      guidanceScale,
      conditioningScale,
      controlGuidanceStart: start,
      controlGuidanceEnd: end,
      generator,
      ...loopHooks(args),
    });

    // 9. Decode (a float16 VAE with force_upcast as after upcast_vae(): needs_upcasting) and post-process
    return decodeOutput(this, latents, outputType, { upcastVae: true });
  }

  /**
   * diffusers' SDXL encode_prompt: per encoder the penultimate hidden state (or
   * `hidden_states[-(clipSkip + 2)]`), concatenated on the feature axis; pooled = text_encoder_2's
   * projection. Rows repeated per image; negatives zeros when `forceZerosForEmptyPrompt`.
   */
  async encodePrompt(
    args: Pick<
      StableDiffusionXLControlNetXSCallArgs,
      'prompt' | 'prompt2' | 'negativePrompt' | 'negativePrompt2' | 'promptEmbeds' | 'negativePromptEmbeds' | 'pooledPromptEmbeds' | 'negativePooledPromptEmbeds' | 'clipSkip'
    >,
    o: { numImagesPerPrompt: number; doClassifierFreeGuidance: boolean },
  ): Promise<SDXLPromptEmbeddings> {
    const prompt = args.prompt === undefined ? undefined : typeof args.prompt === 'string' ? [args.prompt] : args.prompt;
    const batchSize = prompt ? prompt.length : args.promptEmbeds!.dims[0]!;
    const encoders = [
      { tokenizer: this.tokenizer, encoder: this.textEncoder },
      { tokenizer: this.tokenizer2, encoder: this.textEncoder2 },
    ] as const;

    let promptEmbeds: Tensor<'float32'>;
    let pooled: Tensor<'float32'>;
    if (args.promptEmbeds) {
      promptEmbeds = expectFloat32('promptEmbeds', args.promptEmbeds, [null, null, null]);
      pooled = expectFloat32('pooledPromptEmbeds', args.pooledPromptEmbeds!, [promptEmbeds.dims[0]!, null]);
    } else {
      const prompt2 = args.prompt2 === undefined ? prompt! : typeof args.prompt2 === 'string' ? [args.prompt2] : args.prompt2;
      const parts: Tensor<'float32'>[] = [];
      let pooledOut: Tensor<'float32'> | null = null;
      for (const [k, { tokenizer, encoder }] of encoders.entries()) {
        const ids = tokenizeTruncating(tokenizer, this.maybeConvertPrompt(k === 0 ? prompt! : prompt2, tokenizer), { warn: this.warn });
        const out = await encoder.forward(ids, { outputHiddenStates: true });
        if ('textEmbeds' in out) pooledOut = out.textEmbeds;
        parts.push(pickFromEnd(out.hiddenStates!, (args.clipSkip ?? 0) + 2, 'clipSkip'));
      }
      promptEmbeds = concatLastAxis(parts);
      pooled = pooledOut!;
    }

    let negative: Tensor<'float32'> | null = null;
    let negativePooled: Tensor<'float32'> | null = null;
    const zeroOut = args.negativePrompt === undefined && this.forceZerosForEmptyPrompt;
    if (o.doClassifierFreeGuidance && args.negativePromptEmbeds === undefined && zeroOut) {
      negative = Tensor.zeros(promptEmbeds.dims);
      negativePooled = Tensor.zeros(pooled.dims);
    } else if (o.doClassifierFreeGuidance && args.negativePromptEmbeds === undefined) {
      const neg1 = args.negativePrompt ?? '';
      const neg2 = args.negativePrompt2 ?? neg1;
      const list = (n: string | string[]) => (typeof n === 'string' ? Array<string>(batchSize).fill(n) : n);
      const uncond = [list(neg1), list(neg2)];
      if (uncond[0]!.length !== batchSize) {
        throw new InputError(
          `\`negativePrompt\` has batch size ${uncond[0]!.length}, but \`prompt\` has batch size ${batchSize}. Please make sure that passed \`negativePrompt\` matches the batch size of \`prompt\`.`,
        );
      }
      const parts: Tensor<'float32'>[] = [];
      for (const [k, { tokenizer, encoder }] of encoders.entries()) {
        const ids = tokenizeTruncating(tokenizer, this.maybeConvertPrompt(uncond[k]!, tokenizer), { maxLength: promptEmbeds.dims[1]! });
        const out = await encoder.forward(ids, { outputHiddenStates: true });
        if ('textEmbeds' in out) negativePooled = out.textEmbeds;
        parts.push(pickFromEnd(out.hiddenStates!, 2, 'clipSkip'));
      }
      negative = concatLastAxis(parts);
    } else if (o.doClassifierFreeGuidance) {
      negative = expectFloat32('negativePromptEmbeds', args.negativePromptEmbeds!, [...promptEmbeds.dims]);
      if (!args.negativePooledPromptEmbeds) {
        throw new InputError('If `negativePromptEmbeds` are provided, `negativePooledPromptEmbeds` also have to be passed.');
      }
      negativePooled = expectFloat32('negativePooledPromptEmbeds', args.negativePooledPromptEmbeds, [...pooled.dims]);
    }

    const n = o.numImagesPerPrompt;
    return {
      promptEmbeds: repeatInterleave(promptEmbeds, n),
      negativePromptEmbeds: negative && repeatInterleave(negative, n),
      pooledPromptEmbeds: repeatInterleave(pooled, n),
      negativePooledPromptEmbeds: negativePooled && repeatInterleave(negativePooled, n),
    };
  }

  /** [1, 6]: original (h, w) + crop top-left (y, x) + target (h, w), checked against the UNet's add_embedding width. */
  getAddTimeIds(originalSize: Size, crops: Size, targetSize: Size, projectionDim: number): Tensor<'float32'> {
    const ids = [...originalSize, ...crops, ...targetSize];
    const c = this.unet.config;
    const passed = c.additionTimeEmbedDim! * ids.length + projectionDim;
    const expected = c.projectionClassEmbeddingsInputDim!;
    if (passed !== expected) {
      throw new InputError(
        `Model expects an added time embedding vector of length ${expected}, but a vector of ${passed} was created. The model has an incorrect config. Please check \`unet.config.time_embedding_type\` and \`text_encoder_2.config.projection_dim\`.`,
      );
    }
    return new Tensor('float32', Float32Array.from(ids), [1, ids.length]);
  }

  /** The SDXL-only argument checks of diffusers' check_inputs. */
  private checkXLInputs(args: StableDiffusionXLControlNetXSCallArgs): void {
    if (args.prompt2 !== undefined && args.promptEmbeds !== undefined) {
      throw new InputError('Cannot forward both `prompt2` and `promptEmbeds`. Please make sure to only forward one of the two.');
    }
    if (args.negativePrompt2 !== undefined && args.negativePromptEmbeds !== undefined) {
      throw new InputError('Cannot forward both `negativePrompt2` and `negativePromptEmbeds`. Please make sure to only forward one of the two.');
    }
    if (args.promptEmbeds !== undefined && args.pooledPromptEmbeds === undefined) {
      throw new InputError('If `promptEmbeds` are provided, `pooledPromptEmbeds` also have to be passed. Make sure to generate `pooledPromptEmbeds` from the same text encoder that was used to generate `promptEmbeds`.');
    }
    if (args.negativePromptEmbeds !== undefined && args.negativePooledPromptEmbeds === undefined) {
      throw new InputError('If `negativePromptEmbeds` are provided, `negativePooledPromptEmbeds` also have to be passed. Make sure to generate `negativePooledPromptEmbeds` from the same text encoder that was used to generate `negativePromptEmbeds`.');
    }
  }
}

/** torch.concat(parts, dim=-1) for [B, L, Dk] tensors. */
function concatLastAxis(parts: readonly Tensor<'float32'>[]): Tensor<'float32'> {
  const [b, l] = parts[0]!.dims as [number, number, number];
  const widths = parts.map((p) => p.dims[2]!);
  const total = widths.reduce((x, y) => x + y, 0);
  const out = new Float32Array(b * l * total);
  for (let r = 0; r < b * l; r++) {
    let at = r * total;
    parts.forEach((p, k) => {
      out.set(p.data.subarray(r * widths[k]!, (r + 1) * widths[k]!), at);
      at += widths[k]!;
    });
  }
  return new Tensor('float32', out, [b, l, total]);
}
