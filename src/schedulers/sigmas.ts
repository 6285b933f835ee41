/**
 * Sigma-space helpers shared by the Karras-style (Euler, LMS, Heun, KDPM2) and DPM-Solver-style
 * (DPM-Solver, UniPC, DEIS) schedulers: interpolation of the training sigmas, the Karras /
 * exponential / beta sigma ramps, the inverse map σ → t, and σ → (α_t, σ_t, λ_t).
 */
import { ConfigError } from '../errors.js';
import { fround, numpyLog32, torchLog32 } from './float32.js';
import { npInterpOnIndex, npLinspace } from './timesteps.js';

/** σ(t) for each (possibly fractional) timestep, by `np.interp` over the training sigmas (float64). */
export function interpSigmas(timesteps: readonly number[], train: Float32Array): number[] {
  return timesteps.map((t) => npInterpOnIndex(t, train));
}

/** `np.log` of the float32 training sigmas (numpy's float32 kernel), used by σ → t. */
export function logSigmas(train: Float32Array): Float32Array {
  return train.map(numpyLog32);
}

/**
 * Karras et al. 2022 (EDM), eq. 5 with ρ = 7:
 * σ_i = (σ_max^{1/ρ} + i/(n-1) · (σ_min^{1/ρ} - σ_max^{1/ρ}))^ρ.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  const rho = 7.0;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, steps).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Exponentially spaced sigmas: exp(linspace(log σ_max, log σ_min, n)). */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  return npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), steps).map(Math.exp);
}

/**
 * "Beta Sampling is All You Need" (Lee et al. 2024): σ_i = σ_min + F⁻¹(1 - i/(n-1)) (σ_max - σ_min)
 * with F the Beta(0.6, 0.6) CDF.
 */
export function betaSigmas(sigmaMin: number, sigmaMax: number, steps: number): number[] {
  return npLinspace(0, 1, steps).map((r) => sigmaMin + betaPpf(1 - r, 0.6, 0.6) * (sigmaMax - sigmaMin));
}

/** Which ramp replaces the interpolated sigmas, from the `use_*_sigmas` flags. */
export type SigmaRamp = 'karras' | 'exponential' | 'beta' | null;

/** The `use_*_sigmas` flags of the classes that have them. */
export interface SigmaRampSettings {
  readonly useKarrasSigmas: boolean;
  readonly useExponentialSigmas: boolean;
  readonly useBetaSigmas: boolean;
}

/** The ramp the flags turn on; more than one is a `ConfigError`, as in diffusers. */
export function sigmaRamp(className: string, s: SigmaRampSettings): SigmaRamp {
  const flags: [SigmaRamp, boolean][] = [
    ['beta', s.useBetaSigmas],
    ['exponential', s.useExponentialSigmas],
    ['karras', s.useKarrasSigmas],
  ];
  const on = flags.filter(([, v]) => v);
  if (on.length > 1) {
    throw new ConfigError(
      `${className}: only one of use_beta_sigmas, use_exponential_sigmas, use_karras_sigmas can be true`,
    );
  }
  const [only] = on;
  return only === undefined ? null : only[0];
}

/** Apply a ramp between σ_min and σ_max. */
export function rampSigmas(ramp: Exclude<SigmaRamp, null>, sigmaMin: number, sigmaMax: number, steps: number): number[] {
  switch (ramp) {
    case 'karras':
      return karrasSigmas(sigmaMin, sigmaMax, steps);
    case 'exponential':
      return exponentialSigmas(sigmaMin, sigmaMax, steps);
    case 'beta':
      return betaSigmas(sigmaMin, sigmaMax, steps);
  }
}

/**
 * diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma matches log σ, by
 * linear interpolation between the two neighbouring training log-sigmas.
 *
 * 1. log σ in double, compared and subtracted in float32 (numpy/torch promote to the float32
 *    table's dtype).
 * 2. low = last index with logσ_low ≤ log σ (clipped to T-2), high = low + 1.
 * 3. w = (logσ_low - log σ)/(logσ_low - logσ_high) in float32, clipped to [0, 1].
 * 4. t = (1 - w)·low + w·high: in float64 when σ came from numpy, in float32 when σ and the
 *    table were torch tensors (KDPM2's interpolated sigmas).
 */
export function sigmaToT(sigma: number, logTable: Float32Array, opts: { float32Result?: boolean } = {}): number {
  const logSigma = fround(Math.log(Math.max(sigma, 1e-10)));
  const n = logTable.length;
  let low = 0;
  for (let j = 0; j < n; j++) if (logTable[j]! <= logSigma) low = j;
  low = Math.min(low, n - 2);
  const high = low + 1;
  // The table has num_train_timesteps ≥ 1 entries, so high = low + 1 ≤ n - 1 is in range and so is
  // low, except that one training timestep clips low to -1, which diffusers' numpy/torch indexing
  // reads as the last entry.
  const lo = logTable[low < 0 ? low + n : low]!;
  const hi = logTable[high]!;
  let w = fround(fround(lo - logSigma) / fround(lo - hi));
  w = Math.min(Math.max(w, 0), 1);
  const oneMinusW = fround(1 - w);
  if (opts.float32Result) return fround(fround(oneMinusW * low) + fround(w * high));
  return oneMinusW * low + w * high;
}

/** α_t, σ_t of the variance-preserving process at Karras sigma σ: α = 1/√(σ²+1), σ_t = σ·α (float32). */
export function alphaSigmaFromSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = fround(1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1))));
  return { alpha, sigma: fround(sigma * alpha) };
}

/** Half log-SNR λ = log α - log σ (float32, torch's log). */
export function lambdaOf(alpha: number, sigma: number): number {
  return fround(torchLog32(alpha) - torchLog32(sigma));
}

// ---------------------------------------------------------------------------------------------
// Beta distribution quantile, for `use_beta_sigmas` (scipy.stats.beta.ppf).
// ---------------------------------------------------------------------------------------------

/** log Γ(x) by the Lanczos approximation (g = 7, 9 terms), accurate to ~1e-15 for x > 0. */
function logGamma(x: number): number {
  // Nine coefficients; the loop below reads c[1] … c[8].
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ] as const;
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = c[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the regularized incomplete beta function (modified Lentz). */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b). */
function betaCdf(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(x, a, b)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(1 - x, b, a)) / b;
}

/** Quantile of Beta(a, b) by bisection to full double precision. */
function betaPpf(p: number, a: number, b: number): number {
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 200 && hi - lo > 0; i++) {
    const mid = 0.5 * (lo + hi);
    if (mid === lo || mid === hi) break;
    if (betaCdf(mid, a, b) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}
