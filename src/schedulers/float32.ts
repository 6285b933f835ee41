/**
 * Bit-faithful float32 scalar arithmetic, as the reference stack (torch 1.13 CPU, numpy 1.24) does it.
 *
 * diffusers keeps betas, alphas and sigmas in float32 tensors, and a few of its schedule
 * computations (KDPM2's interpolated timesteps, `_sigma_to_t` after Karras sigmas) land on
 * float32 values that must match to the last bit. Getting there needs more than `Math.fround`:
 *
 * - torch's float32 `log`, `exp` and `expm1` are SLEEF's `u10` vector kernels (AVX2 + FMA),
 *   not libm, so they are reproduced here step by step with double-float arithmetic.
 * - numpy's float32 `log` is its own AVX2/FMA3 rational approximation (a P5/Q5 quotient on the
 *   mantissa), which differs from the correctly rounded logarithm by up to a few ulp.
 * - torch's `linspace` adds `step * i` to the endpoint with a fused multiply-add.
 *
 * Everything is a pure function of its arguments.
 */

export const fround = Math.fround;

/** Smallest normal float32. */
const FLT_MIN = 2 ** -126;

/** The bits of a float32 value as an unsigned 32-bit integer. */
export function floatBits(x: number): number {
  const f = new Float32Array(1);
  f[0] = x;
  // A one-element view of the four bytes just written.
  return new Uint32Array(f.buffer)[0]!;
}

/** The float32 value with the given bit pattern. */
export function bitsToFloat(bits: number): number {
  const u = new Uint32Array(1);
  u[0] = bits >>> 0;
  // A one-element view of the four bytes just written.
  return new Float32Array(u.buffer)[0]!;
}

/**
 * Correctly rounded float32 fused multiply-add `a*b + c` of float32 inputs.
 *
 * 1. The product of two float32 values fits a double exactly, so `a*b + c` in double is the
 *    exact value rounded once.
 * 2. Rounding that double to float32 is only wrong when it sits exactly halfway between two
 *    float32 neighbours while the exact value does not; the TwoSum error term decides the side.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  if (r === s || !Number.isFinite(s)) return r;
  const mirror = 2 * s - r; // the neighbour on the other side if s is a tie (exact)
  if (fround(mirror) !== mirror) return r;
  const bp = s - c;
  const err = (p - bp) + (c - (s - bp));
  if (err === 0) return r;
  return (err > 0) === (mirror > r) ? mirror : r;
}

/** Round half to even, as numpy's `round` / `rint` does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  if (Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** x86 `cvtps2dq` on a float32: round to nearest, ties to even, to an int32. */
function rintToInt(x: number): number {
  return roundHalfEven(x) | 0;
}

// ---------------------------------------------------------------------------------------------
// Double-float ("df") helpers: a value is hi + lo with both parts float32.
// ---------------------------------------------------------------------------------------------

type DF = readonly [number, number];

/** Sum of two floats as hi + lo, no magnitude precondition (Knuth's TwoSum in float32). */
function dfAdd2(x: number, y: number): DF {
  const s = fround(x + y);
  const v = fround(s - x);
  return [s, fround(fround(x - fround(s - v)) + fround(y - v))];
}

/** df + float, no magnitude precondition. */
function dfAdd2DfF(x: DF, y: number): DF {
  const s = fround(x[0] + y);
  const v = fround(s - x[0]);
  const t = fround(fround(x[0] - fround(s - v)) + fround(y - v));
  return [s, fround(t + x[1])];
}

/** df + df, no magnitude precondition. */
function dfAdd2DfDf(x: DF, y: DF): DF {
  const s = fround(x[0] + y[0]);
  const v = fround(s - x[0]);
  const t = fround(fround(x[0] - fround(s - v)) + fround(y[0] - v));
  return [s, fround(t + fround(x[1] + y[1]))];
}

/** df + df assuming |x| >= |y|. */
function dfAddDfDf(x: DF, y: DF): DF {
  const s = fround(x[0] + y[0]);
  return [s, fround(fround(fround(fround(x[0] - s) + y[0]) + x[1]) + y[1])];
}

/** df + float assuming |x| >= |y|. */
function dfAddDfF(x: DF, y: number): DF {
  const s = fround(x[0] + y);
  return [s, fround(fround(fround(x[0] - s) + y) + x[1])];
}

/** float + df assuming |x| >= |y|. */
function dfAddFDf(x: number, y: DF): DF {
  const s = fround(x + y[0]);
  return [s, fround(fround(fround(x - s) + y[0]) + y[1])];
}

