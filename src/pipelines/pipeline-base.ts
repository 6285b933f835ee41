/** What both ControlNet-XS pipelines share beyond the loop: diffusers' memory switches and image sizes. */
import type { VaeImageProcessor } from '../image/processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import type { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import type { FreeUSettings } from '../models/unet-switches.js';
import type { Tensor, TensorLike } from '../tensor.js';
import type { SizeRules } from './image-size.js';
import { PipelineLora, type FuseLoraOptions, type LoadLoraWeightsOptions, type LoraModels } from './lora.js';
import type { LoraComponent } from '../models/lora-file.js';
import { ModelOffload } from './offload.js';
import { prepareControlImage, type PrepareImageOptions } from './prepare.js';
import {
  loadTextualInversion,
  maybeConvertPrompt,
  unloadTextualInversion,
  type LoadTextualInversionOptions,
  type LoadedTextualInversion,
  type TextEncoderPair,
  type TextualInversionSource,
  type UnloadTextualInversionOptions,
} from './textual-inversion.js';
import type { CLIPTokenizer } from '../tokenizer/index.js';

export abstract class ControlNetXSPipelineBase {
  abstract unet: UNetControlNetXSModel;
  abstract readonly vaeScaleFactor: number;
  abstract readonly controlImageProcessor: VaeImageProcessor;

  /**
   * The sizes this pipeline generates: multiples of `vaeScaleFactor · 2^(levels−1)` pixels, and the
   * model's own resolution `sample_size · vaeScaleFactor` (512 for SD 2.1-base, 1024 for SDXL).
   */
  get sizeRules(): SizeRules {
    const c = this.unet.config;
    const f = this.vaeScaleFactor;
    return { multiple: f * 2 ** (c.downBlockTypes.length - 1), vaeScaleFactor: f, defaultSize: (c.sampleSize ?? 64) * f };
  }

  /** How the VAE decodes (diffusers' enable_vae_slicing / enable_vae_tiling set these). */
  vaeDecode: { sliced: boolean; tiled: boolean } = { sliced: false, tiled: false };
  /** Close each model's session after its stage of a generation (see ModelOffload); off by default. */
  readonly offload = new ModelOffload();

  /** diffusers' `enable_vae_slicing`: decode a batch one image at a time (the same images, less memory). */
  enableVaeSlicing(): void {
    this.vaeDecode.sliced = true;
  }

  disableVaeSlicing(): void {
    this.vaeDecode.sliced = false;
  }

  /** diffusers' `enable_vae_tiling`: decode large images in blended tiles. */
  enableVaeTiling(): void {
    this.vaeDecode.tiled = true;
  }

  disableVaeTiling(): void {
    this.vaeDecode.tiled = false;
  }

  /**
   * diffusers' `enable_freeu(s1, s2, b1, b2)` on the fused ControlNet-XS model (`unet.enableFreeu`; diffusers'
   * SDXL pipeline has only `pipe.unet.enable_freeu`, which this equals), e.g. { s1: 0.9, s2: 0.2, b1: 1.2, b2: 1.4 }
   * for SD, { s1: 0.6, s2: 0.4, b1: 1.1, b2: 1.2 } for SDXL. Call it between generations: turning FreeU on or off
   * reopens the UNet's session (new factors while it is on do not).
   */
  enableFreeu(settings: FreeUSettings): void {
    this.unet.enableFreeu(settings);
  }

  /** diffusers' `disable_freeu`. */
  disableFreeu(): void {
    this.unet.disableFreeu();
  }

  /**
   * diffusers' `fuse_qkv_projections`, for the fused ControlNet-XS model (`unet.fuseQkvProjections`): each
   * attention's q/k/v (self) or k/v (cross) projections as one matmul. Unlike diffusers' pipeline method it
   * leaves the VAE's one mid-block attention as it is. Reopens the UNet's session.
   */
  fuseQkvProjections(): void {
    this.unet.fuseQkvProjections();
  }

  /** diffusers' `unfuse_qkv_projections`. */
  unfuseQkvProjections(): void {
    this.unet.unfuseQkvProjections();
  }

  /** diffusers' `enable_model_cpu_offload`, for sessions: `offload.enabled = true`. */
  enableModelCpuOffload(): void {
    this.offload.enabled = true;
  }

  /** The tokenizer / text encoder pairs, in diffusers' order (text_encoder first): textual inversion's targets. */
  protected abstract get textEncoderPairs(): readonly TextEncoderPair[];

