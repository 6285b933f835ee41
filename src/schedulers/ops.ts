/**
 * Elementwise float32 tensor arithmetic with torch's rounding: every product, quotient and sum
 * of a diffusers expression is one torch kernel, so each is rounded to float32 on its own.
 * Writing `lin([[a, x], [-b, y]])` for `a * x - b * y` keeps that order of roundings.
 *
 * Scalars passed in are expected to be float32 values already (0-d tensors in diffusers); a
 * Python float meeting a float32 tensor is rounded to float32 first, which callers do with
 * `fround`.
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { fround } from './float32.js';

export type Vec = Float32Array;

/** A float32 view of a tensor argument, checked to hold a Float32Array. */
export function asVec(name: string, t: TensorLike): Vec {
  if (!(t.data instanceof Float32Array)) {
    throw new InputError(`${name} must hold a Float32Array, got ${t.data.constructor.name}`);
  }
  return t.data;
}

/** Wrap a result with the dims of its sample. */
export function like(dims: readonly number[], data: Vec): Tensor<'float32'> {
  return new Tensor('float32', data, dims);
}

/** Σ c_k·x_k evaluated left to right: each product, then each running sum, rounded to float32. */
export function lin(terms: ReadonlyArray<readonly [number, Vec]>): Vec {
  const n = terms[0][1].length;
  const out = new Float32Array(n);
  const [c0, x0] = terms[0];
  for (let i = 0; i < n; i++) out[i] = c0 * x0[i];
  for (let k = 1; k < terms.length; k++) {
    const [c, x] = terms[k];
    for (let i = 0; i < n; i++) out[i] = out[i] + fround(c * x[i]);
  }
  return out;
}

/** x / c elementwise. */
export function div(x: Vec, c: number): Vec {
  return x.map((v) => v / c);
}

/** x · c elementwise. */
export function scale(x: Vec, c: number): Vec {
  return x.map((v) => v * c);
}

/** x + y elementwise. */
export function add(x: Vec, y: Vec): Vec {
  return x.map((v, i) => v + y[i]);
}

/** x - y elementwise. */
export function sub(x: Vec, y: Vec): Vec {
  return x.map((v, i) => v - y[i]);
}

/** Clamp to [lo, hi]. */
export function clamp(x: Vec, lo: number, hi: number): Vec {
  return x.map((v) => Math.min(Math.max(v, lo), hi));
}

/** `torch.quantile(v, q)` with linear interpolation (v is sorted in place). */
function quantile(v: Float32Array, q: number): number {
  v.sort();
  // q becomes a float32 tensor, so the rank and the interpolation weight are float32 too.
  const rank = fround(fround(q) * (v.length - 1));
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, v.length - 1);
  const w = fround(rank - lo);
  // torch.lerp in float32: small weights count up from the low value, large ones down from the high.
  const gap = fround(v[hi] - v[lo]);
  return w < 0.5 ? fround(v[lo] + fround(w * gap)) : fround(v[hi] - fround(gap * fround(1 - w)));
}

/**
 * Dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3): per batch item, s = the `ratio`
 * quantile of |x0|, clamped to [1, maxValue]; x0 is clipped to [-s, s] and divided by s.
 */
export function thresholdSample(x: Vec, dims: readonly number[], ratio: number, maxValue: number): Vec {
  const batch = dims.length > 0 ? dims[0] : 1;
  const per = batch > 0 ? x.length / batch : 0;
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++) {
    const row = x.subarray(b * per, (b + 1) * per);
    const s = Math.min(Math.max(quantile(row.map(Math.abs), ratio), 1), fround(maxValue));
    for (let i = 0; i < per; i++) out[b * per + i] = Math.min(Math.max(row[i], -s), s) / s;
  }
  return out;
}