/** df * float with FMA error terms. */
function dfMulDfF(x: DF, y: number): DF {
  const s = fround(x[0] * y);
  return [s, fma32(x[1], y, fma32(x[0], y, -s))];
}

/** df * df with FMA error terms. */
function dfMulDfDf(x: DF, y: DF): DF {
  const s = fround(x[0] * y[0]);
  return [s, fma32(x[0], y[1], fma32(x[1], y[0], fma32(x[0], y[0], -s)))];
}

/** df squared with FMA error terms. */
function dfSqu(x: DF): DF {
  const s = fround(x[0] * x[0]);
  return [s, fma32(fround(x[0] + x[0]), x[1], fma32(x[0], x[0], -s))];
}

/** df / df with FMA error terms. */
function dfDiv(n: DF, d: DF): DF {
  const t = fround(1 / d[0]);
  const s = fround(n[0] * t);
  const u = fma32(t, n[0], -s);
  const v = fma32(-d[1], t, fma32(-d[0], t, 1));
  return [s, fma32(s, v, fma32(n[1], t, u))];
}

/** x * 2^q split in two factors so intermediate powers stay normal (SLEEF's `vldexp2`). */
function ldexp2(x: number, q: number): number {
  const h = q >> 1;
  return fround(fround(x * 2 ** h) * 2 ** (q - h));
}

// ---------------------------------------------------------------------------------------------
// torch float32 transcendental functions (SLEEF 3.5 u10 kernels, AVX2 with FMA).
// ---------------------------------------------------------------------------------------------

const LN2_HI = fround(0.69314718246459960938);
const LN2_LO = fround(-1.904654323148236017e-9);
const FOUR_THIRDS = fround(1 / 0.75);
const R_LN2 = fround(1.442695040888963407359924681001892137426645954152985934135449406931);
const L2U = fround(0.693145751953125);
const L2L = fround(1.428606765330187045e-6);

/** torch's float32 `log` (SLEEF `logf_u10`). */
export function torchLog32(x: number): number {
  let d = fround(x);
  if (Number.isNaN(d) || d < 0) return NaN;
  if (d === 0) return -Infinity;
  if (d === Infinity) return Infinity;
  // 1. Scale subnormals up by 2^64 so the exponent split below sees a normal number.
  const tiny = d < FLT_MIN;
  if (tiny) d = fround(d * 2 ** 64);
  // 2. d = m * 2^e with m in [0.75, 1.5).
  let e = ((floatBits(fround(d * FOUR_THIRDS)) >>> 23) & 0xff) - 0x7f;
  const m = bitsToFloat(floatBits(d) + ((-e << 23) | 0));
  if (tiny) e -= 64;
  // 3. log(d) = e*ln2 + 2*atanh(x) with x = (m - 1)/(m + 1), in double-float.
  let s = dfMulDfF([LN2_HI, LN2_LO], e);
  const xq = dfDiv(dfAdd2(-1, m), dfAdd2(1, m));
  const x2 = fround(xq[0] * xq[0]);
  let t = fma32(fround(0.3027294874), x2, fround(0.3996108174));
  t = fma32(t, x2, fround(0.666669488));
  s = dfAddDfDf(s, [fround(xq[0] * 2), fround(xq[1] * 2)]);
  s = dfAddDfF(s, fround(fround(x2 * xq[0]) * t));
  return fround(s[0] + s[1]);
}

/** torch's float32 `exp` (SLEEF `expf_u10`). */
export function torchExp32(x: number): number {
  const d = fround(x);
  if (Number.isNaN(d)) return NaN;
  if (d < -104) return 0;
  if (d > 100) return Infinity;
  // 1. d = q*ln2 + s with q an integer (Cody–Waite, two FMAs).
  const q = rintToInt(fround(d * R_LN2));
  let s = fma32(q, -L2U, d);
  s = fma32(q, -L2L, s);
  // 2. exp(s) by a degree-7 polynomial in Horner form.
  let u = fround(0.000198527617612853646278381);
  u = fma32(u, s, fround(0.00139304355252534151077271));
  u = fma32(u, s, fround(0.00833336077630519866943359));
  u = fma32(u, s, fround(0.0416664853692054748535156));
  u = fma32(u, s, fround(0.166666671633720397949219));
  u = fma32(u, s, 0.5);
  u = fround(1 + fma32(fround(s * s), u, s));
  // 3. Scale by 2^q.
  return ldexp2(u, q);
}

