/**
 * Common ground of the ᾱ-indexed schedulers (DDPM, DDIM, PNDM, LCM): integer timesteps that
 * index `alphas_cumprod` directly, no input scaling, and q(x_t | x₀) = √ᾱ_t x₀ + √(1-ᾱ_t) ε.
 */
import type { Tensor, TensorLike } from '../tensor.js';
import { addNoiseAlphaProd, pyAt } from './add-noise.js';
import { Scheduler } from './current-run.js';
import { SchedulerRun, timestepList, type TimestepValue } from './scheduler.js';

export type AlphaProdClassName = 'DDIMScheduler' | 'DDPMScheduler' | 'PNDMScheduler' | 'LCMScheduler';

export abstract class AlphaProdScheduler<C extends AlphaProdClassName = AlphaProdClassName> extends Scheduler<C> {
  readonly timestepDtype = 'int64' as const;

  /** ᾱ at an integer timestep (Python indexing, as diffusers indexes its tensor). */
  alphaProdAt(t: number): number {
    return pyAt(this.alphasCumprod, t, `${this.className}: timestep`);
  }

  protected override addNoiseWithoutRun(original: TensorLike, noise: TensorLike, timesteps: number[]): Tensor<'float32'> {
    return addNoiseAlphaProd(this.alphasCumprod, original, noise, timesteps);
  }
}

export abstract class AlphaProdRun extends SchedulerRun {
  addNoise(
    original: TensorLike,
    noise: TensorLike,
    timesteps: TimestepValue | readonly (number | bigint)[],
  ): Tensor<'float32'> {
    return addNoiseAlphaProd(this.scheduler.alphasCumprod, original, noise, timestepList(timesteps));
  }
}
