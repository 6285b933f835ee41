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

/** What step 9 needs of a pipeline. */
export interface DecodeStage {
  unet: UNetControlNetXSModel;
  vae: PipelineVae;
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

/** Drain a steps() iterator and return its output. */
export async function finish<T>(it: AsyncGenerator<PipelineStep, T, void>): Promise<T> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
