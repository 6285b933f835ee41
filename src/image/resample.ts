/**
 * Pillow-exact resizing of 8-bit RGB images: `PIL.Image.resize(size, resample=...)` reproduced bit for
 * bit, following the published algorithm of Pillow's `libImaging/Resample.c` (convolution filters) and
 * `Geometry.c` (nearest neighbour).
 *
 * Convolution filters (lanczos, bicubic, bilinear) resample separably: a horizontal pass first, into
 * an 8-bit intermediate image, then a vertical pass; a pass is skipped when its dimension does not
 * change. Each output sample is a weighted sum of the input samples under the filter, stretched by
 * the downscaling factor; the weights are normalised to sum to 1, turned into signed fixed point with
 * 22 fractional bits (32 - 8 - 2), accumulated in integers from a rounding offset of one half, and
 * the result is shifted back and clipped to 0..255.
 */
import { InputError } from '../errors.js';
import { RGBImage } from './rgb-image.js';

export type ResampleFilter = 'lanczos' | 'bicubic' | 'bilinear' | 'nearest';

interface Kernel {
  /** Filter response at distance x (in input pixels, before stretching). */
  readonly at: (x: number) => number;
  /** Half-width of the filter at scale 1. */
  readonly support: number;
}

/** sin(πx)/(πx), 1 at 0. */
function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const KERNELS: Readonly<Record<Exclude<ResampleFilter, 'nearest'>, Kernel>> = {
  // Lanczos-3: sinc windowed by a 3× wider sinc, on [-3, 3).
  lanczos: { support: 3, at: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  // Keys cubic convolution with a = -0.5.
  bicubic: {
    support: 2,
    at: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  // Triangle.
  bilinear: { support: 1, at: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
};

/** Fractional bits of the fixed-point weights: 8 bits of result, 2 bits of headroom, in an int32. */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/** Per output position: first input index, number of taps, and `taps` fixed-point weights. */
interface Taps {
  readonly first: Int32Array;
  readonly count: Int32Array;
  /** [outSize * stride] int weights; row `o` starts at `o * stride`. */
  readonly weights: Int32Array;
  readonly stride: number;
}

/** Fixed-point filter taps for resampling one axis from `inSize` to `outSize` samples. */
function computeTaps(inSize: number, outSize: number, kernel: Kernel): Taps {
  const scale = inSize / outSize;
  // Downscaling stretches the filter so that it also low-passes; upscaling uses it as is.
  const filterScale = Math.max(scale, 1);
  const support = kernel.support * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1 / filterScale;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  const w = new Float64Array(stride);

  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    // Truncation toward zero, as a C int cast, after adding one half.
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const n = hi - lo;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      w[i] = kernel.at((i + lo - center + 0.5) * invFilterScale);
      sum += w[i]!;
    }
    for (let i = 0; i < n; i++) {
      const k = sum !== 0 ? w[i]! / sum : w[i]!;
      // Round half away from zero into fixed point.
      weights[o * stride + i] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    first[o] = lo;
    count[o] = n;
  }
  return { first, count, weights, stride };
}

/** Fixed-point accumulator → byte: drop the fraction (arithmetic shift) and clip to 0..255. */
function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass. Shapes: [h, inW, 3] → [h, outW, 3]. */
function resampleRows(src: Uint8Array, inW: number, h: number, outW: number, taps: Taps): Uint8Array {
  const out = new Uint8Array(outW * h * 3);
  const { first, count, weights, stride } = taps;
  for (let y = 0; y < h; y++) {
    const row = y * inW * 3;
    for (let x = 0; x < outW; x++) {
      let r = HALF;
      let g = HALF;
      let b = HALF;
      const base = row + first[x]! * 3;
      const kw = x * stride;
      for (let i = 0, n = count[x]!; i < n; i++) {
        const k = weights[kw + i]!;
        const p = base + i * 3;
        r += src[p]! * k;
        g += src[p + 1]! * k;
        b += src[p + 2]! * k;
      }
      const q = (y * outW + x) * 3;
      out[q] = clip8(r);
      out[q + 1] = clip8(g);
      out[q + 2] = clip8(b);
    }
  }
  return out;
}

/** Vertical pass. Shapes: [inH, w, 3] → [outH, w, 3]. */
function resampleColumns(src: Uint8Array, w: number, outH: number, taps: Taps): Uint8Array {
  const out = new Uint8Array(w * outH * 3);
  const { first, count, weights, stride } = taps;
  const rowLen = w * 3;
  for (let y = 0; y < outH; y++) {
    const kw = y * stride;
    const n = count[y]!;
    const top = first[y]! * rowLen;
    for (let c = 0; c < rowLen; c++) {
      let acc = HALF;
      for (let i = 0; i < n; i++) acc += src[top + i * rowLen + c]! * weights[kw + i]!;
      out[y * rowLen + c] = clip8(acc);
    }
  }
  return out;
}

/**
 * Pillow's nearest-neighbour scaling: the source coordinate starts at half a step and advances by
 * `in / out` per output pixel (accumulated in double precision), then is truncated.
 */
function nearestIndices(inSize: number, outSize: number): Int32Array {
  const step = inSize / outSize;
  const idx = new Int32Array(outSize);
  let pos = step * 0.5;
  for (let o = 0; o < outSize; o++) {
    idx[o] = Math.min(inSize - 1, pos < 0 ? 0 : Math.trunc(pos));
    pos += step;
  }
  return idx;
}

function resizeNearest(image: RGBImage, width: number, height: number): RGBImage {
  const xs = nearestIndices(image.width, width);
  const ys = nearestIndices(image.height, height);
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const srcRow = ys[y]! * image.width;
    for (let x = 0; x < width; x++) {
      const s = (srcRow + xs[x]!) * 3;
      const d = (y * width + x) * 3;
      out[d] = image.data[s]!;
      out[d + 1] = image.data[s + 1]!;
      out[d + 2] = image.data[s + 2]!;
    }
  }
  return new RGBImage(width, height, out);
}

/**
 * Resize like `PIL.Image.resize((width, height), resample=filter)` on an RGB image. Returns a copy
 * when the size is unchanged (as PIL does).
 */
export function resizeImage(
  image: RGBImage,
  size: { width: number; height: number },
  opts: { filter?: ResampleFilter } = {},
): RGBImage {
  const { width, height } = size;
  const filter = opts.filter ?? 'lanczos';
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InputError(`resize target must be positive integers, got ${width}x${height}`);
  }
  if (width === image.width && height === image.height) return image.clone();
  if (filter === 'nearest') return resizeNearest(image, width, height);
  const kernel = KERNELS[filter];
  if (kernel === undefined) throw new InputError(`unknown resample filter "${String(filter)}"`);

  let data = image.data;
  let w = image.width;
  if (width !== image.width) {
    data = resampleRows(data, image.width, image.height, width, computeTaps(image.width, width, kernel));
    w = width;
  }
  if (height !== image.height) {
    data = resampleColumns(data, w, height, computeTaps(image.height, height, kernel));
  }
  return new RGBImage(width, height, data);
}
