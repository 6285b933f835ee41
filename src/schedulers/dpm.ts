/**
 * Common ground of the exponential-integrator solvers (DPM-Solver multistep and single-step,
 * UniPC, DEIS): integer timesteps, σ tables from which α_t, σ_t and the half log-SNR
 * λ_t = log α_t - log σ_t are recovered, and a model-output history kept per run.
 */
import { ConfigError, InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import { mixNoise } from './add-noise.js';
import { trainSigmas } from './betas.js';
import { fround, roundHalfEven, torchExp32, torchLog32 } from './float32.js';
import { lin, type Terms, type Vec } from './ops.js';
import { configNumber } from './config.js';
import { Scheduler } from './current-run.js';
import { dataPrediction, noisePrediction, x0Limits, limitX0, type X0Limits } from './prediction.js';
import { SchedulerRun, timestepList, type SchedulerInit, type TimestepValue } from './scheduler.js';
import {
  alphaSigmaFromSigma,
  interpSigmas,
  lambdaOf,
  logSigmas,
  rampSigmas,
  sigmaRamp,
  sigmaToT,
  type SigmaRamp,
} from './sigmas.js';
import { npLinspace, spacedTimesteps, type TimestepSpacing } from './timesteps.js';

export type DpmClassName =
  | 'DPMSolverMultistepScheduler'
  | 'DPMSolverSinglestepScheduler'
  | 'UniPCMultistepScheduler'
  | 'DEISMultistepScheduler';

/** How the σ after the last step is chosen. */
export type FinalSigma =
  /** 0, or the training σ at t = 0 (`final_sigmas_type`), whatever the grid. */
  | 'config'
  /** UniPC: like `config`, except that after a ramp `sigma_min` means the ramp's last σ. */
  | 'config-ramp-last'
  /** DEIS: the training σ at t = 0 on the plain grid, the last σ repeated after a ramp. */
  | 'deis';

export interface DpmGridOptions {
  readonly spacing: TimestepSpacing;
  /** Top of the grid (T, or T minus DPM-Solver's λ-clipped count). */
  readonly lastTimestep: number;
  /** Round t(σ) after a Karras (and LU) ramp. */
  readonly roundRampTimesteps: boolean;
  readonly finalSigma: FinalSigma;
  /** `steps_offset` for leading spacing. */
  readonly stepsOffset: number;
  /** `final_sigmas_type` where the class has it. */
  readonly finalSigmasType: 'zero' | 'sigma_min';
  /** DPM-Solver multistep's `use_lu_lambdas`: λ evenly spaced (Lu et al. 2022, DPM-Solver++ §3.4). */
  readonly luLambdas?: boolean;
}

/** DPM-Solver variants: noise (`dpmsolver`) or data (`++`) prediction, ODE or SDE. */
export type DpmAlgorithm = 'dpmsolver' | 'dpmsolver++' | 'sde-dpmsolver' | 'sde-dpmsolver++';
/** How the second-order correction is weighted. */
export type DpmSolverType = 'midpoint' | 'heun';

/** The settings the two DPM-Solver classes choose their algorithm from. */
export interface DpmAlgorithmSettings {
  readonly algorithmType: DpmAlgorithm | 'deis';
  readonly solverType: DpmSolverType | 'logrho' | 'bh1' | 'bh2';
  readonly finalSigmasType: 'zero' | 'sigma_min';
}

/** α, σ and λ = log α - log σ at one point of the σ table. */
export interface DpmPoint {
  readonly alpha: number;
  readonly sigma: number;
  readonly lambda: number;
}

/**
 * Scalar pieces of an exponential-integrator step from s to t, h = λ_t - λ_s (float32, torch's
 * exp): the exponentials, the factor of x_s (σ_t/σ_s for data prediction, α_t/α_s for noise
 * prediction, times e^{-h} for the SDE) and the noise factor of the SDE variants.
 */
export function dpmScalars(algorithm: DpmAlgorithm, t: DpmPoint, s: DpmPoint) {
  const h = fround(t.lambda - s.lambda);
  const expNegH = torchExp32(-h);
  const expH = torchExp32(h);
  const expNeg2H = torchExp32(fround(-2 * h));
  const exp2H = torchExp32(fround(2 * h));
  const data = algorithm === 'dpmsolver++' || algorithm === 'sde-dpmsolver++';
  /** Factor of x_s. */
  const xCoef = data
    ? algorithm === 'dpmsolver++'
      ? fround(t.sigma / s.sigma)
      : fround(fround(t.sigma / s.sigma) * expNegH)
    : fround(t.alpha / s.alpha);
  /** Noise factor of the SDE variants. */
  const zCoef =
    algorithm === 'sde-dpmsolver++'
      ? fround(t.sigma * fround(Math.sqrt(fround(1 - expNeg2H))))
      : algorithm === 'sde-dpmsolver'
        ? fround(t.sigma * fround(Math.sqrt(fround(exp2H - 1))))
        : 0;
  return { h, expNegH, expH, expNeg2H, exp2H, xCoef, zCoef };
}

export abstract class DpmScheduler<C extends DpmClassName = DpmClassName> extends Scheduler<C> {
  readonly timestepDtype = 'int64' as const;
  override readonly missingTimestepIsLast = true;
  readonly trainSigmas: Float32Array;
  readonly sigmaRamp: SigmaRamp;
  readonly x0Limits: X0Limits;

  protected constructor(init: SchedulerInit<C>) {
    super(init);
    this.trainSigmas = trainSigmas(this.alphasCumprod);
    this.sigmaRamp = sigmaRamp(this.className, this.settings);
    this.x0Limits = x0Limits(this.settings);
  }

  /**
   * The inference grid:
   * 1. timesteps from the spacing over n + 1 points (the last dropped);
   * 2. σ: interpolated training sigmas, or a Karras / exponential / beta ramp over the whole
   *    training range (t mapped back from σ), or λ evenly spaced, or flow-matching sigmas;
   * 3. the final σ (see {@link FinalSigma}); timesteps cast to int64 like diffusers.
   */
  protected dpmGrid(n: number, o: DpmGridOptions): { timesteps: number[]; sigmas: Float32Array } {
    const T = this.numTrainTimesteps;
    let timesteps = spacedTimesteps(o.spacing, {
      trainTimesteps: T,
      steps: n,
      stepsOffset: o.stepsOffset,
      plusOne: true,
      lastTimestep: o.lastTimestep,
      roundLinspace: true,
    });
    const train = this.trainSigmas;
    const table = (): Float32Array => logSigmas(train);
    const a0 = at(this.alphasCumprod, 0);
    const atZero = Math.sqrt(fround(fround(1 - a0) / a0));
    let sigmas: number[];
    let ramped = true;
    if (this.sigmaRamp !== null) {
      // Hidden keys: diffusers reads `self.config.sigma_min` where a sibling class registered it.
      const lo = configNumber(this.config, 'sigma_min') ?? at(train, 0);
      const hi = configNumber(this.config, 'sigma_max') ?? at(train, train.length - 1);
      sigmas = rampSigmas(this.sigmaRamp, lo, hi, n);
      const logTable = table();
      timesteps = sigmas.map((s) => sigmaToT(s, logTable));
      if (this.sigmaRamp === 'karras' && o.roundRampTimesteps) timesteps = timesteps.map(roundHalfEven);
    } else if (o.luLambdas) {
      const logTable = table();
      const lambdaMin = at(logTable, 0);
      const lambdaMax = at(logTable, logTable.length - 1);
      sigmas = npLinspace(0, 1, n).map((r) => Math.exp(lambdaMax + r * (lambdaMin - lambdaMax)));
      timesteps = sigmas.map((s) => sigmaToT(s, logTable));
      if (o.roundRampTimesteps) timesteps = timesteps.map(roundHalfEven);
    } else if (this.settings.useFlowSigmas) {
      const shift = this.settings.flowShift;
      const raw = npLinspace(1, 1 / T, n + 1).map((a) => 1 - a);
      sigmas = raw.map((s) => (shift * s) / (1 + (shift - 1) * s)).reverse().slice(0, -1);
      timesteps = sigmas.map((s) => s * T);
    } else {
      sigmas = interpSigmas(timesteps, train);
      ramped = false;
    }
    // One σ per step, n ≥ 1 of them.
    const rampLast = at(sigmas, sigmas.length - 1);
    let last: number;
    if (o.finalSigma === 'deis') last = ramped ? rampLast : atZero;
    else if (o.finalSigmasType === 'zero') last = 0;
    else last = ramped && o.finalSigma === 'config-ramp-last' ? rampLast : atZero;
    return { timesteps: timesteps.map(Math.trunc), sigmas: Float32Array.from([...sigmas, last]) };
  }

  /** α_t, σ_t at a table σ: variance preserving, or (1 - σ, σ) for flow matching. */
  alphaSigma(sigma: number): { alpha: number; sigma: number } {
    return this.settings.useFlowSigmas ? { alpha: fround(1 - sigma), sigma } : alphaSigmaFromSigma(sigma);
  }

  /** α_t, σ_t and λ_t at a table σ. */
  alphaSigmaLambda(sigma: number): { alpha: number; sigma: number; lambda: number } {
    const a = this.alphaSigma(sigma);
    return { ...a, lambda: lambdaOf(a.alpha, a.sigma) };
  }

  /** Data prediction x̂₀ at table σ (flow: x - σ v), thresholded if configured. */
  x0At(sigma: number, modelOutput: Vec, sample: Vec, dims: readonly number[]): Vec {
    let x0: Vec;
    if (this.predictionType === 'flow_prediction') {
      x0 = lin([[1, sample], [-sigma, modelOutput]]);
    } else {
      const { alpha, sigma: s } = this.alphaSigma(sigma);
      x0 = dataPrediction(this.predictionType, alpha, s, modelOutput, sample);
    }
    return limitX0(x0, dims, this.x0Limits);
  }

  /** Noise prediction ε̂ at table σ. */
  epsAt(sigma: number, modelOutput: Vec, sample: Vec): Vec {
    if (this.predictionType === 'flow_prediction') {
      throw new InputError(`${this.className}: flow_prediction needs a data-prediction solver`);
    }
    const { alpha, sigma: s } = this.alphaSigma(sigma);
    return noisePrediction(this.predictionType, alpha, s, modelOutput, sample);
  }

  /**
   * The algorithm and solver of the DPM-Solver classes from their settings. Values of the sibling
   * classes map over the way diffusers does it (`deis` → `dpmsolver++`; `logrho`, `bh1`, `bh2`
   * → `midpoint`) and the config is updated to match. `final_sigmas_type` "zero" needs data
   * prediction.
   */
  protected dpmAlgorithm(s: DpmAlgorithmSettings): { algorithm: DpmAlgorithm; solverType: DpmSolverType } {
    if (s.algorithmType === 'deis') this.registerToConfig({ algorithm_type: 'dpmsolver++' });
    if (s.solverType !== 'midpoint' && s.solverType !== 'heun') this.registerToConfig({ solver_type: 'midpoint' });
    const result = {
      algorithm: s.algorithmType === 'deis' ? 'dpmsolver++' : s.algorithmType,
      solverType: s.solverType === 'heun' ? 'heun' : 'midpoint',
    } as const;
    if ((result.algorithm === 'dpmsolver' || result.algorithm === 'sde-dpmsolver') && s.finalSigmasType === 'zero') {
      throw new ConfigError(
        `${this.className}: final_sigmas_type "zero" is not supported for algorithm_type ` +
          `"${result.algorithm}"; use "sigma_min"`,
      );
    }
    return result;
  }

  /** λ-table clip of DPM-Solver: how many of the smallest timesteps have λ below `lambda_min_clipped`. */
  protected lambdaClippedCount(minLambda: number): number {
    const ac = this.alphasCumprod;
    const limit = fround(minLambda);
    let count = 0;
    // λ_t decreases with t; flipped it increases, so count the leading entries below the limit.
    for (let i = ac.length - 1; i >= 0; i--) {
      const a = ac[i]!;
      const lambda = fround(torchLog32(Math.sqrt(a)) - torchLog32(Math.sqrt(fround(1 - a))));
      if (!(lambda < limit)) break;
      count++;
    }
    return count;
  }
}

/** First `count` channels of a (B, C, ...) tensor (diffusers' `model_output[:, :3]`). */
export function firstChannels(t: TensorLike, count: number): Tensor<'float32'> {
  const data = t.data as Float32Array;
  const [batch, channels] = t.dims;
  if (batch === undefined || channels === undefined) {
    throw new InputError(`model_output must have dims (batch, channels, ...), got [${t.dims.join(', ')}]`);
  }
  const inner = t.dims.slice(2).reduce((p, q) => p * q, 1);
  const out = new Float32Array(batch * count * inner);
  for (let b = 0; b < batch; b++) {
    out.set(data.subarray(b * channels * inner, (b * channels + count) * inner), b * count * inner);
  }
  return new Tensor('float32', out, [batch, count, ...t.dims.slice(2)]);
}

/** Σ coef·term, plus the SDE noise term when `z` is given. */
export function withNoise(terms: Terms, zCoef: number, z: Vec | null): Vec {
  if (z !== null) terms.push([zCoef, z]);
  return lin(terms);
}

export abstract class DpmRun extends SchedulerRun {
  declare readonly scheduler: DpmScheduler;
  declare readonly sigmas: Float32Array;
  /** Converted model outputs of the last `solver_order` steps, oldest first (null = not yet). */
  protected modelOutputs: (Vec | null)[];
  /** How many steps have run, capped at the solver order (diffusers' `lower_order_nums`). */
  protected lowerOrderNums = 0;

  protected constructor(scheduler: DpmScheduler, n: number, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, { numInferenceSteps: n, timesteps, sigmas });
    this.modelOutputs = new Array<Vec | null>(scheduler.settings.solverOrder).fill(null);
  }

  /** Shift the history and append the newest converted output. */
  protected pushModelOutput(m: Vec): void {
    this.modelOutputs = [...this.modelOutputs.slice(1), m];
  }

  /** The k-th newest converted output (0 = newest). */
  protected history(k: number): Vec {
    const m = this.modelOutputs[this.modelOutputs.length - 1 - k];
    if (m === null || m === undefined) {
      throw new InputError(`${this.scheduler.className}: model output history is too short`);
    }
    return m;
  }

  protected countStep(): void {
    if (this.lowerOrderNums < this.scheduler.settings.solverOrder) this.lowerOrderNums += 1;
  }

  /** The run's σ at schedule index i (an InputError past the end of the schedule). */
  protected sigma(i: number): number {
    return this.scheduleAt(this.sigmas, i, 'sigmas');
  }

  /** α, σ and λ at the run's i-th sigma. */
  protected point(i: number): DpmPoint {
    return this.scheduler.alphaSigmaLambda(this.sigma(i));
  }

  /**
   * DPM-Solver-1 from σ_i to σ_{i+1} with the newest converted output (for ++: the DDIM step in
   * data form; SDE variants add `z` scaled by the solver's noise coefficient).
   */
  protected dpmFirstOrder(algorithm: DpmAlgorithm, i: number, x: Vec, z: Vec | null): Vec {
    const t = this.point(i + 1);
    const c = dpmScalars(algorithm, t, this.point(i));
    const m = this.history(0);
    switch (algorithm) {
      case 'dpmsolver++':
        return lin([[c.xCoef, x], [-fround(t.alpha * fround(c.expNegH - 1)), m]]);
      case 'dpmsolver':
        return lin([[c.xCoef, x], [-fround(t.sigma * fround(c.expH - 1)), m]]);
      case 'sde-dpmsolver++':
        return withNoise([[c.xCoef, x], [fround(t.alpha * fround(1 - c.expNeg2H)), m]], c.zCoef, z);
      case 'sde-dpmsolver':
        return withNoise([[c.xCoef, x], [-fround(2 * fround(t.sigma * fround(c.expH - 1))), m]], c.zCoef, z);
    }
  }

  addNoise(
    original: TensorLike,
    noise: TensorLike,
    timesteps: TimestepValue | readonly (number | bigint)[],
  ): Tensor<'float32'> {
    const coefs = this.noiseIndices(timestepList(timesteps)).map((i) => {
      const { alpha, sigma } = this.scheduler.alphaSigma(this.sigma(i));
      return [alpha, sigma] as const;
    });
    // x_t = α_t x₀ + σ_t ε (flow matching: (1 - σ) x₀ + σ ε).
    return mixNoise(original, noise, coefs);
  }
}
