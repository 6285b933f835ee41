/**
 * The diffusers-shaped convenience: a *current run* kept on the scheduler object, so a loop can
 * be written the way diffusers writes it,
 *
 * ```ts
 * scheduler.setTimesteps(20);
 * for (const t of scheduler.timesteps) x = scheduler.step(unet(scheduler.scaleModelInput(x, t), t), t, x).prevSample;
 * ```
 *
 * `setTimesteps(n)` creates a run (`createRun(n)`, scheduler.ts) and makes it the current one;
 * `timesteps`, `sigmas`, `initNoiseSigma`, `stepIndex`, `setBeginIndex`, `scaleModelInput`,
 * `step` and `addNoise` then act on it, or on the run given as `{ run }`.
 *
 * Not safe for concurrent generations: this is exactly diffusers' hidden loop state, one per
 * scheduler object, so two loops driving the current run of one scheduler mix their step
 * indices and histories. Pipelines hold their own run from `createRun(n)` instead; this layer is
 * for porting diffusers code and for the reference tests that follow it line by line.
 */
import { InputError } from '../errors.js';
import type { Tensor, TensorLike } from '../tensor.js';
import type { SchedulerClassName } from './config.js';
import {
  SchedulerCore,
  timestepList,
  type SchedulerRun,
  type StepOptions,
  type StepOutput,
  type TimestepValue,
} from './scheduler.js';

/** A diffusers scheduler: the {@link SchedulerCore} plus the current-run convenience above. */
export abstract class Scheduler<C extends SchedulerClassName = SchedulerClassName> extends SchedulerCore<C> {
  private currentRun: SchedulerRun | undefined;

  /** diffusers' `set_timesteps(n)`: create a run and make it the current one. */
  setTimesteps(numInferenceSteps: number): SchedulerRun {
    this.currentRun = this.createRun(numInferenceSteps);
    return this.currentRun;
  }

  /** The current run (from `setTimesteps`), if any. */
  get run(): SchedulerRun | undefined {
    return this.currentRun;
  }

  /** Timesteps of the current run; before `setTimesteps`, the training timesteps T-1 … 0. */
  get timesteps(): readonly number[] {
    const T = this.numTrainTimesteps;
    return this.currentRun?.timesteps ?? Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** Sigmas of the current run (undefined for schedulers without sigmas or before `setTimesteps`). */
  get sigmas(): Float32Array | undefined {
    return this.currentRun?.sigmas;
  }

  /** Initial noise scale of the current run (of the training schedule before `setTimesteps`). */
  get initNoiseSigma(): number {
    return this.currentRun?.initNoiseSigma ?? this.trainInitNoiseSigma();
  }

  /** `init_noise_sigma` before any `set_timesteps` (overridden by the σ-based classes). */
  protected trainInitNoiseSigma(): number {
    return 1;
  }

  /** Step index of the current run. */
  get stepIndex(): number | null {
    return this.currentRun?.stepIndex ?? null;
  }

  /** Set the begin index of the current run. */
  setBeginIndex(index = 0): void {
    this.requireRun('setBeginIndex').setBeginIndex(index);
  }

  scaleModelInput(sample: TensorLike, timestep: TimestepValue, opts: { run?: SchedulerRun } = {}): Tensor<'float32'> {
    return this.pickRun(opts.run, 'scaleModelInput').scaleModelInput(sample, timestep);
  }

  step(
    modelOutput: TensorLike,
    timestep: TimestepValue,
    sample: TensorLike,
    opts: StepOptions & { run?: SchedulerRun } = {},
  ): StepOutput {
    return this.pickRun(opts.run, 'step').step(modelOutput, timestep, sample, opts);
  }

  /** Forward-diffuse clean samples to `timesteps` (uses the current run's sigmas where needed). */
  addNoise(
    original: TensorLike,
    noise: TensorLike,
    timesteps: TimestepValue | readonly (number | bigint)[],
  ): Tensor<'float32'> {
    if (this.currentRun !== undefined) return this.currentRun.addNoise(original, noise, timesteps);
    return this.addNoiseWithoutRun(original, noise, timestepList(timesteps));
  }

  /** `addNoise` before `setTimesteps`: possible for the ᾱ-based classes (overridden there), an error otherwise. */
  protected addNoiseWithoutRun(original: TensorLike, noise: TensorLike, timesteps: number[]): Tensor<'float32'> {
    return this.requireRun('addNoise').addNoise(original, noise, timesteps);
  }

  private requireRun(what: string): SchedulerRun {
    if (this.currentRun === undefined) {
      throw new InputError(`${this.className}.${what}: call setTimesteps(n) first, or use a run from createRun(n)`);
    }
    return this.currentRun;
  }

  private pickRun(run: SchedulerRun | undefined, what: string): SchedulerRun {
    if (run === undefined) return this.requireRun(what);
    if (run.scheduler !== this) throw new InputError(`${this.className}.${what}: the run belongs to another scheduler`);
    return run;
  }
}
