/**
 * Image loading: PNG / JPEG / WebP (anything sharp decodes) from a path or bytes, converted to 8-bit
 * RGB the way `PIL.Image.open(...).convert("RGB")` does it:
 *
 * - alpha is simply dropped (no compositing onto a background);
 * - grayscale is replicated into R, G and B;
 * - 16-bit RGB(A) and 16-bit gray+alpha keep the high byte of each sample (PIL unpacks "RGB;16B",
 *   "LA;16B" that way);
 * - 16-bit grayscale is clipped to 255, not scaled: PIL opens it as mode "I;16" and its conversion to
 *   RGB saturates (so most 16-bit gray images come out nearly white in PIL too);
 * - embedded ICC profiles and EXIF orientation are ignored, as PIL ignores them.
 *
 * Only the first frame of an animated image is read.
 */
import { stat } from 'node:fs/promises';
import sharp from 'sharp';
import { InputError } from '../errors.js';
import { RGBImage } from './rgb-image.js';

/** Read and decode an image file or encoded bytes into an `RGBImage`. */
export async function loadImage(source: string | Uint8Array): Promise<RGBImage> {
  const label = typeof source === 'string' ? source : `image bytes (${source.length} bytes)`;
  if (typeof source === 'string') await assertReadableFile(source);
  else if (source.length === 0) throw new InputError(`${label}: empty buffer is not an image`);

  const input = typeof source === 'string' ? source : Buffer.from(source.buffer, source.byteOffset, source.length);
  const options = { failOn: 'error', ignoreIcc: true } as const;

  let meta: sharp.Metadata;
  try {
    meta = await sharp(input, options).metadata();
  } catch (e) {
    throw new InputError(`${label}: not a readable image (${(e as Error).message})`, { cause: e });
  }
  if (!meta.width || !meta.height) {
    throw new InputError(`${label}: image is ${meta.width ?? 0}x${meta.height ?? 0}, it has no pixels`);
  }

  const wide = meta.depth === 'ushort';
  const gray = meta.channels !== undefined && meta.channels <= 2;
  // Pin the output colour space to the stored one so sharp does no conversion of its own.
  const space = gray ? (wide ? 'grey16' : 'b-w') : wide ? 'rgb16' : 'srgb';
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(input, options)
      .toColourspace(space)
      .raw({ depth: wide ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new InputError(`${label}: cannot decode image (${(e as Error).message})`, { cause: e });
  }
  const { width, height, channels } = raw.info;
  if (width === 0 || height === 0) throw new InputError(`${label}: image is ${width}x${height}, it has no pixels`);

  const samples = wide
    ? new Uint16Array(raw.data.buffer, raw.data.byteOffset, raw.data.length / 2)
    : new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.length);
  const toByte = wide ? (channels === 1 ? saturate16 : highByte16) : identity8;
  return new RGBImage(width, height, toRGB(samples, width * height, channels, toByte, label));
}

async function assertReadableFile(path: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new InputError(`${path}: cannot open image (${why})`, { cause: e });
  }
  if (!isFile) throw new InputError(`${path}: not a file`);
}

const identity8 = (v: number): number => v;
/** PIL "RGB;16B" / "LA;16B" unpacking: the most significant byte. */
const highByte16 = (v: number): number => v >> 8;
/** PIL "I;16" → "RGB": values above 255 saturate. */
const saturate16 = (v: number): number => (v > 255 ? 255 : v);

/**
 * Interleaved samples with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels → RGB bytes.
 * Shapes: [n * channels] → [n * 3].
 */
function toRGB(
  src: Uint8Array | Uint16Array,
  n: number,
  channels: number,
  toByte: (v: number) => number,
  label: string,
): Uint8Array {
  const out = new Uint8Array(n * 3);
  if (channels === 1 || channels === 2) {
    for (let i = 0; i < n; i++) {
      const v = toByte(src[i * channels]!);
      out[i * 3] = v;
      out[i * 3 + 1] = v;
      out[i * 3 + 2] = v;
    }
  } else if (channels === 3 || channels === 4) {
    for (let i = 0; i < n; i++) {
      out[i * 3] = toByte(src[i * channels]!);
      out[i * 3 + 1] = toByte(src[i * channels + 1]!);
      out[i * 3 + 2] = toByte(src[i * channels + 2]!);
    }
  } else {
    throw new InputError(`${label}: unsupported channel count ${channels}`);
  }
  return out;
}
