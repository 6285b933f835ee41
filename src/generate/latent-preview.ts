/**
 * A cheap live preview without any decoder: each latent pixel's 4 channels mapped to RGB by one fixed
 * linear map per latent space. The factors are the least-squares fits of VAE-decoded colours on
 * latents that ComfyUI ships for previews (comfy/latent_formats.py: the SD15 class, whose VAE SD 2.x
 * shares, and the SDXL class with its bias); they act on the diffusion latents as the pipelines hold
 * them (already times the VAE's scaling factor). The result is 1/8 of the image's size and its colours
 * are approximate; TAESD (`previewVae`) gives a real picture.
 */
import { InputError } from '../errors.js';
import { RGBImage } from '../image/rgb-image.js';

export type LatentFamily = 'sd' | 'sdxl';

interface LatentRgbMap {
  /** [latent channel][R, G, B] */
  factors: readonly (readonly [number, number, number])[];
  bias: readonly [number, number, number];
}

export const LATENT_RGB: Readonly<Record<LatentFamily, LatentRgbMap>> = Object.freeze({
  sd: {
    factors: [
      [0.3512, 0.2297, 0.3227],
      [0.325, 0.4974, 0.235],
      [-0.2829, 0.1762, 0.2721],
      [-0.212, -0.2616, -0.7177],
    ],
    bias: [0, 0, 0],
  },
  sdxl: {
    factors: [
      [0.3651, 0.4232, 0.4341],
      [-0.2533, -0.0042, 0.1068],
      [0.1076, 0.1111, -0.0362],
      [-0.3165, -0.2492, -0.2188],
    ],
    bias: [0.1084, -0.0175, -0.0011],
  },
});

/**
 * Latents [B, 4, h, w] (NCHW, float32) → image 0 as an h×w RGB image: per pixel rgb = latent · factors
 * + bias, in about [−1, 1], then (v + 1) / 2 clamped to [0, 1] and rounded to a byte.
 */
export function latentToRgb(latents: { data: Float32Array; dims: readonly number[] }, family: LatentFamily): RGBImage {
  const [, c, h, w] = latents.dims;
  if (latents.dims.length !== 4 || c !== 4 || !h || !w) throw new InputError(`latents must be [B, 4, h, w], got [${latents.dims.join(', ')}]`);
  const { factors, bias } = LATENT_RGB[family];
  const plane = h * w;
  const out = new Uint8Array(plane * 3); // [h, w, 3]
  for (let p = 0; p < plane; p++) {
    for (let rgb = 0; rgb < 3; rgb++) {
      let v = bias[rgb]!;
      for (let k = 0; k < 4; k++) v += latents.data[k * plane + p]! * factors[k]![rgb]!;
      out[p * 3 + rgb] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
    }
  }
  return new RGBImage(w, h, out);
}
