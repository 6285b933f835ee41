/**
 * Live previews of a generation: the latents `pipe.steps()` yields (or a `callbackOnStepEnd` sees)
 * decoded to images while the loop runs. TAESD (`AutoencoderTiny`) is the decoder meant for this —
 * it decodes the diffusion latents directly (scaling_factor 1.0) — but any pipeline VAE works.
 */
import { VaeImageProcessor } from '../image/processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import type { Tensor, TensorLike } from '../tensor.js';
import { divide } from './batch.js';
import type { PipelineVae } from './components.js';

export interface PreviewOptions<T extends 'pil' | 'np' = 'pil' | 'np'> {
  /** Decodes the preview: an AutoencoderTiny (fast) or the pipeline's own VAE. */
  decoder: PipelineVae;
  /** 'pil' (default): RGBImage[]; 'np': float32 [B, H, W, 3] in [0, 1]. */
  outputType?: T;
}

/**
 * latents [B, C, h, w] (the diffusion latents of a step) → preview images: `decoder.decode(latents /
 * scaling_factor)`, then `(x / 2 + 0.5).clamp(0, 1)` as a pipeline's output. With TAESD the
 * intermediate latents of a few-step loop look noisy, as they do in diffusers.
 */
export async function previewImages(latents: TensorLike, options: PreviewOptions<'pil'>): Promise<RGBImage[]>;
export async function previewImages(latents: TensorLike, options: PreviewOptions<'np'>): Promise<Tensor<'float32'>>;
export async function previewImages(latents: TensorLike, options: PreviewOptions): Promise<RGBImage[] | Tensor<'float32'>>;
export async function previewImages(latents: TensorLike, options: PreviewOptions): Promise<RGBImage[] | Tensor<'float32'>> {
  const { decoder } = options;
  const { sample } = await decoder.decode(divide(latents, decoder.config.scalingFactor)); // [B, 3, H, W] in about [−1, 1]
  // The scale factor only matters for preprocessing; postprocess is the same for every VAE.
  const processor = new VaeImageProcessor({ vaeScaleFactor: 2 ** (decoder.config.blockOutChannels.length - 1), doConvertRgb: true });
  return options.outputType === 'np' ? processor.postprocess(sample, 'np') : processor.postprocess(sample, 'pil');
}
