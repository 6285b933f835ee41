/** The control image of a generation: decoded from a file or encoded bytes, optionally through Canny first. */
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';
import type { RGBImage } from '../image/rgb-image.js';

export interface CannyThresholds {
  low: number;
  high: number;
}

/** `cnxs generate --canny`'s thresholds (OpenCV's usual pair, the ones the published adapters were trained with). */
export const DEFAULT_CANNY: Readonly<CannyThresholds> = Object.freeze({ low: 100, high: 200 });

/** Decode (PNG, JPEG, WebP, …) as PIL's `convert("RGB")`, then OpenCV-exact Canny when thresholds are given. */
export async function loadControlImage(source: string | Uint8Array, options: { canny?: CannyThresholds | undefined } = {}): Promise<RGBImage> {
  const image = await loadImage(source);
  return options.canny ? canny(image, options.canny) : image;
}