/** torch's float32 `expm1` (SLEEF `expm1f_u10`). */
export function torchExpm1_32(x: number): number {
  const a = fround(x);
  if (Number.isNaN(a)) return NaN;
  if (a > fround(88.72283172607421875)) return Infinity;
  if (a < fround(-16.635532333438687426013570)) return -1;
  if (Object.is(a, -0)) return -0;
  // 1. exp(a) in double-float: a = q*ln2 + s, then a polynomial in s.
  const q = rintToInt(fround(a * R_LN2));
  let s: DF = dfAdd2DfF([a, 0], fround(q * -L2U));
  s = dfAdd2DfF(s, fround(q * -L2L));
  let u = fround(0.1980960224e-3);
  u = fma32(u, s[0], fround(0.1394256484e-2));
  u = fma32(u, s[0], fround(0.8333456703e-2));
  u = fma32(u, s[0], fround(0.4166637361e-1));
  let t = dfAdd2DfF(dfMulDfF(s, u), fround(0.166666659414234244790680580464));
  t = dfAdd2DfF(dfMulDfDf(s, t), 0.5);
  t = dfAdd2DfDf(s, dfMulDfDf(dfSqu(s), t));
  t = dfAddFDf(1, t);
  t = [ldexp2(t[0], q), ldexp2(t[1], q)];
  // 2. Subtract one while both parts are still separate.
  const r = dfAdd2DfF(t, -1);
  return fround(r[0] + r[1]);
}

// ---------------------------------------------------------------------------------------------
// numpy float32 log (AVX2/FMA3 kernel of numpy 1.x).
// ---------------------------------------------------------------------------------------------

const NP_LOG_P = [
  0, 9.999999999999998702752e-1, 2.112677543073053063722, 1.480000633576506585156,
  3.808837741388407920751e-1, 2.589979117907922693523e-2,
].map(fround);
const NP_LOG_Q = [
  1, 2.612677543073109236779, 2.453006071784736363091, 9.864942958519418960339e-1,
  1.546476374983906719538e-1, 5.875095403124574342950e-3,
].map(fround);
const NP_LN2 = fround(Math.LN2);
const NP_SQRT1_2 = fround(Math.SQRT1_2);

/** numpy's float32 `np.log` (vectorised AVX2 path). */
export function numpyLog32(x: number): number {
  let v = fround(x);
  if (Number.isNaN(v) || v < 0) return NaN;
  if (v === 0) return -Infinity;
  if (v === Infinity) return Infinity;
  // 1. v = m * 2^e with m in [0.5, 1); subnormals are scaled by 2^100 first.
  let bias = 0;
  if (v < FLT_MIN) {
    v = fround(v * 2 ** 100);
    bias = 100;
  }
  const bits = floatBits(v);
  let e = ((bits >>> 23) - 0x7e) - bias;
  let m = bitsToFloat((bits & 0x7fffff) | (126 << 23));
  // 2. Move m into (√½, √2].
  if (m <= NP_SQRT1_2) {
    m = fround(m + m);
    e -= 1;
  }
  const y = fround(m - 1);
  // 3. log(1 + y) ≈ P(y)/Q(y), then add e*ln2 with one FMA. Both tables have six coefficients.
  let num = fma32(NP_LOG_P[5]!, y, NP_LOG_P[4]!);
  let den = fma32(NP_LOG_Q[5]!, y, NP_LOG_Q[4]!);
  for (let k = 3; k >= 0; k--) {
    num = fma32(num, y, NP_LOG_P[k]!);
    den = fma32(den, y, NP_LOG_Q[k]!);
  }
  return fma32(e, NP_LN2, fround(num / den));
}

// ---------------------------------------------------------------------------------------------
// torch.linspace in float32
// ---------------------------------------------------------------------------------------------

/**
 * `torch.linspace(start, end, steps, dtype=float32)` on CPU.
 *
 * 1. start, end and step = (end - start)/(steps - 1) are float32.
 * 2. Elements before the halfway index count up from start (`start + step*i`), the rest down
 *    from end (`end - step*(steps-1-i)`), each anchor computed with one fused multiply-add.
 * 3. The AVX2 kernel fills 8 lanes at a time while 16 or more elements remain: the anchor is
 *    taken at the first lane (which decides the half for all 8), and lane k adds `k*step` to it.
 *    The tail is filled one element at a time.
 */
export function torchLinspace32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const s = fround(start);
  const e = fround(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = fround(fround(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const anchor = (i: number): number => (i < half ? fma32(step, i, s) : fma32(-step, steps - 1 - i, e));
  const vectorEnd = steps - (steps % 16);
  let i = 0;
  for (; i < vectorEnd; i += 8) {
    const base = anchor(i);
    for (let k = 0; k < 8; k++) out[i + k] = fma32(k, step, base);
  }
  for (; i < steps; i++) out[i] = anchor(i);
  return out;
}
