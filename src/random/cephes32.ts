/**
 * torch's AVX2 float32 Box–Muller kernel, emulated in scalar JavaScript.
 *
 * torch 1.13 on x86 turns uniforms into normals with Cephes-style float32 polynomials for log,
 * sin and cos (`log256_ps` / `sincos256_ps` in ATen's avx_mathfun.h), not with libm, and GCC
 * contracts their multiply-add pairs into fused multiply-adds. Reproducing the bits therefore
 * means rounding every step to float32 (`Math.fround`) and using an exactly rounded float32 FMA
 * where the compiled code has one. Without the FMAs about 1% of outputs differ in the last bit.
 */

const fround = Math.fround;

/** 2π rounded to float32, the angle scale of the float32 kernel. */
const TWO_PI_F32 = fround(2 * Math.PI);

/**
 * Turn the 16 uniforms at `d[base .. base+16)` into normals in place: for lane j < 8,
 * `u1 = 1 - d[j]`, `u2 = d[j+8]`, `r = sqrt(-2 log u1)`, `θ = float32(2π) * u2`, then
 * `d[j] = r cos θ` and `d[j+8] = r sin θ`, every step in float32.
 */
export function boxMuller16Float32(d: Float32Array, base: number): void {
  // Callers pass `base + 16 <= d.length` (generator.ts), so j and j+8 are in range: the `!`s
  // are true claims, kept local to this per-sample loop.
  for (let j = base; j < base + 8; j++) {
    const u1 = fround(1 - d[j]!);
    const u2 = d[j + 8]!;
    const radius = fround(Math.sqrt(fround(-2 * logUnitGrid32(u1))));
    const theta = fround(TWO_PI_F32 * u2);
    // One range reduction serves both sine and cosine: k is the even octant index.
    const k = (Math.trunc(fround(theta * FOPI)) + 1) & ~1;
    const x = reduceAngle32(theta, k);
    const z = fround(x * x);
    const sinPoly = sinPoly32(x, z);
    const cosPoly = cosPoly32(z);
    // Octant bookkeeping: `k & 2` swaps the two polynomials, `k & 4` negates the sine and
    // `~(k - 2) & 4` negates the cosine.
    const swap = (k & 2) !== 0;
    let s = swap ? cosPoly : sinPoly;
    let c = swap ? sinPoly : cosPoly;
    if (k & 4) s = -s;
    if (~(k - 2) & 4) c = -c;
    // The store rounds the exact double product to float32. `+ 0` is torch's final
    // `* std + mean` with std 1 and mean 0, which turns a negative zero into +0.
    d[j] = radius * c + 0;
    d[j + 8] = radius * s + 0;
  }
}

// Constants: float32 roundings of the Cephes coefficients.

const SQRT_HALF = fround(0.707106781186547524);
const LOG_P0 = fround(7.0376836292e-2);
const LOG_P1 = fround(-1.151461031e-1);
const LOG_P2 = fround(1.167699874e-1);
const LOG_P3 = fround(-1.2420140846e-1);
const LOG_P4 = fround(1.4249322787e-1);
const LOG_P5 = fround(-1.6668057665e-1);
const LOG_P6 = fround(2.0000714765e-1);
const LOG_P7 = fround(-2.4999993993e-1);
const LOG_P8 = fround(3.3333331174e-1);
/** ln 2 split into a small correction and a head with few significant bits. */
const LOG_Q1 = fround(-2.1219444e-4);
const LOG_Q2 = fround(0.693359375);

/** 4/π, and -π/4 split in three parts for Cody–Waite range reduction. */
const FOPI = fround(1.27323954473516);
const MINUS_DP1 = fround(-0.78515625);
const MINUS_DP2 = fround(-2.4187564849853515625e-4);
const MINUS_DP3 = fround(-3.77489497744594108e-8);
const SIN_P0 = fround(-1.9515295891e-4);
const SIN_P1 = fround(8.3321608736e-3);
const SIN_P2 = fround(-1.6666654611e-1);
const COS_P0 = fround(2.443315711809948e-5);
const COS_P1 = fround(-1.388731625493765e-3);
const COS_P2 = fround(4.166664568298827e-2);

