/**
 * Double-precision log, sin and cos that round correctly (barring results within ~2^-75 of a
 * rounding tie), standing in for the C library calls in torch's float64 Box–Muller code.
 *
 * Why not `Math.log` / `Math.sin` / `Math.cos`: V8's versions (fdlibm ports) are within one ulp
 * but round the wrong way for 3–6% of inputs, which flipped low bits in about one float64 normal
 * in ten against torch. glibc's double functions, which torch's reference outputs came from, are
 * correctly rounded except in roughly 0.1% of cases, so correct rounding is the closest portable
 * match: about 0.16% of float64 normals still differ from glibc-based output, by 1–2 ulp. (The
 * float32 outputs are unaffected: the float32 kernel does not use these functions, and the float32
 * scalar path rounds the double result to float32, which hides a 1-ulp double difference.)
 *
 * Each function is evaluated in double-double arithmetic (an unevaluated sum hi + lo carrying
 * ~106 bits) and rounded once at the end. Used only on the float64 and scalar paths, which are
 * rare and small in diffusion pipelines; clarity wins over speed here.
 */

/** A double-double value: the exact sum hi + lo, with |lo| ≤ ulp(hi) / 2 once normalised. */
interface DD {
  readonly hi: number;
  readonly lo: number;
}

// ---------------------------------------------------------------------------------------------
// Error-free transformations and double-double arithmetic (Dekker, Knuth; as in the QD library)
// ---------------------------------------------------------------------------------------------

/** a + b exactly, for any a and b. */
function twoSum(a: number, b: number): DD {
  const s = a + b;
  const bb = s - a;
  return { hi: s, lo: a - (s - bb) + (b - bb) };
}

/** a + b exactly, when |a| ≥ |b| (or a is 0). */
function quickTwoSum(a: number, b: number): DD {
  const s = a + b;
  return { hi: s, lo: b - (s - a) };
}

/** Veltkamp split constant 2^27 + 1: splits a double into two 26-bit halves. */
const SPLITTER = 134217729;

/** a · b exactly (Dekker's product; inputs well inside the double range). */
function twoProd(a: number, b: number): DD {
  const p = a * b;
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return { hi: p, lo: ah * bh - p + ah * bl + al * bh + al * bl };
}

function dd(hi: number, lo = 0): DD {
  return { hi, lo };
}

function ddNeg(x: DD): DD {
  return { hi: -x.hi, lo: -x.lo };
}

function ddAdd(x: DD, y: DD): DD {
  const s = twoSum(x.hi, y.hi);
  const t = twoSum(x.lo, y.lo);
  const u = quickTwoSum(s.hi, s.lo + t.hi);
  return quickTwoSum(u.hi, u.lo + t.lo);
}

function ddMul(x: DD, y: DD): DD {
  const p = twoProd(x.hi, y.hi);
  return quickTwoSum(p.hi, p.lo + (x.hi * y.lo + x.lo * y.hi));
}

function ddMulNum(x: DD, b: number): DD {
  const p = twoProd(x.hi, b);
  return quickTwoSum(p.hi, p.lo + x.lo * b);
}

/** x / y by long division: three quotient digits, each correcting the remainder. */
function ddDiv(x: DD, y: DD): DD {
  const q1 = x.hi / y.hi;
  let r = ddAdd(x, ddNeg(ddMulNum(y, q1)));
  const q2 = r.hi / y.hi;
  r = ddAdd(r, ddNeg(ddMulNum(y, q2)));
  const q3 = r.hi / y.hi;
  return ddAdd(quickTwoSum(q1, q2), dd(q3));
}

/** 1/n as a double-double. */
const reciprocal = (n: number): DD => ddDiv(dd(1), dd(n));

// ---------------------------------------------------------------------------------------------
// log
// ---------------------------------------------------------------------------------------------

