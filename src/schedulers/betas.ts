/**
 * Training noise schedules: betas, alphas_cumprod and the Karras-style sigmas derived from them,
 * all in float32 the way diffusers builds them with torch.
 */
import { ConfigError } from '../errors.js';
import { fround, torchExp32, torchLinspace32 } from './float32.js';

export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | 'exp' | 'sigmoid';

/** Beta schedules every class accepts; Heun adds "exp", DDPM adds "sigmoid" (settings.ts). */
export const COMMON_BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];

/** The beta keys every class has, as `scheduler.settings` holds them. */
export interface BetaSettings {
  readonly numTrainTimesteps: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  /** Validated against the class's schedules when the settings were parsed. */
  readonly betaSchedule: BetaSchedule;
  readonly trainedBetas: readonly number[] | null;
}

export interface NoiseSchedule {
  readonly numTrainTimesteps: number;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
}

/**
 * `betas_for_alpha_bar`: discretise a continuous ᾱ(t) into T betas,
 * β_i = min(1 - ᾱ((i+1)/T) / ᾱ(i/T), max_beta), computed in double, stored as float32.
 */
function betasForAlphaBar(count: number, transform: 'cosine' | 'exp', maxBeta = 0.999): Float32Array {
  const alphaBar =
    transform === 'cosine'
      ? (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2
      : (t: number) => Math.exp(t * -12.0);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), maxBeta);
  }
  return out;
}

/** Cumulative product of (1 - β), accumulated in double and stored as float32 (torch.cumprod on CPU). */
export function cumprodOneMinus(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= fround(1 - betas[i]!);
    out[i] = acc;
  }
  return out;
}

/**
 * Rescale betas to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed", Algorithm 1), in float32:
 * 1. √ᾱ_t, shifted so the last is 0 and scaled so the first is unchanged.
 * 2. Square back to ᾱ, undo the cumulative product, β = 1 - α.
 */
function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const ac = cumprodOneMinus(betas);
  const sq = ac.map(Math.sqrt);
  // The schedule has num_train_timesteps ≥ 1 entries (settings.ts), so both ends exist.
  const first = sq[0]!;
  const last = sq[n - 1]!;
  const scale = fround(first / fround(first - last));
  const bar = new Float32Array(n);
  // sq, bar and out all have length n, and every index below is in [0, n).
  for (let i = 0; i < n; i++) {
    const v = fround(fround(sq[i]! - last) * scale);
    bar[i] = v * v;
  }
  const out = new Float32Array(n);
  out[0] = fround(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = fround(1 - fround(bar[i]! / bar[i - 1]!));
  return out;
}

/**
 * Build the training schedule from the beta settings.
 *
 * @param zeroSnr rescale to zero terminal SNR (`rescale_betas_zero_snr`)
 * @param clampLastAlpha also set ᾱ_T = 2^-24 after rescaling, as the sigma-based classes do
 */
export function noiseSchedule(
  className: string,
  s: BetaSettings,
  opts: { zeroSnr?: boolean | undefined; clampLastAlpha?: boolean | undefined } = {},
): NoiseSchedule {
  const numTrainTimesteps = s.numTrainTimesteps;
  const trained = s.trainedBetas;
  let betas: Float32Array;
  if (trained !== null) {
    if (trained.length !== numTrainTimesteps) {
      throw new ConfigError(
        `${className}: trained_betas has ${trained.length} values but num_train_timesteps is ${numTrainTimesteps}`,
      );
    }
    betas = Float32Array.from(trained);
  } else {
    betas = buildBetas(s.betaSchedule, s.betaStart, s.betaEnd, numTrainTimesteps);
  }
  if (opts.zeroSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprodOneMinus(betas);
  if (opts.zeroSnr && opts.clampLastAlpha) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  return { numTrainTimesteps, betas, alphasCumprod };
}

function buildBetas(schedule: BetaSchedule, start: number, end: number, count: number): Float32Array {
  switch (schedule) {
    case 'linear':
      return torchLinspace32(start, end, count);
    case 'scaled_linear':
      // linspace over √β, then squared in float32.
      return torchLinspace32(Math.sqrt(start), Math.sqrt(end), count).map((b) => b * b);
    case 'squaredcos_cap_v2':
      return betasForAlphaBar(count, 'cosine');
    case 'exp':
      return betasForAlphaBar(count, 'exp');
    case 'sigmoid': {
      // sigmoid(linspace(-6, 6)) * (end - start) + start, all float32.
      const x = torchLinspace32(-6, 6, count);
      const range = fround(end - start);
      const lo = fround(start);
      return x.map((v) => fround(fround(fround(1 / fround(1 + torchExp32(-v))) * range) + lo));
    }
  }
}

/** Karras-style training sigmas σ_t = √((1 - ᾱ_t)/ᾱ_t), float32, indexed by training timestep. */
export function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(fround(fround(1 - a) / a)));
}