  /**
   * diffusers' `load_textual_inversion`: learned token embeddings from a file (diffusers
   * `learned_embeds.safetensors`/`.bin`, A1111 `.pt` or `.safetensors`), a folder, a Hub repo or tensors,
   * into the tokenizer(s) and text encoder(s) — SDXL `{clip_l, clip_g}` files into both at once. Everything
   * is checked first (named TextualInversionErrors), so a failed load changes nothing. See textual-inversion.ts.
   */
  async loadTextualInversion(
    source: TextualInversionSource | readonly TextualInversionSource[],
    options: LoadTextualInversionOptions = {},
  ): Promise<LoadedTextualInversion[]> {
    return loadTextualInversion(this.textEncoderPairs, source, options);
  }

  /** diffusers' `unload_textual_inversion`: the given tokens (default all loaded ones) out of the tokenizer(s) and text encoder(s). */
  unloadTextualInversion(tokens?: string | readonly string[], options: UnloadTextualInversionOptions = {}): void {
    unloadTextualInversion(this.textEncoderPairs, tokens, options);
  }

  /** The models a LoRA reaches (the fused UNet and the text encoders), under diffusers' component names. */
  protected abstract get loraModels(): LoraModels;

  /** This pipeline's LoRA adapters (per instance: two pipelines sharing components still keep their own lists). */
  private readonly lora = new PipelineLora(() => this.loraModels);

  /**
   * diffusers' `load_lora_weights`: a LoRA `.safetensors` (diffusers/PEFT or kohya/A1111 keys, LoCon conv layers,
   * SDXL SGM names) from a file, a folder (`weightName`, default `pytorch_lora_weights.safetensors`) or a Hub
   * repo, onto the UNet (base half of the fused model) and the text encoder(s). It becomes an active adapter
   * with weight 1; returns its name (`adapterName`, default `default_<n>`). Everything is checked first
   * (named LoraErrors), so a failed load changes nothing. The models it touches re-trace once.
   */
  async loadLoraWeights(source: string, options: LoadLoraWeightsOptions = {}): Promise<string> {
    return this.lora.load(source, options);
  }

  /** diffusers' `set_adapters`: only these adapters run, each with its weight (one number for all; default 1). No re-trace. */
  setAdapters(names: string | readonly string[], weights?: number | readonly number[]): void {
    this.lora.setAdapters(names, weights);
  }

  /** diffusers' `get_active_adapters` (unchanged by disableLora, as there). */
  getActiveAdapters(): string[] {
    return this.lora.getActiveAdapters();
  }

  /** diffusers' `get_list_adapters`: component → its adapters. */
  getListAdapters(): Partial<Record<LoraComponent, string[]>> {
    return this.lora.getListAdapters();
  }

  /** diffusers' `disable_lora`: generate as without LoRA (the branches are fed 0; no re-trace). */
  disableLora(): void {
    this.lora.disable();
  }

  /** diffusers' `enable_lora`. */
  enableLora(): void {
    this.lora.enable();
  }

  /** diffusers' `delete_adapters`: the adapters out of every model (each re-traces once). */
  async deleteAdapters(names: string | readonly string[]): Promise<void> {
    this.lora.delete(names);
    return Promise.resolve();
  }

  /**
   * diffusers' `fuse_lora({ components, loraScale, adapterNames })`: merge the (active) adapters into the weights
   * — no LoRA cost per step; onnxruntime folds W + scale·up·down when the session reopens. `unloadLoraWeights()`
   * afterwards keeps the merged weights.
   */
  fuseLora(options: FuseLoraOptions = {}): void {
    this.lora.fuse(options);
  }

  /** diffusers' `unfuse_lora`: the original weights again (adapters still loaded run as branches). */
  unfuseLora(options: { components?: readonly LoraComponent[] } = {}): void {
    this.lora.unfuse(options);
  }

  /** diffusers' `unload_lora_weights`: every adapter out. */
  async unloadLoraWeights(): Promise<void> {
    this.lora.unload();
    return Promise.resolve();
  }

  /** Feed the LoRA branches for a run with `crossAttentionKwargs.scale` (default 1). */
  protected applyLoraScale(scale: number | undefined): void {
    this.lora.applyScale(scale ?? 1);
  }

  /** diffusers' `maybe_convert_prompt`: multi-vector tokens T spelt out as "T T_1 … T_{n−1}" (plain substring replace, as there). */
  maybeConvertPrompt<P extends string | readonly string[]>(prompt: P, tokenizer: CLIPTokenizer): P extends string ? string : string[] {
    return maybeConvertPrompt(prompt, tokenizer);
  }

  /** diffusers' `prepare_image` (step 4): control image → [B·N(·2), 3, H, W] in [0, 1], rows repeated for the batch and for CFG. */
  prepareImage(image: RGBImage[] | TensorLike, o: PrepareImageOptions): Tensor<'float32'> {
    return prepareControlImage(this.controlImageProcessor, image, o);
  }
}
