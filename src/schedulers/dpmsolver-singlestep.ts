/**
 * Single-step DPM-Solver / DPM-Solver++ (Lu et al. 2022, Algorithms 1 and 2), diffusers'
 * `DPMSolverSinglestepScheduler`: the schedule is cut into groups of 1–3 steps, and a group of
 * order k reuses the k model outputs evaluated inside it, all starting from the group's first
 * sample.
 */
import { InputError } from '../errors.js';
import type { TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import type { SchedulerConfigInput } from './config.js';
import { dpmScalars, DpmRun, DpmScheduler, firstChannels, withNoise, type DpmAlgorithm, type DpmSolverType } from './dpm.js';
import { fround } from './float32.js';
import { div, like, lin, sub, type Terms, type Vec } from './ops.js';
import { limitX0 } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

export class DPMSolverSinglestepScheduler extends DpmScheduler<'DPMSolverSinglestepScheduler'> {
  readonly order = 1;
  readonly algorithm: DpmAlgorithm;
  readonly solverType: DpmSolverType;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'DPMSolverSinglestepScheduler', config });
    const solverOrder = this.settings.solverOrder;
    if (solverOrder > 3) {
      throw new InputError(`DPMSolverSinglestepScheduler: solver_order ${solverOrder} > 3 is not supported`);
    }
    const { algorithm, solverType } = this.dpmAlgorithm(this.settings);
    this.algorithm = algorithm;
    this.solverType = solverType;
  }

  /**
   * Orders of the steps: repeating (1, 2, 3) groups up to `solver_order`; with
   * `lower_order_final` the tail is shortened so the last group ends on order 1 or 2; a final
   * σ of zero forces the last step to order 1.
   */
  orderList(steps: number): number[] {
    const order = this.settings.solverOrder;
    const rep = (pattern: number[], times: number): number[] =>
      Array.from({ length: Math.max(times, 0) }, () => pattern).flat();
    let orders: number[];
    if (this.settings.lowerOrderFinal) {
      if (order === 3) {
        if (steps % 3 === 0) orders = [...rep([1, 2, 3], Math.floor(steps / 3) - 1), 1, 2, 1];
        else if (steps % 3 === 1) orders = [...rep([1, 2, 3], Math.floor(steps / 3)), 1];
        else orders = [...rep([1, 2, 3], Math.floor(steps / 3)), 1, 2];
      } else if (order === 2) {
        orders = steps % 2 === 0 ? [...rep([1, 2], steps / 2 - 1), 1, 1] : [...rep([1, 2], Math.floor(steps / 2)), 1];
      } else {
        orders = rep([1], steps);
      }
    } else if (order === 3) orders = rep([1, 2, 3], Math.floor(steps / 3));
    else if (order === 2) orders = rep([1, 2], Math.floor(steps / 2));
    else orders = rep([1], steps);
    if (this.settings.finalSigmasType === 'zero') orders[orders.length - 1] = 1;
    return orders;
  }

  /**
   * 1. linspace timesteps below the λ clip, σ as in the multistep solver.
   * 2. Like diffusers, switch the config to `lower_order_final` when n is not a multiple of the
   *    order or the final σ is zero (this changes the scheduler's config for later runs too).
   */
  protected makeRun(n: number): DPMSolverSinglestepRun {
    const s = this.settings;
    const { timesteps, sigmas } = this.dpmGrid(n, {
      spacing: 'linspace',
      stepsOffset: 0,
      lastTimestep: this.numTrainTimesteps - this.lambdaClippedCount(s.lambdaMinClipped),
      roundRampTimesteps: true,
      finalSigma: 'config',
      finalSigmasType: s.finalSigmasType,
    });
    if (!s.lowerOrderFinal && (n % s.solverOrder !== 0 || s.finalSigmasType === 'zero')) {
      this.registerToConfig({ lower_order_final: true });
    }
    return new DPMSolverSinglestepRun(this, n, timesteps, sigmas, this.orderList(n));
  }

  solverInput(modelOutput: TensorLike): TensorLike {
    const learned = this.settings.varianceType === 'learned' || this.settings.varianceType === 'learned_range';
    return learned && this.predictionType === 'epsilon' ? firstChannels(modelOutput, 3) : modelOutput;
  }

  /**
   * x̂₀ (DPM-Solver++) or ε̂ (DPM-Solver); with thresholding the latter goes through x̂₀ at the
   * training (α_t, σ_t) of timestep t, as diffusers does.
   */
  convertModelOutput(sigma: number, t: number, mo: Vec, sample: Vec, dims: readonly number[]): Vec {
    if (this.algorithm !== 'dpmsolver') return this.x0At(sigma, mo, sample, dims);
    const eps = this.epsAt(sigma, mo, sample);
    if (!this.x0Limits.thresholding) return eps;
    // t is a timestep of the run's schedule, an index into the training table.
    const a = at(this.alphasCumprod, t);
    const alpha = fround(Math.sqrt(a));
    const s = fround(Math.sqrt(fround(1 - a)));
    const x0 = limitX0(div(lin([[1, sample], [-s, eps]]), alpha), dims, this.x0Limits);
    return div(lin([[1, sample], [-alpha, x0]]), s);
  }
}

