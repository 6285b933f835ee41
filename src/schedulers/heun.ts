/**
 * Heun's second-order method (Karras et al. 2022, Algorithm 1), diffusers'
 * `HeunDiscreteScheduler`: each step is two model calls, an Euler predictor and a trapezoidal
 * corrector, so the timesteps after the first are repeated.
 */
import type { TensorLike } from '../tensor.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { doubleAfterFirst, KarrasRun, KarrasScheduler } from './karras.js';
import { div, like, lin, type Vec } from './ops.js';
import { limitX0, predictX0FromSigma, x0Limits, type X0Limits } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

export class HeunDiscreteScheduler extends KarrasScheduler<'HeunDiscreteScheduler'> {
  readonly order = 2;
  readonly x0Limits: X0Limits;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'HeunDiscreteScheduler', config });
    this.x0Limits = x0Limits(this.settings);
  }

  /**
   * 1. The usual grid of n timesteps and σ (plus σ = 0 at the end).
   * 2. σ: [σ_0, σ_1, σ_1, …, σ_{n-1}, σ_{n-1}, 0]; timesteps: [t_0, t_1, t_1, …, t_{n-1}, t_{n-1}].
   */
  protected makeRun(n: number): HeunRun {
    const grid = this.sigmaGrid(n, { boundsFromConfig: true });
    const sigmas = Float32Array.from(doubleAfterFirst(Float32Array.from([...grid.sigmas, 0]), 'single'));
    const timesteps = doubleAfterFirst(grid.timesteps.map(fround), 'double');
    return new HeunRun(this, n, timesteps, sigmas);
  }
}

export class HeunRun extends KarrasRun {
  declare readonly scheduler: HeunDiscreteScheduler;
  /** Between the two calls of a step: the predictor's derivative, step size and start sample. */
  private pending: { derivative: Vec; dt: number; sample: Vec } | null = null;

  constructor(scheduler: HeunDiscreteScheduler, n: number, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, { numInferenceSteps: n, timesteps, sigmas, initNoiseSigma: scheduler.initNoiseSigmaFor(sigmas) });
  }

  /** Whether the next `step` is the first (Euler) half of a Heun step. */
  get stateInFirstOrder(): boolean {
    return this.pending === null;
  }

  /**
   * First call: d = (x - x̂₀(σ))/σ, x' = x + d (σ_next - σ) (Euler predictor).
   * Second call at σ_next: d' = (x' - x̂₀(σ_next))/σ_next, x_prev = x + (d + d')/2 · (σ_next - σ).
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    void opts;
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    const first = this.pending === null;
    const sigma = this.sigma(first ? i : i - 1);
    const sigmaNext = this.sigma(first ? i + 1 : i);
    const x0 = limitX0(predictX0FromSigma(s.predictionType, first ? sigma : sigmaNext, mo, x), dims, s.x0Limits);
    let prev: Vec;
    if (this.pending === null) {
      const dt = fround(sigmaNext - sigma);
      const d = KarrasRun.derivative(x, x0, sigma);
      this.pending = { derivative: d, dt, sample: x };
      prev = KarrasRun.move(x, d, dt);
    } else {
      const d = KarrasRun.derivative(x, x0, sigmaNext);
      const mean = div(lin([[1, this.pending.derivative], [1, d]]), 2);
      prev = KarrasRun.move(this.pending.sample, mean, this.pending.dt);
      this.pending = null;
    }
    this.advance();
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
