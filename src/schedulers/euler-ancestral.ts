/**
 * Ancestral Euler sampler (the "Euler a" of k-diffusion, Karras et al. 2022 with fresh noise
 * every step), diffusers' `EulerAncestralDiscreteScheduler`.
 */
import type { TensorLike } from '../tensor.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { KarrasRun, KarrasScheduler } from './karras.js';
import { like, lin } from './ops.js';
import { predictX0FromSigma } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';
import { interpSigmas } from './sigmas.js';

export class EulerAncestralDiscreteScheduler extends KarrasScheduler<'EulerAncestralDiscreteScheduler'> {
  readonly order = 1;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'EulerAncestralDiscreteScheduler', config, clampLastAlpha: true });
  }

  /** Spacing timesteps, interpolated σ, and a final σ = 0. */
  protected makeRun(n: number): EulerAncestralRun {
    const timesteps = this.spacingTimesteps(n);
    const sigmas = Float32Array.from([...interpSigmas(timesteps, this.trainSigmas), 0]);
    return new EulerAncestralRun(this, n, timesteps, sigmas);
  }
}

export class EulerAncestralRun extends KarrasRun {
  declare readonly scheduler: EulerAncestralDiscreteScheduler;

  constructor(scheduler: EulerAncestralDiscreteScheduler, n: number, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, { numInferenceSteps: n, timesteps, sigmas, initNoiseSigma: scheduler.initNoiseSigmaFor(sigmas) });
  }

  /**
   * 1. x̂₀ from the model output at σ.
   * 2. Split the move to σ_next into a deterministic part and noise:
   *    σ_up = √(σ_next² (σ² - σ_next²)/σ²), σ_down = √(σ_next² - σ_up²).
   * 3. Euler step to σ_down, then add σ_up z.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    const sigma = this.sigma(i);
    // 1.
    const x0 = predictX0FromSigma(s.predictionType, sigma, mo, x);
    // 2.
    const from2 = fround(sigma * sigma);
    const next = this.sigma(i + 1);
    const to2 = fround(next * next);
    const sigmaUp = fround(Math.sqrt(fround(fround(to2 * fround(from2 - to2)) / from2)));
    const sigmaDown = fround(Math.sqrt(fround(to2 - fround(sigmaUp * sigmaUp))));
    // 3.
    const prev = KarrasRun.move(x, KarrasRun.derivative(x, x0, sigma), fround(sigmaDown - sigma));
    const z = this.stepNoise(dims, opts);
    const out = lin([[1, prev], [sigmaUp, z]]);
    this.advance();
    return { prevSample: like(dims, out), predOriginalSample: like(dims, x0) };
  }
}
