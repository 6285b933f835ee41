/**
 * Euler sampler of Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based
 * Generative Models", Algorithm 2), diffusers' `EulerDiscreteScheduler`.
 */
import type { TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import type { SchedulerConfigInput } from './config.js';
import { fround, numpyLog32, torchExp32, torchLinspace32, torchLog32 } from './float32.js';
import { KarrasRun, KarrasScheduler } from './karras.js';
import { like, lin } from './ops.js';
import { predictX0FromSigma } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';
import { interpSigmas } from './sigmas.js';

export class EulerDiscreteScheduler extends KarrasScheduler<'EulerDiscreteScheduler'> {
  readonly order = 1;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'EulerDiscreteScheduler', config, clampLastAlpha: true });
  }

  private get continuousV(): boolean {
    return this.settings.timestepType === 'continuous' && this.predictionType === 'v_prediction';
  }

  /**
   * 1. Spacing timesteps; σ by linear interpolation, or n + 1 values log-linear from the
   *    training σ_max down to σ_min (diffusers keeps the extra one).
   * 2. Optional Karras / exponential / beta ramp (t mapped back from σ).
   * 3. Append the final σ: 0 or σ at t = 0.
   * 4. "continuous" v-prediction models take t = log(σ)/4 instead.
   */
  protected makeRun(n: number): EulerRun {
    const spaced = this.spacingTimesteps(n);
    const train = this.trainSigmas;
    const interpolated =
      this.settings.interpolationType === 'linear'
        ? interpSigmas(spaced, train)
        : Array.from(
            torchLinspace32(numpyLog32(at(train, train.length - 1)), numpyLog32(at(train, 0)), n + 1),
            torchExp32,
          );
    const grid = this.applyRamp({ timesteps: spaced, sigmas: interpolated }, n, { boundsFromConfig: true });
    const a0 = at(this.alphasCumprod, 0);
    const last = this.settings.finalSigmasType === 'zero' ? 0 : Math.sqrt(fround(fround(1 - a0) / a0));
    const sigmas = Float32Array.from([...grid.sigmas, last]);
    const timesteps = this.continuousV
      ? Array.from(sigmas.subarray(0, -1), (sg) => fround(0.25 * torchLog32(sg)))
      : grid.timesteps.map(fround);
    return new EulerRun(this, n, timesteps, sigmas);
  }
}

export class EulerRun extends KarrasRun {
  declare readonly scheduler: EulerDiscreteScheduler;

  constructor(scheduler: EulerDiscreteScheduler, n: number, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, { numInferenceSteps: n, timesteps, sigmas, initNoiseSigma: scheduler.initNoiseSigmaFor(sigmas) });
  }

  /**
   * 1. σ̂ = σ(1 + γ) with γ = min(s_churn/N, √2 - 1) inside [s_tmin, s_tmax]; when γ > 0 add
   *    noise of variance σ̂² - σ² ("churn").
   * 2. x̂₀ from the model output (σ̂ for ε, σ for v).
   * 3. d = (x - x̂₀)/σ̂, x_prev = x + d (σ_next - σ̂).
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x: x0In, dims } = this.inputs(modelOutput, sample);
    let x = x0In;
    const i = this.currentIndex(timestep);
    const sigma = this.sigma(i);
    // 1.
    const sChurn = opts.sChurn ?? 0;
    const inRange = (opts.sTmin ?? 0) <= sigma && sigma <= (opts.sTmax ?? Infinity);
    const gamma = inRange ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const sigmaHat = fround(sigma * fround(gamma + 1));
    if (gamma > 0) {
      const eps = lin([[fround(opts.sNoise ?? 1), this.stepNoise(dims, opts)]]);
      const c = fround(Math.sqrt(fround(fround(sigmaHat * sigmaHat) - fround(sigma * sigma))));
      x = lin([[1, x], [c, eps]]);
    }
    // 2.
    const x0 = predictX0FromSigma(s.predictionType, s.predictionType === 'epsilon' ? sigmaHat : sigma, mo, x);
    // 3.
    const dt = fround(this.sigma(i + 1) - sigmaHat);
    const prev = KarrasRun.move(x, KarrasRun.derivative(x, x0, sigmaHat), dt);
    this.advance();
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