/** ln 2 as a double-double. */
const LN2 = dd(0.6931471805599453, 2.3190468138462996e-17);
const SQRT2 = Math.SQRT2;
const SQRT_HALF = Math.SQRT1_2;

/** 1/3, 1/5, 1/7: the series coefficients kept in double-double. */
const INV3 = reciprocal(3);
const INV5 = reciprocal(5);
const INV7 = reciprocal(7);

/**
 * Natural logarithm of a double.
 *
 * 1. Split x = 2^k · m with m in [√½, √2).
 * 2. log m = 2·atanh(s) with s = (m - 1)/(m + 1), |s| ≤ 0.172:
 *    log m = 2s · (1 + z/3 + z²/5 + z³/7 + z⁴·R), z = s², in double-double except the tail R,
 *    which is small enough (< 2^-23 relative) to sum in plain doubles.
 * 3. log x = k·ln 2 + log m, rounded once.
 */
export function log64(x: number): number {
  if (!(x > 0) || x === Infinity) return Math.log(x); // NaN, ±0, negatives, +∞
  let k = 0;
  if (x < 2 ** -1000) {
    x *= 2 ** 100; // keep subnormals exact under the scaling below
    k = -100;
  }
  // Math.log2 is only a guess for the exponent; the two loops fix it up exactly.
  let e = Math.round(Math.log2(x));
  let m = x * 2 ** -e;
  while (m < SQRT_HALF) {
    m *= 2;
    e -= 1;
  }
  while (m >= SQRT2) {
    m /= 2;
    e += 1;
  }
  k += e;
  // m - 1 is exact (Sterbenz); m + 1 is kept exact as a double-double.
  const s = ddDiv(dd(m - 1), twoSum(m, 1));
  const z = ddMul(s, s);
  const zt = z.hi;
  // Tail R = Σ_{n≥4} z^(n-4)/(2n+1), enough terms for z ≤ 0.0295.
  let tail = 1 / 31;
  for (let n = 29; n >= 9; n -= 2) tail = 1 / n + zt * tail;
  let series = ddAdd(INV7, ddMulNum(z, tail));
  series = ddAdd(INV5, ddMul(z, series));
  series = ddAdd(INV3, ddMul(z, series));
  series = ddAdd(dd(1), ddMul(z, series));
  const logM = ddMul(ddMulNum(s, 2), series);
  const kLn2 = ddAdd(twoProd(k, LN2.hi), dd(k * LN2.lo));
  return ddAdd(kLn2, logM).hi;
}

// ---------------------------------------------------------------------------------------------
// sin / cos
// ---------------------------------------------------------------------------------------------

/**
 * π/2 in four parts (fdlibm's pio2_1, pio2_2, pio2_3, pio2_3t). The first three have 33
 * significant bits, so q times each is exact for |q| < 2^20; together they carry π/2 to ~2^-160.
 */
const PIO2_1 = 1.57079632673412561417e0;
const PIO2_2 = 6.0771005063039659766e-11;
const PIO2_3 = 2.0222662487111664558e-21;
const PIO2_4 = 8.47842766036889956997e-32;
const TWO_OVER_PI = 2 / Math.PI;
/** Beyond this |θ| the exact-product argument above no longer holds; fall back to Math. */
const MAX_REDUCED = 2 ** 19;

/** n! for small n; exact in a double up to n = 18. */
function factorial(n: number): number {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}
/**
 * 1/n! for n = 3..9 in double-double, as named constants rather than a table so that the
 * kernels below read no index that the compiler cannot check. The tails use plain doubles.
 */
