/**
 * What `RGBImage` and `GrayImage` share: an 8-bit, row-major, channel-interleaved pixel buffer — its
 * size check, its encoding (sharp) and its save to a file whose format the extension names.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import sharp from 'sharp';
import { InputError } from '../errors.js';

/** Output formats an image's `save` can write, picked from the file extension. */
export type ImageFormat = 'png' | 'jpeg' | 'webp';

const FORMAT_BY_EXTENSION: Readonly<Record<string, ImageFormat>> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
};

/** The layout of a pixel buffer: `width * height * channels` bytes. */
export interface PixelLayout {
  readonly width: number;
  readonly height: number;
  /** 1 (gray, PIL's mode L) or 3 (R, G, B). */
  readonly channels: 1 | 3;
}

/**
 * Throws `InputError` for a non-positive or non-integer size (0×0 included) or a buffer whose length is
 * not `width * height * channels`; `kind` names the image in the message ("RGB image", "gray image").
 */
export function checkPixels(layout: PixelLayout, data: Uint8Array, kind: string): void {
  const { width, height, channels } = layout;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InputError(`image size must be positive integers, got ${width}x${height}`);
  }
  if (data.length !== width * height * channels) {
    throw new InputError(`${kind} ${width}x${height} needs ${width * height * channels} bytes, got ${data.length}`);
  }
}

/** Encode in `format` (JPEG and WebP at quality 95; one channel stays one channel in PNG and JPEG). */
export async function encodePixels(layout: PixelLayout, data: Uint8Array, format: ImageFormat): Promise<Uint8Array> {
  const { width, height, channels } = layout;
  let pipeline = sharp(data, { raw: { width, height, channels } });
  // sharp would write a one-channel raw input as RGB unless told it is gray
  if (channels === 1) pipeline = pipeline.toColourspace('b-w');
  const out = format === 'png' ? pipeline.png() : format === 'jpeg' ? pipeline.jpeg({ quality: 95 }) : pipeline.webp({ quality: 95 });
  const buf = await out.toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/**
 * Write an image to `path`, format from the extension (.png, .jpg/.jpeg, .webp), its bytes from
 * `encode`. An unknown extension is an InputError before anything is encoded. The bytes go to a
 * temporary file in the same folder first, which is then renamed over `path`, so a reader never sees a
 * half-written file; the temporary file is removed if anything fails.
 */
export async function saveImageFile(path: string, encode: (format: ImageFormat) => Promise<Uint8Array>): Promise<void> {
  const ext = extname(path).toLowerCase();
  const format = FORMAT_BY_EXTENSION[ext];
  if (format === undefined) {
    throw new InputError(`${path}: cannot tell the image format from extension "${ext}" (use .png, .jpg, .jpeg or .webp)`);
  }
  const bytes = await encode(format);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new InputError(`${path}: cannot write image (${(e as Error).message})`, { cause: e });
  }
}
