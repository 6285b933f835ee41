/**
 * The image sizes a ControlNet-XS pipeline can generate, in pixels.
 *
 * Latents are the image divided by the VAE's scale factor, and the fused UNet halves them at each
 * sampled level, so a size must be a multiple of `vaeScaleFactor · 2^(levels−1)` (32 for SD and SDXL).
 * diffusers finds out only deep inside the UNet; the pipelines check at the start of a call, and the
 * CLI uses `fitToAspect` to pick a valid size from a control image by itself.
 */
import { InputError } from '../errors.js';

export interface SizeRules {
  /** Height and width must be multiples of this many pixels. */
  multiple: number;
  /** The VAE's scale factor (latent pixel → image pixels), for the message. */
  vaeScaleFactor: number;
  /** The resolution the model was trained at: `unet.config.sample_size × vaeScaleFactor` (512 for SD 2.1-base). */
  defaultSize: number;
}

export interface ImageSize {
  width: number;
  height: number;
}

/** The nearest multiple of `m` to `v`, at least `m`. */
export function roundToMultiple(v: number, m: number): number {
  return Math.max(m, Math.round(v / m) * m);
}

/** `size` rounded to the pipeline's multiple (the identity for a valid size). */
export function roundSize(size: ImageSize, rules: SizeRules): ImageSize {
  return { width: roundToMultiple(size.width, rules.multiple), height: roundToMultiple(size.height, rules.multiple) };
}

/**
 * The model's default resolution fitted to an aspect ratio: about `defaultSize²` pixels (the area the
 * model was trained on, as SDXL's aspect buckets keep it), each side rounded to the multiple.
 */
export function fitToAspect(aspect: ImageSize, rules: SizeRules): ImageSize {
  if (!(aspect.width > 0 && aspect.height > 0)) throw new InputError(`cannot fit a size to a ${aspect.width}×${aspect.height} image`);
  const area = rules.defaultSize * rules.defaultSize;
  const width = Math.sqrt((area * aspect.width) / aspect.height);
  return roundSize({ width, height: area / width }, rules);
}

/** Throws an InputError in pixels, naming the multiple and a valid size nearby, unless `size` is valid. */
export function checkImageSize(size: ImageSize, rules: SizeRules, origin: string): void {
  const { width, height } = size;
  if (width % rules.multiple === 0 && height % rules.multiple === 0) return;
  const near = roundSize(size, rules);
  const levels = Math.log2(rules.multiple / rules.vaeScaleFactor);
  throw new InputError(
    `${width}×${height} px (${origin}) cannot be generated: width and height must be multiples of ${rules.multiple} px ` +
      `(the VAE's scale factor ${rules.vaeScaleFactor} × 2^${levels} for the UNet's levels); pass width and height, e.g. ${near.width}×${near.height}`,
  );
}