export class DPMSolverSinglestepRun extends DpmRun {
  declare readonly scheduler: DPMSolverSinglestepScheduler;
  /** Order of each step. */
  readonly orders: readonly number[];
  /** The sample at the start of the current group. */
  private groupSample: Vec | null = null;

  constructor(
    scheduler: DPMSolverSinglestepScheduler,
    n: number,
    timesteps: number[],
    sigmas: Float32Array,
    orders: number[],
  ) {
    super(scheduler, n, timesteps, sigmas);
    this.orders = Object.freeze(orders);
  }

  /**
   * 1. Convert the model output and push it on the history.
   * 2. The step's order from the order list (lower while the history is short); an order-1
   *    step starts a new group at the current sample.
   * 3. The single-step update of that order from the group's first σ to σ_{i+1}.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(s.solverInput(modelOutput), sample);
    const i = this.currentIndex(timestep);
    // 1.
    const t = this.scheduleAt(this.timesteps, i, 'timesteps');
    this.pushModelOutput(s.convertModelOutput(this.sigma(i), t, mo, x, dims));
    const z = s.algorithm === 'sde-dpmsolver++' ? this.stepNoise(dims, opts) : null;
    // 2.
    let order = this.orders[i];
    if (order === undefined) throw new InputError(`DPMSolverSinglestepScheduler: no step ${i} in this run`);
    while (this.modelOutputs[this.modelOutputs.length - order] === null) order -= 1;
    if (order === 1) this.groupSample = x;
    const start = this.groupSample ?? x;
    // 3.
    const update = order === 1 ? this.firstOrder : order === 2 ? this.secondOrder : this.thirdOrder;
    const prev = update.call(this, i, start, z);
    this.advance();
    return { prevSample: like(dims, prev) };
  }

  /** DPM-Solver-1 from σ_i to σ_{i+1}. */
  private firstOrder(i: number, x: Vec, z: Vec | null): Vec {
    return this.dpmFirstOrder(this.scheduler.algorithm, i, x, z);
  }

