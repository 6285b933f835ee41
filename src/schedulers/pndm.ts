/**
 * PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"),
 * diffusers' `PNDMScheduler`: Runge–Kutta warm-up steps (unless `skip_prk_steps`) followed by
 * linear multistep (PLMS) steps.
 */
import type { TensorLike } from '../tensor.js';
import { AlphaProdRun, AlphaProdScheduler } from './alpha-prod.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { div, like, lin, scale, type Vec } from './ops.js';
import { timestepNumber, type StepOptions, type StepOutput, type TimestepValue } from './scheduler.js';
import { npArange, npLinspace } from './timesteps.js';
import { roundHalfEven } from './float32.js';

/** Number of model outputs the PLMS formula combines, and of Runge–Kutta warm-up steps. */
const PNDM_ORDER = 4;

export class PNDMScheduler extends AlphaProdScheduler<'PNDMScheduler'> {
  readonly order = 1;
  readonly finalAlphaCumprod: number;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'PNDMScheduler', config });
    this.finalAlphaCumprod = this.settings.setAlphaToOne ? 1 : this.alphaProdAt(0);
  }

  /**
   * 1. The base grid, ascending (PNDM keeps numpy's ascending order until the end).
   * 2. Without PRK: the PLMS list repeats the second-lowest timestep (the warm-up pair) and is
   *    reversed. With PRK: the top four grid points each give a (t, t + T/n/2) pair, expanded to
   *    the 12 Runge–Kutta calls, then the remaining grid points for PLMS.
   */
  protected makeRun(n: number): PNDMRun {
    const T = this.numTrainTimesteps;
    const offset = this.settings.stepsOffset;
    let base: number[];
    switch (this.settings.timestepSpacing) {
      case 'linspace':
        base = npLinspace(0, T - 1, n).map(roundHalfEven);
        break;
      case 'leading': {
        const ratio = Math.floor(T / n);
        base = Array.from({ length: n }, (_, i) => i * ratio + offset);
        break;
      }
      case 'trailing':
        base = npArange(T, 0, -T / n)
          .map(roundHalfEven)
          .reverse()
          .map((t) => t - 1);
        break;
    }
    let prk: number[] = [];
    let plms: number[];
    if (this.settings.skipPrkSteps) {
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(T / n) / 2);
      const pairs = base.slice(-PNDM_ORDER).flatMap((t) => [t, t + half]);
      prk = pairs
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      plms = base.slice(0, -3).reverse();
    }
    return new PNDMRun(this, n, prk, plms);
  }

  /**
   * x_prev from x_t and ε (the "transfer" φ of the PNDM paper, eq. 11):
   * x_prev = √(ᾱ_prev/ᾱ_t) x_t - (ᾱ_prev - ᾱ_t) ε / (ᾱ_t √(1-ᾱ_prev) + √(ᾱ_t (1-ᾱ_t) ᾱ_prev)).
   */
  prevSample(sample: Vec, t: number, prevT: number, modelOutput: Vec): Vec {
    const a = this.alphaProdAt(t);
    const aPrev = prevT >= 0 ? this.alphaProdAt(prevT) : this.finalAlphaCumprod;
    const b = fround(1 - a);
    const bPrev = fround(1 - aPrev);
    let eps = modelOutput;
    if (this.predictionType === 'v_prediction') {
      eps = lin([[fround(Math.sqrt(a)), modelOutput], [fround(Math.sqrt(b)), sample]]);
    }
    const sampleCoeff = fround(Math.sqrt(fround(aPrev / a)));
    const denom = fround(fround(a * fround(Math.sqrt(bPrev))) + fround(Math.sqrt(fround(fround(a * b) * aPrev))));
    const correction = div(lin([[fround(aPrev - a), eps]]), denom);
    return lin([[sampleCoeff, sample], [-1, correction]]);
  }
}

