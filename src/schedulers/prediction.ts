/**
 * What the denoiser predicts (`prediction_type`) and how each scheduler family turns it into the
 * predicted clean sample x̂₀ and noise ε̂. Three parametrizations of the same forward process
 * x_t = α_t x₀ + σ_t ε appear in diffusers:
 *
 * - ᾱ-form (DDPM, DDIM, PNDM, LCM): α_t = √ᾱ_t, σ_t = √(1 - ᾱ_t);
 * - Karras σ-form (Euler, LMS, Heun, KDPM2): the input is x_t/α_t = x₀ + σ ε with σ = σ_t/α_t;
 * - DPM-Solver form (DPM-Solver, UniPC, DEIS): α_t, σ_t recovered from σ.
 *
 * v-prediction (Salimans & Ho 2022, "Progressive Distillation", §4) is v = α_t ε - σ_t x₀.
 */
import { InputError } from '../errors.js';
import { fround } from './float32.js';
import { clamp, div, lin, thresholdSample, type Vec } from './ops.js';

/** What the model predicts; `flow_prediction` (flow-matching velocity) only for the DPM-Solver family. */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample' | 'flow_prediction';
/** The kinds most classes implement. */
export const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample'] as const satisfies readonly PredictionType[];

function unsupported(kind: PredictionType): never {
  throw new InputError(`prediction_type ${JSON.stringify(kind)} is not supported here`);
}

/**
 * ᾱ-form: x̂₀ and ε̂ from the model output at cumulative alpha `alphaProd` (float32).
 * 1. epsilon: x̂₀ = (x - √(1-ᾱ) ε) / √ᾱ
 * 2. sample:  ε̂ = (x - √ᾱ x̂₀) / √(1-ᾱ)
 * 3. v:       x̂₀ = √ᾱ x - √(1-ᾱ) v,  ε̂ = √ᾱ v + √(1-ᾱ) x
 */
export function predictFromAlphaProd(
  kind: PredictionType,
  alphaProd: number,
  modelOutput: Vec,
  sample: Vec,
): { x0: Vec; eps: Vec } {
  const betaProd = fround(1 - alphaProd);
  const sa = fround(Math.sqrt(alphaProd));
  const sb = fround(Math.sqrt(betaProd));
  switch (kind) {
    case 'epsilon':
      return { x0: div(lin([[1, sample], [-sb, modelOutput]]), sa), eps: modelOutput };
    case 'sample':
      return { x0: modelOutput, eps: div(lin([[1, sample], [-sa, modelOutput]]), sb) };
    case 'v_prediction':
      return {
        x0: lin([[sa, sample], [-sb, modelOutput]]),
        eps: lin([[sa, modelOutput], [sb, sample]]),
      };
    default:
      return unsupported(kind);
  }
}

/**
 * Karras σ-form: x̂₀ from the model output at noise level σ (float32).
 * 1. epsilon: x̂₀ = x - σ ε
 * 2. v:       x̂₀ = v · (-σ/√(σ²+1)) + x/(σ²+1)
 * 3. sample:  x̂₀ = model output
 */
export function predictX0FromSigma(kind: PredictionType, sigma: number, modelOutput: Vec, sample: Vec): Vec {
  switch (kind) {
    case 'epsilon':
      return lin([[1, sample], [-sigma, modelOutput]]);
    case 'v_prediction': {
      const s2p1 = fround(fround(sigma * sigma) + 1);
      const c = fround(-sigma / fround(Math.sqrt(s2p1)));
      const a = lin([[c, modelOutput]]);
      const b = div(sample, s2p1);
      return lin([[1, a], [1, b]]);
    }
    case 'sample':
      return modelOutput;
    default:
      return unsupported(kind);
  }
}

/**
 * DPM-Solver form, data prediction: x̂₀ from the model output at (α_t, σ_t).
 * 1. epsilon: x̂₀ = (x - σ_t ε)/α_t
 * 2. v:       x̂₀ = α_t x - σ_t v
 * 3. sample:  x̂₀ = model output
 */
export function dataPrediction(kind: PredictionType, alpha: number, sigma: number, modelOutput: Vec, sample: Vec): Vec {
  switch (kind) {
    case 'epsilon':
      return div(lin([[1, sample], [-sigma, modelOutput]]), alpha);
    case 'v_prediction':
      return lin([[alpha, sample], [-sigma, modelOutput]]);
    case 'sample':
      return modelOutput;
    default:
      return unsupported(kind);
  }
}

/**
 * DPM-Solver form, noise prediction: ε̂ from the model output at (α_t, σ_t).
 * 1. epsilon: ε̂ = model output
 * 2. sample:  ε̂ = (x - α_t x̂₀)/σ_t
 * 3. v:       ε̂ = α_t v + σ_t x
 */
export function noisePrediction(kind: PredictionType, alpha: number, sigma: number, modelOutput: Vec, sample: Vec): Vec {
  switch (kind) {
    case 'epsilon':
      return modelOutput;
    case 'sample':
      return div(lin([[1, sample], [-alpha, modelOutput]]), sigma);
    case 'v_prediction':
      return lin([[alpha, modelOutput], [sigma, sample]]);
    default:
      return unsupported(kind);
  }
}

/** How x̂₀ is post-processed: dynamic thresholding, plain clipping, or neither. */
export interface X0Limits {
  readonly thresholding: boolean;
  readonly ratio: number;
  readonly maxValue: number;
  readonly clip: boolean;
  readonly clipRange: number;
}

/** The x̂₀ keys of `scheduler.settings`; a class without a key (Heun has no thresholding) lacks the field. */
export interface X0Settings {
  readonly thresholding?: boolean;
  readonly dynamicThresholdingRatio?: number;
  readonly sampleMaxValue?: number;
  readonly clipSample?: boolean;
  readonly clipSampleRange?: number;
}

/** Thresholding / clipping as the class's settings configure them (off where it lacks the keys). */
export function x0Limits(s: X0Settings): X0Limits {
  return {
    thresholding: s.thresholding ?? false,
    ratio: s.dynamicThresholdingRatio ?? 0.995,
    maxValue: s.sampleMaxValue ?? 1,
    clip: s.clipSample ?? false,
    clipRange: s.clipSampleRange ?? 1,
  };
}

/** Apply thresholding (which takes precedence) or clipping to x̂₀. */
export function limitX0(x0: Vec, dims: readonly number[], l: X0Limits): Vec {
  if (l.thresholding) return thresholdSample(x0, dims, l.ratio, l.maxValue);
  if (l.clip) return clamp(x0, -fround(l.clipRange), fround(l.clipRange));
  return x0;
}
