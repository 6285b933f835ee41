/** Step 9 of both pipelines: decode the final latents into the output type asked for. */
import type { VaeImageProcessor } from '../image/processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import type { VaeRunOptions } from '../models/autoencoder-kl.js';
import type { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import type { Tensor } from '../tensor.js';
import { divide } from './batch.js';
import type { PipelineVae } from './components.js';
import type { PipelineStep } from './denoise.js';
import type { ModelOffload } from './offload.js';
import type { SafetyCheckResult } from './safety-checker.js';

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
  /**
   * Per image whether the safety checker flagged it (its image is then black); null without a
   * checker (SDXL, `safetyChecker: null`, a folder without one) and for 'latent'.
   */
  nsfwContentDetected: boolean[] | null;
}

/** What step 9 needs of a pipeline. */
export interface DecodeStage {
  unet: UNetControlNetXSModel;
  vae: PipelineVae;
  imageProcessor: VaeImageProcessor;
  vaeDecode: VaeRunOptions;
  offload: ModelOffload;
  /** The SD pipeline's safety checker (diffusers' run_safety_checker); absent: images pass unchecked. */
  runSafetyChecker?(images: Tensor<'float32'>): Promise<SafetyCheckResult>;
}

/**
 * Step 9: `vae.decode(latents / scaling_factor)`, the safety checker where the pipeline has one, and
 * postprocess (or the latents themselves, unchecked), closing the UNet's, the VAE's and the checker's
 * session after their stage when model offload is on. Flagged images are zeros that are not
 * denormalised, so they come out black, as in diffusers.
 */
export async function decodeOutput(
  p: DecodeStage,
  latents: Tensor<'float32'>,
  outputType: 'pil' | 'np' | 'latent',
  o: { upcastVae?: boolean } = {},
): Promise<PipelineOutput> {
  await p.offload.afterUse(p.unet);
  if (outputType === 'latent') return { images: latents, nsfwContentDetected: null };
  // SDXL's `needs_upcasting`: a float16 AutoencoderKL with force_upcast decodes as after diffusers' upcast_vae()
  const vae = o.upcastVae && 'forDecodeUpcast' in p.vae ? p.vae.forDecodeUpcast() : p.vae;
  const { sample } = await vae.decode(divide(latents, p.vae.config.scalingFactor), p.vaeDecode);
  await p.offload.afterUse(p.vae);
  const { images: checked, nsfwContentDetected } = p.runSafetyChecker ? await p.runSafetyChecker(sample) : { images: sample, nsfwContentDetected: null };
  const opts = nsfwContentDetected === null ? {} : { doDenormalize: nsfwContentDetected.map((flagged) => !flagged) };
  const images = outputType === 'pil' ? p.imageProcessor.postprocess(checked, 'pil', opts) : p.imageProcessor.postprocess(checked, 'np', opts);
  return { images, nsfwContentDetected };
}

/** Drain a steps() iterator and return its output. */
export async function finish<T>(it: AsyncGenerator<PipelineStep, T, void>): Promise<T> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
