/** Input handling shared by the ControlNet-XS pipelines: control images, generators, control windows. */
import { randomBytes } from 'node:crypto';
import { InputError } from '../errors.js';
import { loadImage } from '../image/load.js';
import { RGBImage } from '../image/rgb-image.js';
import { Generator } from '../random/index.js';
import type { TensorLike } from '../tensor.js';

/** A control image: a path, encoded bytes, a decoded image, a list of those, or a [B,3,H,W] tensor in [0, 1]. */
export type ControlImageInput = string | Uint8Array | RGBImage | TensorLike | readonly (string | Uint8Array | RGBImage)[];

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === 'object' && x !== null && 'data' in x && 'dims' in x && !(x instanceof RGBImage) && !(x instanceof Uint8Array);
}

/** Decode paths/bytes; images and tensors pass through. */
export async function resolveControlImage(image: ControlImageInput | undefined): Promise<RGBImage[] | TensorLike> {
  if (image === undefined || image === null) {
    throw new InputError('`image` must be passed: a path, image bytes, an RGBImage, a list of those, or a [B, 3, H, W] tensor');
  }
  if (isTensorLike(image)) return image;
  const list = Array.isArray(image) ? (image as readonly (string | Uint8Array | RGBImage)[]) : [image as string | Uint8Array | RGBImage];
  if (list.length === 0) throw new InputError('`image` is an empty list');
  return Promise.all(list.map((x) => (x instanceof RGBImage ? x : loadImage(x))));
}

/** Number of control images given (diffusers' check_image). */
export function imageBatchSize(image: RGBImage[] | TensorLike): number {
  return Array.isArray(image) ? image.length : isTensorLike(image) && image.dims.length === 4 ? image.dims[0]! : 1;
}

/** diffusers' per-step switch: control is on for step i of n when i/n ≥ start and (i+1)/n ≤ end. */
export function controlAppliesAt(i: number, n: number, start: number, end: number): boolean {
  return i / n >= start && (i + 1) / n <= end;
}

/** A generator seeded from the OS when the caller gave none (diffusers then uses torch's global RNG). */
export function defaultGenerator(): Generator {
  return new Generator().manualSeed(randomBytes(8).readBigUInt64LE(0));
}

export function checkControlWindow(start: number, end: number): void {
  if (!(start < end)) throw new InputError(`control guidance start: ${start} cannot be larger or equal to control guidance end: ${end}.`);
  if (start < 0) throw new InputError(`control guidance start: ${start} can't be smaller than 0.`);
  if (end > 1) throw new InputError(`control guidance end: ${end} can't be larger than 1.0.`);
}

export function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new InputError(`${name} must be a positive integer, got ${v}`);
}

export function checkFinite(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${name} must be a finite number, got ${String(v)}`);
}

/** Abort the run if its signal fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    throw reason instanceof Error ? reason : new DOMException('The generation was aborted', 'AbortError');
  }
}