  /**
   * Single-step second order from σ_{i-1} (the group start) via σ_i: h = λ_t - λ_{s1},
   * r₀ = (λ_{s0} - λ_{s1})/h, D₀ = m₁, D₁ = (m₀ - m₁)/r₀.
   */
  private secondOrder(i: number, x: Vec, z: Vec | null): Vec {
    const s = this.scheduler;
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const c = dpmScalars(s.algorithm, t, s1);
    const r0 = fround(fround(s0.lambda - s1.lambda) / c.h);
    const [m0, m1] = [this.history(0), this.history(1)];
    const d1 = lin([[fround(1 / r0), sub(m0, m1)]]);
    const heun = s.solverType === 'heun';
    switch (s.algorithm) {
      case 'dpmsolver++': {
        const w = fround(t.alpha * fround(c.expNegH - 1));
        const w1 = heun ? fround(t.alpha * fround(fround(fround(c.expNegH - 1) / c.h) + 1)) : -fround(0.5 * w);
        return lin([[c.xCoef, x], [-w, m1], [w1, d1]]);
      }
      case 'dpmsolver': {
        const w = fround(t.sigma * fround(c.expH - 1));
        const w1 = heun ? fround(t.sigma * fround(fround(fround(c.expH - 1) / c.h) - 1)) : fround(0.5 * w);
        return lin([[c.xCoef, x], [-w, m1], [-w1, d1]]);
      }
      default: {
        const w = fround(t.alpha * fround(1 - c.expNeg2H));
        const w1 = heun ? fround(t.alpha * fround(fround(fround(1 - c.expNeg2H) / fround(-2 * c.h)) + 1)) : fround(0.5 * w);
        return withNoise([[c.xCoef, x], [w, m1], [w1, d1]], c.zCoef, z);
      }
    }
  }

  /**
   * Single-step third order from σ_{i-2}: r₀, r₁ relative to h = λ_t - λ_{s2}, D₀ = m₂,
   * D₁₀ = (m₁ - m₂)/r₁, D₁₁ = (m₀ - m₂)/r₀, D₁ = (r₀D₁₀ - r₁D₁₁)/(r₀ - r₁),
   * D₂ = 2(D₁₁ - D₁₀)/(r₀ - r₁); the midpoint variant uses D₁₁ alone.
   */
  private thirdOrder(i: number, x: Vec, z: Vec | null): Vec {
    const s = this.scheduler;
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const s2 = this.point(i - 2);
    const c = dpmScalars(s.algorithm, t, s2);
    const r0 = fround(fround(s0.lambda - s2.lambda) / c.h);
    const r1 = fround(fround(s1.lambda - s2.lambda) / c.h);
    const [m0, m1, m2] = [this.history(0), this.history(1), this.history(2)];
    const d10 = lin([[fround(1 / r1), sub(m1, m2)]]);
    const d11 = lin([[fround(1 / r0), sub(m0, m2)]]);
    const rGap = fround(r0 - r1);
    const heun = s.solverType === 'heun';
    const d1 = heun ? div(lin([[r0, d10], [-r1, d11]]), rGap) : d11;
    const d2 = div(lin([[2, sub(d11, d10)]]), rGap);
    const h2 = fround(c.h * c.h);
    switch (s.algorithm) {
      case 'dpmsolver++': {
        const e = fround(c.expNegH - 1);
        const terms: Terms = [
          [c.xCoef, x],
          [-fround(t.alpha * e), m2],
          [fround(t.alpha * fround(fround(e / c.h) + 1)), d1],
        ];
        if (heun) terms.push([-fround(t.alpha * fround(fround(fround(e + c.h) / h2) - 0.5)), d2]);
        return lin(terms);
      }
      case 'dpmsolver': {
        const e = fround(c.expH - 1);
        const terms: Terms = [
          [c.xCoef, x],
          [-fround(t.sigma * e), m2],
          [-fround(t.sigma * fround(fround(e / c.h) - 1)), d1],
        ];
        if (heun) terms.push([-fround(t.sigma * fround(fround(fround(e - c.h) / h2) - 0.5)), d2]);
        return lin(terms);
      }
      default: {
        const e = fround(1 - c.expNeg2H);
        const m2h = fround(-2 * c.h);
        const terms: Terms = [
          [c.xCoef, x],
          [fround(t.alpha * e), m2],
          [fround(t.alpha * fround(fround(e / m2h) + 1)), d1],
        ];
        if (heun) terms.push([fround(t.alpha * fround(fround(fround(e + m2h) / fround(m2h * m2h)) - 0.5)), d2]);
        return withNoise(terms, c.zCoef, z);
      }
    }
  }
}
