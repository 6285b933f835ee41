/**
 * The browser build's `load.ts`: images decoded by the browser's own decoder (`createImageBitmap`,
 * drawn on an `OffscreenCanvas`), from a URL (relative to the page), encoded bytes, a `Blob`, an
 * `ImageData`, an `ImageBitmap` or a canvas. Converted to RGB as `PIL.Image.open(...).convert("RGB")`:
 * alpha dropped, no colour management (`colorSpaceConversion: 'none'`, alpha not premultiplied).
 *
 * PNG decoding is exact, so an opaque PNG gives the same pixels as sharp in Node. A canvas keeps
 * premultiplied alpha, so semi-transparent pixels may round differently from PIL; JPEG decoders
 * differ between libraries (libjpeg-turbo vs the browser's) by a unit here and there.
 */
import { InputError } from '../errors.js';
import { absoluteUrl } from '../platform/files.browser.js';
import { RGBImage } from './rgb-image.js';

/** The browser image objects taken besides URLs and bytes. */
export interface BrowserImageData {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8ClampedArray;
}

interface Canvas2D {
  drawImage(image: unknown, x: number, y: number): void;
  getImageData(x: number, y: number, w: number, h: number): BrowserImageData;
}
interface CanvasLike {
  readonly width: number;
  readonly height: number;
  getContext(kind: '2d', options?: Record<string, unknown>): Canvas2D | null;
}
interface BitmapLike {
  readonly width: number;
  readonly height: number;
  close(): void;
}
interface ImageGlobals {
  createImageBitmap(source: Blob, options: Record<string, string>): Promise<BitmapLike>;
  OffscreenCanvas: new (w: number, h: number) => CanvasLike;
}

/** Decode an image (URL, bytes, Blob, ImageData, ImageBitmap or canvas) into an `RGBImage`. */
export async function loadImage(source: string | Uint8Array | Blob | BrowserImageData | CanvasLike | BitmapLike): Promise<RGBImage> {
  if (isImageData(source)) return fromRGBA(source, 'ImageData');
  if (isCanvas(source)) return fromRGBA(pixelsOf(source, source.width, source.height, 'canvas', (ctx) => void ctx), 'canvas');
  const g = globalThis as unknown as ImageGlobals;
  if (isBitmap(source)) return fromRGBA(drawn(g, source, 'ImageBitmap'), 'ImageBitmap');
  const [blob, label] = await blobOf(source);
  let bitmap: BitmapLike;
  try {
    bitmap = await g.createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch (e) {
    throw new InputError(`${label}: not a readable image (${(e as Error).message})`, { cause: e });
  }
  try {
    return fromRGBA(drawn(g, bitmap, label), label);
  } finally {
    bitmap.close();
  }
}

async function blobOf(source: string | Uint8Array | Blob): Promise<[Blob, string]> {
  if (typeof source === 'string') {
    const url = absoluteUrl(source);
    let res: Response;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new InputError(`${url}: cannot fetch image (${(e as Error).message})`, { cause: e });
    }
    if (!res.ok) throw new InputError(`${url}: cannot fetch image (HTTP ${res.status})`);
    return [await res.blob(), url];
  }
  if (source instanceof Uint8Array) {
    if (source.length === 0) throw new InputError(`image bytes (0 bytes): empty buffer is not an image`);
    return [new Blob([source]), `image bytes (${source.length} bytes)`];
  }
  if (source.size === 0) throw new InputError('image Blob (0 bytes): empty, not an image');
  return [source, `image Blob (${source.size} bytes, ${source.type || 'no type'})`];
}

function drawn(g: ImageGlobals, bitmap: BitmapLike, label: string): BrowserImageData {
  if (bitmap.width === 0 || bitmap.height === 0) throw new InputError(`${label}: image is ${bitmap.width}x${bitmap.height}, it has no pixels`);
  return pixelsOf(new g.OffscreenCanvas(bitmap.width, bitmap.height), bitmap.width, bitmap.height, label, (ctx) => ctx.drawImage(bitmap, 0, 0));
}

function pixelsOf(canvas: CanvasLike, w: number, h: number, label: string, draw: (ctx: Canvas2D) => void): BrowserImageData {
  const ctx = canvas.getContext('2d', { colorSpace: 'srgb', willReadFrequently: true });
  if (ctx === null) throw new InputError(`${label}: no 2D canvas context to read pixels from`);
  draw(ctx);
  return ctx.getImageData(0, 0, w, h);
}

/** RGBA [h * w * 4] → RGB [h * w * 3], alpha dropped. */
function fromRGBA(img: BrowserImageData, label: string): RGBImage {
  const n = img.width * img.height;
  if (n === 0 || img.data.length !== n * 4) throw new InputError(`${label}: ${img.width}x${img.height} image with ${img.data.length} bytes of RGBA`);
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = img.data[i * 4]!;
    out[i * 3 + 1] = img.data[i * 4 + 1]!;
    out[i * 3 + 2] = img.data[i * 4 + 2]!;
  }
  return new RGBImage(img.width, img.height, out);
}

function isImageData(x: unknown): x is BrowserImageData {
  return typeof x === 'object' && x !== null && 'data' in x && (x as { data: unknown }).data instanceof Uint8ClampedArray;
}
function isCanvas(x: unknown): x is CanvasLike {
  return typeof x === 'object' && x !== null && typeof (x as { getContext?: unknown }).getContext === 'function';
}
function isBitmap(x: unknown): x is BitmapLike {
  return typeof x === 'object' && x !== null && typeof (x as { close?: unknown }).close === 'function' && 'width' in x && !(x instanceof Blob);
}