/**
 * Natural log of `x`, where x is a multiple of 2^-24 in (0, 1] — exactly the values `1 - u` that
 * a float32 uniform u produces. That restriction lets the exponent come from an integer bit
 * count instead of reinterpreting float bits.
 *
 * 1. Write x = mant * 2^e with mant in [0.5, 1).
 * 2. If mant < √½: e -= 1 and t = (mant - 1) + mant, else t = mant - 1.
 * 3. z = t²; y = p0·t + p1, then y = y·t + p_k for k = 2..8 (each an FMA); y = y·t.
 * 4. y = y·z + round(e·q1) (FMA); y = y - z/2.
 * 5. Result: e·q2 + (t + y) (FMA).
 */
export function logUnitGrid32(x: number): number {
  const m = x * 16777216; // the integer x * 2^24, in [1, 2^24]
  const bits = 32 - Math.clz32(m);
  const mant = m / (1 << bits); // exact: in [0.5, 1)
  let e = bits - 24;
  let t: number;
  if (mant < SQRT_HALF) {
    e -= 1;
    t = fround(fround(mant - 1) + mant);
  } else {
    t = fround(mant - 1);
  }
  const z = fround(t * t);
  let y = fma32(LOG_P0, t, LOG_P1);
  y = fma32(y, t, LOG_P2);
  y = fma32(y, t, LOG_P3);
  y = fma32(y, t, LOG_P4);
  y = fma32(y, t, LOG_P5);
  y = fma32(y, t, LOG_P6);
  y = fma32(y, t, LOG_P7);
  y = fma32(y, t, LOG_P8);
  y = fround(y * t);
  y = fma32(y, z, fround(e * LOG_Q1));
  y = fround(y - z * 0.5); // z/2 is exact
  return fma32(e, LOG_Q2, fround(t + y));
}

/**
 * Cody–Waite reduction of θ ≥ 0 by k·π/4, where k = trunc(θ·4/π) rounded up to even:
 * x = θ - k·DP1 - k·DP2 - k·DP3, each step one FMA.
 */
function reduceAngle32(theta: number, k: number): number {
  let x = fma32(k, MINUS_DP1, theta);
  x = fma32(k, MINUS_DP2, x);
  x = fma32(k, MINUS_DP3, x);
  return x;
}

/** Sine polynomial on the reduced angle x, z = x²: ((s0·z + s1)·z + s2)·z·x + x. */
function sinPoly32(x: number, z: number): number {
  let s = fma32(fma32(SIN_P0, z, SIN_P1), z, SIN_P2);
  s = fround(s * z);
  return fma32(s, x, x);
}

/** Cosine polynomial on z = x²: ((c0·z + c1)·z + c2)·z·z - z/2 + 1. */
function cosPoly32(z: number): number {
  let c = fma32(fma32(COS_P0, z, COS_P1), z, COS_P2);
  c = fround(c * z);
  c = fma32(c, z, -(z * 0.5));
  return fround(c + 1);
}

/**
 * Correctly rounded float32 fused multiply-add of float32 inputs.
 *
 * The product a·b of two float32 values is exact in double, so `a*b + c` in double is the exact
 * result rounded once to 53 bits, and rounding that to float32 is correct unless the double
 * landed exactly on a float32 tie (the midpoint of two neighbours) while the exact sum lies just
 * off it. Only then is the rounding error of the double sum (TwoSum) needed to pick the side.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  if (r === s) return r;
  // If s is a tie, the float32 on the other side of s lies at r + 2(s - r); otherwise that
  // point falls strictly between two float32 values. Both operations here are exact.
  const half = s - r;
  const other = r + 2 * half;
  if (fround(other) !== other) return r;
  // Exact error of s = p + c (Knuth's TwoSum): p + c = s + err.
  const pc = s - p;
  const err = p - (s - pc) + (c - pc);
  if (err !== 0 && err > 0 === half > 0) return other;
  return r;
}
