/**
 * An 8-bit RGB image held in memory: the JS stand-in for a PIL `Image` in mode "RGB".
 * Pixels are interleaved row-major, `data[(y * width + x) * 3 + c]`, channel order R, G, B.
 */
import { addPngText } from './png-text.js';
import { checkPixels, encodePixels, saveImageFile, type ImageFormat } from './pixels.js';

export type { ImageFormat } from './pixels.js';

export class RGBImage {
  readonly width: number;
  readonly height: number;
  /** width * height * 3 bytes, RGB interleaved. */
  readonly data: Uint8Array;

  /**
   * Wrap existing pixels (not copied). Throws `InputError` for a non-positive or non-integer size
   * (0×0 included) or a buffer whose length is not width * height * 3.
   */
  constructor(width: number, height: number, data: Uint8Array) {
    checkPixels({ width, height, channels: 3 }, data, 'RGB image');
    this.width = width;
    this.height = height;
    this.data = data;
  }

  /** A black image of the given size. */
  static blank(width: number, height: number): RGBImage {
    return new RGBImage(width, height, new Uint8Array(Math.max(0, width * height * 3)));
  }

  /** A deep copy. */
  clone(): RGBImage {
    return new RGBImage(this.width, this.height, this.data.slice());
  }

  /** Encode as PNG (lossless). */
  async toPNG(): Promise<Uint8Array> {
    return this.encode('png');
  }

  /** Encode in the given format (JPEG and WebP at quality 95). */
  async encode(format: ImageFormat): Promise<Uint8Array> {
    return encodePixels({ width: this.width, height: this.height, channels: 3 }, this.data, format);
  }

  /**
   * Write the image to `path`, format from the extension (.png, .jpg/.jpeg, .webp), with `pngText`
   * chunks in a PNG; atomically (see `saveImageFile`): a reader never sees a half-written file.
   */
  async save(path: string, options: { pngText?: Readonly<Record<string, string>> } = {}): Promise<void> {
    await saveImageFile(path, async (format) => {
      const bytes = await this.encode(format);
      return options.pngText && format === 'png' ? addPngText(bytes, options.pngText) : bytes;
    });
  }
}
