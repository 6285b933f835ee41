/**
 * DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models"), diffusers' `DDIMScheduler`.
 */
import type { TensorLike } from '../tensor.js';
import { AlphaProdRun, AlphaProdScheduler } from './alpha-prod.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { div, like, lin } from './ops.js';
import { limitX0, predictFromAlphaProd, x0Limits, type X0Limits } from './prediction.js';
import { timestepNumber, type StepOptions, type StepOutput, type TimestepValue } from './scheduler.js';
import { spacedTimesteps } from './timesteps.js';

export class DDIMScheduler extends AlphaProdScheduler<'DDIMScheduler'> {
  readonly order = 1;
  /** ᾱ used for the step after the last (1 with `set_alpha_to_one`, else ᾱ_0). */
  readonly finalAlphaCumprod: number;
  readonly x0Limits: X0Limits;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'DDIMScheduler', config });
    this.finalAlphaCumprod = this.settings.setAlphaToOne ? 1 : this.alphaProdAt(0);
    this.x0Limits = x0Limits(this.settings);
  }

  protected makeRun(numInferenceSteps: number): DDIMRun {
    const timesteps = spacedTimesteps(this.settings.timestepSpacing, {
      trainTimesteps: this.numTrainTimesteps,
      steps: numInferenceSteps,
      stepsOffset: this.settings.stepsOffset,
      roundLinspace: true,
    });
    return new DDIMRun(this, numInferenceSteps, timesteps);
  }
}

export class DDIMRun extends AlphaProdRun {
  declare readonly scheduler: DDIMScheduler;

  constructor(scheduler: DDIMScheduler, numInferenceSteps: number, timesteps: number[]) {
    super(scheduler, { numInferenceSteps, timesteps });
  }

  /**
   * DDIM update (Song et al. 2021, eq. 12), with σ_t(η) from eq. 16:
   * 1. t_prev = t - T/n; ᾱ_t, ᾱ_prev (the final ᾱ past the end).
   * 2. x̂₀ and ε̂ from the model output; threshold or clip x̂₀.
   * 3. σ_t = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_prev).
   * 4. x_prev = √ᾱ_prev x̂₀ + √(1 - ᾱ_prev - σ_t²) ε̂ (+ σ_t z when η > 0).
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const eta = opts.eta ?? 0;
    // 1.
    const t = timestepNumber(timestep);
    const prevT = t - Math.floor(s.numTrainTimesteps / this.numInferenceSteps);
    const a = s.alphaProdAt(t);
    const aPrev = prevT >= 0 ? s.alphaProdAt(prevT) : s.finalAlphaCumprod;
    const b = fround(1 - a);
    // 2.
    const pred = predictFromAlphaProd(s.predictionType, a, mo, x);
    const x0 = limitX0(pred.x0, dims, s.x0Limits);
    let eps = pred.eps;
    // 3.
    const variance = fround(fround(fround(1 - aPrev) / b) * fround(1 - fround(a / aPrev)));
    const std = fround(fround(eta) * fround(Math.sqrt(variance)));
    if (opts.useClippedModelOutput) eps = div(lin([[1, x], [-fround(Math.sqrt(a)), x0]]), fround(Math.sqrt(b)));
    // 4.
    const dirCoef = fround(Math.sqrt(fround(fround(1 - aPrev) - fround(std * std))));
    const direction = lin([[dirCoef, eps]]);
    let prev = lin([[fround(Math.sqrt(aPrev)), x0], [1, direction]]);
    if (eta > 0) {
      const z = this.stepNoise(dims, opts);
      prev = lin([[1, prev], [std, z]]);
    }
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