const INV_FACT_3 = reciprocal(factorial(3));
const INV_FACT_4 = reciprocal(factorial(4));
const INV_FACT_5 = reciprocal(factorial(5));
const INV_FACT_6 = reciprocal(factorial(6));
const INV_FACT_7 = reciprocal(factorial(7));
const INV_FACT_8 = reciprocal(factorial(8));
const INV_FACT_9 = reciprocal(factorial(9));
/** 1/n! as a double, good enough for terms below 2^-20 of the result. */
function invFactorial(n: number): number {
  return 1 / factorial(n);
}
/** Tails of the Taylor series in z = r², from the z⁵ term on, alternating in sign. */
const SIN_TAIL = [11, 13, 15, 17, 19, 21, 23].map((n, i) => (i % 2 === 0 ? -1 : 1) * invFactorial(n));
const COS_TAIL = [10, 12, 14, 16, 18, 20, 22].map((n, i) => (i % 2 === 0 ? -1 : 1) * invFactorial(n));

/** Horner evaluation of `coefs[0] + z·coefs[1] + …` in doubles. */
function hornerTail(coefs: readonly number[], z: number): number {
  // Only called with the non-empty SIN_TAIL/COS_TAIL, and i stays in [0, length): the `!`s are
  // true claims, kept local to this per-sample loop.
  let acc = coefs[coefs.length - 1]!;
  for (let i = coefs.length - 2; i >= 0; i--) acc = coefs[i]! + z * acc;
  return acc;
}

/**
 * θ = q·π/2 + r with integer q and |r| ≤ π/4 (Cody–Waite in four steps). θ - q·PIO2_1 is exact
 * because both are within a factor of two of each other (or q is 0).
 */
function reduce(theta: number): { q: number; r: DD } {
  const q = Math.round(theta * TWO_OVER_PI);
  let r = twoSum(theta - q * PIO2_1, -q * PIO2_2);
  r = ddAdd(r, dd(-q * PIO2_3));
  r = ddAdd(r, dd(-q * PIO2_4));
  return { q, r };
}

/** sin r = r·(1 - z/3! + z²/5! - z³/7! + z⁴/9! + z⁵·tail), z = r², |r| ≤ π/4. */
function sinKernel(r: DD): number {
  const z = ddMul(r, r);
  let acc = ddAdd(INV_FACT_9, ddMulNum(z, hornerTail(SIN_TAIL, z.hi)));
  acc = ddAdd(ddNeg(INV_FACT_7), ddMul(z, acc));
  acc = ddAdd(INV_FACT_5, ddMul(z, acc));
  acc = ddAdd(ddNeg(INV_FACT_3), ddMul(z, acc));
  acc = ddAdd(dd(1), ddMul(z, acc));
  return ddMul(r, acc).hi;
}

/** cos r = 1 - z/2! + z²/4! - z³/6! + z⁴/8! + z⁵·tail, z = r², |r| ≤ π/4. */
function cosKernel(r: DD): number {
  const z = ddMul(r, r);
  let acc = ddAdd(INV_FACT_8, ddMulNum(z, hornerTail(COS_TAIL, z.hi)));
  acc = ddAdd(ddNeg(INV_FACT_6), ddMul(z, acc));
  acc = ddAdd(INV_FACT_4, ddMul(z, acc));
  acc = ddAdd(dd(-0.5), ddMul(z, acc));
  acc = ddAdd(dd(1), ddMul(z, acc));
  return acc.hi;
}

/** sin θ; quadrant q selects ±sin r or ±cos r. */
export function sin64(theta: number): number {
  if (!(Math.abs(theta) < MAX_REDUCED)) return Math.sin(theta);
  const { q, r } = reduce(theta);
  switch (q & 3) {
    case 0:
      return sinKernel(r);
    case 1:
      return cosKernel(r);
    case 2:
      return -sinKernel(r);
    default:
      return -cosKernel(r);
  }
}

/** cos θ; quadrant q selects ±cos r or ±sin r. */
export function cos64(theta: number): number {
  if (!(Math.abs(theta) < MAX_REDUCED)) return Math.cos(theta);
  const { q, r } = reduce(theta);
  switch (q & 3) {
    case 0:
      return cosKernel(r);
    case 1:
      return -sinKernel(r);
    case 2:
      return -cosKernel(r);
    default:
      return sinKernel(r);
  }
}
