/**
 * An 8-bit single-channel image: the JS stand-in for a PIL `Image` in mode "L" (what transformers'
 * depth-estimation pipeline returns as `depth`). Pixels row-major, `data[y * width + x]`.
 */
import { checkPixels, encodePixels, saveImageFile, type ImageFormat } from './pixels.js';
import { RGBImage } from './rgb-image.js';

export class GrayImage {
  readonly width: number;
  readonly height: number;
  /** width * height bytes. */
  readonly data: Uint8Array;

  /** Wrap existing pixels (not copied). Throws `InputError` for a non-positive size or a buffer of the wrong length. */
  constructor(width: number, height: number, data: Uint8Array) {
    checkPixels({ width, height, channels: 1 }, data, 'gray image');
    this.width = width;
    this.height = height;
    this.data = data;
  }

  /**
   * The gray value in R, G and B: numpy's `np.concatenate([d[:, :, None]] * 3, axis=2)`, the control
   * image diffusers' ControlNet docs make from a depth map (and PIL's `convert("RGB")` of mode L).
   */
  toRGB(): RGBImage {
    const n = this.width * this.height;
    const out = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      const v = this.data[i]!;
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
    return new RGBImage(this.width, this.height, out);
  }

  /** Encode as a one-channel PNG (PIL's mode L; lossless). */
  async toPNG(): Promise<Uint8Array> {
    return this.encode('png');
  }

  /** Encode in the given format (PNG and JPEG stay one channel; JPEG and WebP at quality 95). */
  async encode(format: ImageFormat): Promise<Uint8Array> {
    return encodePixels({ width: this.width, height: this.height, channels: 1 }, this.data, format);
  }

  /**
   * Write the image to `path`, format from the extension (.png, .jpg/.jpeg, .webp); atomically (see
   * `saveImageFile`): a reader never sees a half-written file, and nothing is left behind if anything fails.
   */
  async save(path: string): Promise<void> {
    await saveImageFile(path, (format) => this.encode(format));
  }
}
