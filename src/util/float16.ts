/**
 * IEEE 754 binary16 ("half") encoding for graph constants of float16 graphs. Node 20 has no
 * Float16Array, so values travel as their 16-bit patterns in a Uint16Array (onnxruntime's layout).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bit pattern nearest to `x` (round to nearest, ties to even; overflow → ±Infinity). */
export function toFloat16Bits(x: number): number {
  f32[0] = x; // the float32 rounding first, as torch's `.half()` of a float32 tensor
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf, NaN (quiet)
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: Infinity
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    // subnormal: the implicit 1 joins the mantissa, shifted right by 14 − e (≥ 14)
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let out = m >>> shift;
    if (rest > half || (rest === half && (out & 1) === 1)) out++;
    return sign | out;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // round to nearest even; a carry out of the mantissa bumps the exponent (up to Infinity), as it should
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) === 1)) out++;
  return sign | out;
}

/** The value of a binary16 bit pattern. */
export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Every value of `data` as binary16 patterns. */
export function float16Array(data: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = toFloat16Bits(data[i]!);
  return out;
}

/** The largest finite binary16 value (torch.finfo(torch.float16).max); −this is its `finfo.min`. */
export const FLOAT16_MAX = 65504;
