/**
 * Latent Consistency Models (Luo et al. 2023), diffusers' `LCMScheduler`: each step maps x_t to
 * the consistency-model estimate of x₀ and re-noises it to the next timestep.
 */
import { InputError } from '../errors.js';
import type { TensorLike } from '../tensor.js';
import { AlphaProdRun, AlphaProdScheduler } from './alpha-prod.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { like, lin } from './ops.js';
import { limitX0, predictFromAlphaProd, x0Limits, type X0Limits } from './prediction.js';
import { timestepNumber, type StepOptions, type StepOutput, type TimestepValue } from './scheduler.js';
import { npLinspace } from './timesteps.js';

/** σ_data of the consistency-model boundary condition. */
const SIGMA_DATA = 0.5;

export class LCMScheduler extends AlphaProdScheduler<'LCMScheduler'> {
  readonly order = 1;
  readonly finalAlphaCumprod: number;
  readonly x0Limits: X0Limits;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'LCMScheduler', config });
    this.finalAlphaCumprod = this.settings.setAlphaToOne ? 1 : this.alphaProdAt(0);
    this.x0Limits = x0Limits(this.settings);
  }

  /**
   * 1. The distillation grid: k = T / original_steps, timesteps k·i - 1 for i = 1..original_steps.
   * 2. Take n of them, evenly by index from the top: floor(linspace(0, len, n, endpoint=False)).
   */
  protected makeRun(n: number): LCMRun {
    const T = this.numTrainTimesteps;
    const original = this.settings.originalInferenceSteps;
    if (original > T) {
      throw new InputError(`LCMScheduler: original_inference_steps ${original} cannot exceed num_train_timesteps ${T}`);
    }
    if (n > original) {
      throw new InputError(
        `LCMScheduler: num_inference_steps ${n} cannot exceed original_inference_steps ${original} ` +
          'the model was distilled with',
      );
    }
    const k = Math.floor(T / original);
    const origin = Array.from({ length: original }, (_, i) => (i + 1) * k - 1).reverse();
    // linspace(0, len, n, endpoint=False) stays below len, so each index is in range.
    const timesteps = npLinspace(0, origin.length, n, false).map((v) => origin[Math.floor(v)]!);
    return new LCMRun(this, n, timesteps);
  }

  /** Boundary-condition scalings c_skip = σ_d²/(τ² + σ_d²), c_out = τ/√(τ² + σ_d²), τ = t·scaling. */
  scalings(t: number): { cSkip: number; cOut: number } {
    const tau = fround(t * fround(this.settings.timestepScaling));
    const d = fround(fround(tau * tau) + SIGMA_DATA ** 2);
    return { cSkip: fround(fround(1 / d) * SIGMA_DATA ** 2), cOut: fround(tau / fround(Math.sqrt(d))) };
  }
}

export class LCMRun extends AlphaProdRun {
  declare readonly scheduler: LCMScheduler;

  constructor(scheduler: LCMScheduler, numInferenceSteps: number, timesteps: number[]) {
    super(scheduler, { numInferenceSteps, timesteps });
  }

  /**
   * 1. The next timestep of the schedule (t itself at the end) and its ᾱ.
   * 2. x̂₀ from the model output; threshold or clip.
   * 3. denoised = c_out x̂₀ + c_skip x_t.
   * 4. Except after the last step, re-noise: x_prev = √ᾱ_prev denoised + √(1-ᾱ_prev) z.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const t = timestepNumber(timestep);
    const index = this.currentIndex(timestep);
    // 1.
    // Past the last timestep there is none: t itself.
    const prevT = this.timesteps[index + 1] ?? t;
    const a = s.alphaProdAt(t);
    const aPrev = prevT >= 0 ? s.alphaProdAt(prevT) : s.finalAlphaCumprod;
    // 2.
    const x0 = limitX0(predictFromAlphaProd(s.predictionType, a, mo, x).x0, dims, s.x0Limits);
    // 3.
    const { cSkip, cOut } = s.scalings(t);
    const denoised = lin([[cOut, x0], [cSkip, x]]);
    // 4.
    let prev = denoised;
    if (index !== this.numInferenceSteps - 1) {
      const z = this.stepNoise(dims, opts);
      prev = lin([[fround(Math.sqrt(aPrev)), denoised], [fround(Math.sqrt(fround(1 - aPrev))), z]]);
    }
    this.advance();
    return { prevSample: like(dims, prev), denoised: like(dims, denoised) };
  }
}
