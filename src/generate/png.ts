/** Generated images as PNG with their A1111 `parameters` text chunk: as bytes (the server) or as a file (the CLI). */
import { addPngText } from '../image/png-text.js';
import type { RGBImage } from '../image/rgb-image.js';

/** The PNG bytes `writePng` writes. */
export async function encodePng(image: RGBImage, parameters: string): Promise<Uint8Array> {
  return addPngText(await image.toPNG(), { parameters });
}

/** Write atomically (a temporary file renamed over `path`), the same bytes as `encodePng`. */
export async function writePng(path: string, image: RGBImage, parameters: string): Promise<void> {
  await image.save(path, { pngText: { parameters } });
}