export class PNDMRun extends AlphaProdRun {
  declare readonly scheduler: PNDMScheduler;
  /** Runge–Kutta timesteps (empty with `skip_prk_steps`) and linear-multistep timesteps. */
  readonly prkTimesteps: readonly number[];
  readonly plmsTimesteps: readonly number[];
  private counter = 0;
  /** Past model outputs ε (diffusers' `ets`), newest last. */
  private ets: Vec[] = [];
  private curSample: Vec | null = null;
  private curModelOutput: Vec | null = null;

  constructor(scheduler: PNDMScheduler, n: number, prk: number[], plms: number[]) {
    super(scheduler, { numInferenceSteps: n, timesteps: [...prk, ...plms] });
    this.prkTimesteps = Object.freeze(prk);
    this.plmsTimesteps = Object.freeze(plms);
  }

  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    void opts;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const t = timestepNumber(timestep);
    const inPrk = this.counter < this.prkTimesteps.length && !this.scheduler.settings.skipPrkSteps;
    const prev = inPrk ? this.stepPrk(mo, t, x) : this.stepPlms(mo, t, x);
    this.counter += 1;
    return { prevSample: like(dims, prev) };
  }

  /**
   * Fourth-order Runge–Kutta over pairs of half steps: ε₁..ε₄ are accumulated with weights
   * 1/6, 1/3, 1/3, 1/6 and every sub-step starts from the sample of the first one.
   */
  private stepPrk(mo: Vec, t: number, x: Vec): Vec {
    const s = this.scheduler;
    const half = Math.floor(Math.floor(s.numTrainTimesteps / this.numInferenceSteps) / 2);
    const prevT = t - (this.counter % 2 === 1 ? 0 : half);
    // Only called while counter < prkTimesteps.length, and ⌊counter/4⌋·4 ≤ counter.
    const baseT = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    const accumulate = (w: number): Vec => {
      const term = scale(mo, fround(w));
      return this.curModelOutput === null ? term : lin([[1, this.curModelOutput], [1, term]]);
    };
    let eps = mo;
    switch (this.counter % 4) {
      case 0:
        this.curModelOutput = accumulate(1 / 6);
        this.ets.push(mo);
        this.curSample = x;
        break;
      case 1:
      case 2:
        this.curModelOutput = accumulate(1 / 3);
        break;
      case 3:
        eps = accumulate(1 / 6);
        this.curModelOutput = null;
        break;
    }
    return s.prevSample(this.curSample ?? x, baseT, prevT, eps);
  }

  /**
   * Linear multistep (Adams–Bashforth) on ε with the history available: orders 1–4,
   * coefficients (1), (3, -1)/2, (23, -16, 5)/12, (55, -59, 37, -9)/24. Without PRK the second
   * call re-evaluates the first step with the average of two outputs (a Heun-like warm-up).
   */
  private stepPlms(mo: Vec, t: number, x: Vec): Vec {
    const s = this.scheduler;
    const stride = Math.floor(s.numTrainTimesteps / this.numInferenceSteps);
    let from = t;
    let prevT = t - stride;
    if (this.counter !== 1) {
      this.ets = [...this.ets.slice(-3), mo];
    } else {
      prevT = t;
      from = t + stride;
    }
    const e = this.ets;
    const n = e.length;
    let sample = x;
    let eps: Vec;
    // Each branch reads only indices below the n it tests for.
    if (n === 1 && this.counter === 0) {
      eps = mo;
      this.curSample = x;
    } else if (n === 1 && this.counter === 1) {
      eps = div(lin([[1, mo], [1, e[0]!]]), 2);
      sample = this.curSample ?? x;
      this.curSample = null;
    } else if (n === 2) {
      eps = div(lin([[3, e[1]!], [-1, e[0]!]]), 2);
    } else if (n === 3) {
      eps = div(lin([[23, e[2]!], [-16, e[1]!], [5, e[0]!]]), 12);
    } else {
      // n ≥ 4: a PLMS call other than the second pushes onto a history that already holds ε of
      // the first call (or of the PRK warm-up), so only the first two calls see n < 2.
      eps = scale(lin([[55, e[n - 1]!], [-59, e[n - 2]!], [37, e[n - 3]!], [-9, e[n - 4]!]]), fround(1 / 24));
    }
    return s.prevSample(sample, from, prevT, eps);
  }
}
