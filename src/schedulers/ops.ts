/**
 * Elementwise float32 tensor arithmetic with torch's rounding: every product, quotient and sum
 * of a diffusers expression is one torch kernel, so each is rounded to float32 on its own.
 * Writing `lin([[a, x], [-b, y]])` for `a * x - b * y` keeps that order of roundings.
 *
 * Scalars passed in are expected to be float32 values already (0-d tensors in diffusers); a
 * Python float meeting a float32 tensor is rounded to float32 first, which callers do with
 * `fround`.
 */
import { ConfigError, InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { fround } from './float32.js';

export type Vec = Float32Array;

/** The (coefficient, vector) terms of {@link lin}: at least one, as the first fixes the length. */
export type Terms = [[number, Vec], ...[number, Vec][]];

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

/**
 * Operands of one elementwise expression must have one length: every state vector of a run has
 * the sample's length (`SchedulerRun.inputs` checks the model output against it), so a mismatch is
 * a bug in a scheduler, caught here rather than read as NaN past the end of the shorter one.
 */
function checkLength(x: Vec, n: number): void {
  if (x.length !== n) throw new RangeError(`elementwise operands of lengths ${n} and ${x.length}`);
}

/** Σ c_k·x_k evaluated left to right: each product, then each running sum, rounded to float32. */
export function lin(terms: readonly [readonly [number, Vec], ...(readonly (readonly [number, Vec])[])]): Vec {
  const [[c0, x0], ...rest] = terms;
  const n = x0.length;
  const out = new Float32Array(n);
  // i < n = x0.length = out.length, and checkLength gives each x that length too.
  for (let i = 0; i < n; i++) out[i] = c0 * x0[i]!;
  for (const [c, x] of rest) {
    checkLength(x, n);
    for (let i = 0; i < n; i++) out[i] = out[i]! + fround(c * x[i]!);
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
  checkLength(y, x.length);
  return x.map((v, i) => v + y[i]!);
}

/** x - y elementwise. */
export function sub(x: Vec, y: Vec): Vec {
  checkLength(y, x.length);
  return x.map((v, i) => v - y[i]!);
}

/** Clamp to [lo, hi]. */
export function clamp(x: Vec, lo: number, hi: number): Vec {
  return x.map((v) => Math.min(Math.max(v, lo), hi));
}

/** `torch.quantile(v, q)` with linear interpolation (v is sorted in place; non-empty, q in [0, 1]). */
function quantile(v: Float32Array, q: number): number {
  v.sort();
  const last = v.length - 1;
  // q becomes a float32 tensor, so the rank and the interpolation weight are float32 too.
  const rank = fround(fround(q) * last);
  // rank ≤ last for q ≤ 1, unless last is past float32's exact integers (2^24) and rounds up;
  // the min keeps lo a valid index even then.
  const lo = Math.min(Math.floor(rank), last);
  const hi = Math.min(lo + 1, last);
  const w = fround(rank - lo);
  // lo and hi are in [0, last]: v is non-empty and rank ≥ 0 for q ≥ 0.
  const vLo = v[lo]!;
  const vHi = v[hi]!;
  // torch.lerp in float32: small weights count up from the low value, large ones down from the high.
  const gap = fround(vHi - vLo);
  return w < 0.5 ? fround(vLo + fround(w * gap)) : fround(vHi - fround(gap * fround(1 - w)));
}

/**
 * Dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3): per batch item, s = the `ratio`
 * quantile of |x0|, clamped to [1, maxValue]; x0 is clipped to [-s, s] and divided by s.
 */
export function thresholdSample(x: Vec, dims: readonly number[], ratio: number, maxValue: number): Vec {
  // torch.quantile refuses q outside [0, 1]; the config only checks that the ratio is finite.
  if (!(ratio >= 0 && ratio <= 1)) {
    throw new ConfigError(`dynamic_thresholding_ratio must be in [0, 1] to threshold, got ${ratio}`);
  }
  const batch = dims[0] ?? 1;
  const per = batch > 0 ? x.length / batch : 0;
  const out = new Float32Array(x.length);
  // Empty rows have nothing to clip (and no quantile): the output is the empty sample.
  if (per === 0) return out;
  for (let b = 0; b < batch; b++) {
    const row = x.subarray(b * per, (b + 1) * per);
    const s = Math.min(Math.max(quantile(row.map(Math.abs), ratio), 1), fround(maxValue));
    // i < per = row.length.
    for (let i = 0; i < per; i++) out[b * per + i] = Math.min(Math.max(row[i]!, -s), s) / s;
  }
  return out;
}
