/**
 * An 8-bit single-channel image: the JS stand-in for a PIL `Image` in mode "L" (what transformers'
 * depth-estimation pipeline returns as `depth`). Pixels row-major, `data[y * width + x]`.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import sharp from 'sharp';
import { InputError } from '../errors.js';
import { RGBImage, type ImageFormat } from './rgb-image.js';

const FORMAT_BY_EXTENSION: Readonly<Record<string, ImageFormat>> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

export class GrayImage {
  readonly width: number;
  readonly height: number;
  /** width * height bytes. */
  readonly data: Uint8Array;

  /** Wrap existing pixels (not copied). Throws `InputError` for a non-positive size or a buffer of the wrong length. */
  constructor(width: number, height: number, data: Uint8Array) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
      throw new InputError(`image size must be positive integers, got ${width}x${height}`);
    }
    if (data.length !== width * height) {
      throw new InputError(`gray image ${width}x${height} needs ${width * height} bytes, got ${data.length}`);
    }
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
    const pipeline = sharp(this.data, { raw: { width: this.width, height: this.height, channels: 1 } }).toColourspace('b-w');
    const out = format === 'png' ? pipeline.png() : format === 'jpeg' ? pipeline.jpeg({ quality: 95 }) : pipeline.webp({ quality: 95 });
    const buf = await out.toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  }

  /**
   * Write the image to `path`, format from the extension (.png, .jpg/.jpeg, .webp), through a
   * temporary file in the same folder renamed over `path`: a reader never sees a half-written file,
   * and nothing is left behind if anything fails.
   */
  async save(path: string): Promise<void> {
    const ext = extname(path).toLowerCase();
    const format = FORMAT_BY_EXTENSION[ext];
    if (format === undefined) {
      throw new InputError(`${path}: cannot tell the image format from extension "${ext}" (use .png, .jpg, .jpeg or .webp)`);
    }
    const bytes = await this.encode(format);
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
