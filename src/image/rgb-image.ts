/**
 * An 8-bit RGB image held in memory: the JS stand-in for a PIL `Image` in mode "RGB".
 * Pixels are interleaved row-major, `data[(y * width + x) * 3 + c]`, channel order R, G, B.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import sharp from 'sharp';
import { InputError } from '../errors.js';
import { addPngText } from './png-text.js';

/** Output formats `RGBImage.save` can write, picked from the file extension. */
export type ImageFormat = 'png' | 'jpeg' | 'webp';

const FORMAT_BY_EXTENSION: Readonly<Record<string, ImageFormat>> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

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
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new InputError(`image size must be positive integers, got ${width}x${height}`);
    }
    if (data.length !== width * height * 3) {
      throw new InputError(`RGB image ${width}x${height} needs ${width * height * 3} bytes, got ${data.length}`);
    }
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
    const pipeline = sharp(this.data, { raw: { width: this.width, height: this.height, channels: 3 } });
    const out =
      format === 'png'
        ? pipeline.png()
        : format === 'jpeg'
          ? pipeline.jpeg({ quality: 95 })
          : pipeline.webp({ quality: 95 });
    const buf = await out.toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  }

  /**
   * Write the image to `path`, format from the extension (.png, .jpg/.jpeg, .webp). The bytes go to a
   * temporary file in the same folder first, which is then renamed over `path`, so a reader never sees
   * a half-written file; the temporary file is removed if anything fails.
   */
  async save(path: string, options: { pngText?: Readonly<Record<string, string>> } = {}): Promise<void> {
    const ext = extname(path).toLowerCase();
    const format = FORMAT_BY_EXTENSION[ext];
    if (format === undefined) {
      throw new InputError(`${path}: cannot tell the image format from extension "${ext}" (use .png, .jpg, .jpeg or .webp)`);
    }
    let bytes = await this.encode(format);
    if (options.pngText && format === 'png') bytes = addPngText(bytes, options.pngText);
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw new InputError(`${path}: cannot write image (${(e as Error).message})`, { cause: e });
    }
  }
}
