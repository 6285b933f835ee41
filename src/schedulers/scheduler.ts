/**
 * The core every scheduler shares, and the per-run state that makes one scheduler safe for
 * several generations at once.
 *
 * # Design: a scheduler is a recipe, a run is one denoising loop
 *
 * diffusers' schedulers keep the state of the loop in flight on the scheduler object itself:
 * `_step_index`, the multistep model-output history, LMS derivatives, Heun/KDPM2's half-step
 * sample, PNDM's `ets`. Two generations interleaved on one pipeline therefore advance a shared
 * step counter and mix their histories. Here that state is split off:
 *
 * - A {@link SchedulerCore} holds only what the config determines: `config` (diffusers' dict),
 *   `settings` (its typed reading, settings.ts), betas, `alphasCumprod`, training sigmas. It is
 *   never changed by stepping.
 * - A {@link SchedulerRun} is one loop: `scheduler.createRun(n)` computes the inference
 *   `timesteps` / `sigmas` for n steps and owns every piece of mutable state (step index, begin
 *   index, histories). Runs never share state, so any number can be interleaved on one
 *   scheduler and each gives exactly what it would give alone. Pipelines use this:
 *
 * ```ts
 * const run = scheduler.createRun(20);
 * let x = noise.map((v) => v * run.initNoiseSigma);
 * for (const t of run.timesteps) {
 *   const eps = unet(run.scaleModelInput(x, t), t);
 *   x = run.step(eps, t, x, { generator }).prevSample;
 * }
 * ```
 *
 * diffusers' own shape (`scheduler.setTimesteps(n)`, then `scheduler.step(...)` on a current run
 * kept on the scheduler) is a convenience layered on top, in current-run.ts; it is not safe for
 * concurrent generations.
 *
 * Details:
 * - A run's step index is set on its first `scaleModelInput`/`step` call, like diffusers'
 *   `_init_step_index` (the begin index if `setBeginIndex` was called, else the position of the
 *   timestep in the schedule), and advances by one per `step`.
 * - Step noise comes from the `generator` given to `step`. Without one diffusers uses torch's
 *   global generator; here each run lazily owns a generator with torch's default seed, so no
 *   random state is shared either.
 * - The one config change diffusers makes while setting timesteps (DPMSolverSinglestep turning
 *   on `lower_order_final`) is kept, since it is part of what `save_config` writes; it depends
 *   on the config alone for the default `final_sigmas_type`.
 *
 * Semantics follow diffusers 0.33.1 exactly, including the float32 arithmetic of its torch
 * tensors and numpy's float64 schedule math (see float32.ts, ops.ts), so results match the
 * reference bit for bit where the reference is deterministic.
 */
import { InputError } from '../errors.js';
import { Generator, randnTensor } from '../random/index.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { noiseSchedule, type NoiseSchedule } from './betas.js';
import { resolveConfig, type SchedulerClassName, type SchedulerConfig, type SchedulerConfigInput } from './config.js';
import { asVec, like, type Vec } from './ops.js';
import type { PredictionType } from './prediction.js';
import { parseSchedulerSettings, type SchedulerSettings } from './settings.js';
import { checkInferenceSteps } from './timesteps.js';

/** A timestep as users pass it: a number, a bigint (int64) or a one-element tensor. */
export type TimestepValue = number | bigint | TensorLike;

/**
 * Options of `step`; each scheduler reads the ones it has (diffusers' keyword arguments). An
 * option set to undefined is the same as one left out (every reader defaults it), so callers can
 * forward their own optional values.
 */
export interface StepOptions {
  /** The generator for step noise (DDPM, DDIM with eta > 0, ancestral samplers, LCM, SDE solvers). */
  readonly generator?: Generator | readonly Generator[] | undefined;
  /** DDIM's η: 0 is deterministic DDIM, 1 is DDPM-like. */
  readonly eta?: number | undefined;
  /** Noise to use instead of drawing it (DDIM, DPM-Solver SDE variants). */
  readonly varianceNoise?: TensorLike | undefined;
  /** DDIM: recompute ε from the clipped x̂₀. */
  readonly useClippedModelOutput?: boolean | undefined;
  /** Euler "churn" (Karras et al. 2022, Algorithm 2): s_churn, s_tmin, s_tmax, s_noise. */
  readonly sChurn?: number | undefined;
  readonly sTmin?: number | undefined;
  readonly sTmax?: number | undefined;
  readonly sNoise?: number | undefined;
  /** LMS: the linear multistep order (default 4). */
  readonly lmsOrder?: number | undefined;
}

/** What `step` returns. */
export interface StepOutput {
  /** x_{t-1}, the input of the next step. */
  readonly prevSample: Tensor<'float32'>;
  /** x̂₀, for schedulers whose diffusers output carries it. */
  readonly predOriginalSample?: Tensor<'float32'>;
  /** LCM's denoised sample (what LCM pipelines return after the last step). */
  readonly denoised?: Tensor<'float32'>;
}

/** The plain number of a timestep argument. */
export function timestepNumber(t: TimestepValue): number {
  if (typeof t === 'number') return t;
  if (typeof t === 'bigint') return Number(t);
  if (t.data.length !== 1) {
    throw new InputError(`a timestep tensor must hold one value, got dims [${t.dims.join(', ')}]`);
  }
  return Number(t.data[0]);
}

/** The timesteps of an `addNoise` call, one per batch item. */
export function timestepList(ts: TimestepValue | readonly (number | bigint)[]): number[] {
  if (typeof ts === 'number' || typeof ts === 'bigint') return [Number(ts)];
  if (Array.isArray(ts)) return ts.map((v: number | bigint) => Number(v));
  const data = (ts as TensorLike).data;
  return Array.from(data as ArrayLike<number | bigint>, (v) => Number(v));
}

/**
 * One denoising loop of a scheduler: its inference schedule plus all mutable state.
 * Subclasses implement `step` (and `scaleModelInput` where the input is scaled).
 */
export abstract class SchedulerRun {
  /** Number of inference steps this run was created for. */
  readonly numInferenceSteps: number;
  /** The timesteps to call the model at, in order (diffusers' `scheduler.timesteps`). */
  readonly timesteps: readonly number[];
  /** The sigmas of the run, for schedulers that have them (float32, as in diffusers). */
  readonly sigmas: Float32Array | undefined;
  /** Scale of the initial noise: multiply a unit-variance latent by this. */
  readonly initNoiseSigma: number;
  private stepIndexValue: number | null = null;
  private beginIndexValue: number | null = null;
  private fallbackGenerator: Generator | undefined;

  protected constructor(
    readonly scheduler: SchedulerCore,
    init: {
      numInferenceSteps: number;
      timesteps: readonly number[];
      sigmas?: Float32Array;
      initNoiseSigma?: number;
    },
  ) {
    this.numInferenceSteps = init.numInferenceSteps;
    this.timesteps = Object.freeze([...init.timesteps]);
    this.sigmas = init.sigmas;
    this.initNoiseSigma = init.initNoiseSigma ?? 1;
  }

  /** The index of the next step (null until the first `step`/`scaleModelInput`). */
  get stepIndex(): number | null {
    return this.stepIndexValue;
  }

  get beginIndex(): number | null {
    return this.beginIndexValue;
  }

  /** Start at this index instead of looking the first timestep up (img2img pipelines). */
  setBeginIndex(index = 0): this {
    if (!Number.isInteger(index) || index < 0 || index > this.timesteps.length) {
      throw new InputError(`begin index must be an integer in [0, ${this.timesteps.length}], got ${index}`);
    }
    this.beginIndexValue = index;
    return this;
  }

  /** The timesteps as a tensor with diffusers' dtype (int64, float32 or float64), e.g. for a UNet input. */
  timestepsTensor(): Tensor {
    const n = [this.timesteps.length];
    switch (this.scheduler.timestepDtype) {
      case 'int64':
        return new Tensor('int64', BigInt64Array.from(this.timesteps, (t) => BigInt(t)), n);
      case 'float64':
        return new Tensor('float64', Float64Array.from(this.timesteps), n);
      case 'float32':
        return new Tensor('float32', Float32Array.from(this.timesteps), n);
    }
  }

  /** Scale the model input for the current noise level (identity unless overridden). */
  scaleModelInput(sample: TensorLike, timestep: TimestepValue): Tensor<'float32'> {
    void timestep;
    return like(sample.dims, asVec('sample', sample));
  }

  /** One reverse-diffusion step from x_t to x_{t-1}. */
  abstract step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts?: StepOptions): StepOutput;

  /** Forward-diffuse clean samples to the given timesteps (one per batch item). */
  abstract addNoise(
    original: TensorLike,
    noise: TensorLike,
    timesteps: TimestepValue | readonly (number | bigint)[],
  ): Tensor<'float32'>;

  /**
   * The step index, set on first use like diffusers' `_init_step_index`: the begin index if one
   * was given, else the position of `timestep` in the schedule.
   */
  protected currentIndex(timestep: TimestepValue): number {
    if (this.stepIndexValue === null) {
      this.stepIndexValue = this.beginIndexValue ?? this.indexForTimestep(timestepNumber(timestep));
    }
    return this.stepIndexValue;
  }

  /** Move to the next step. */
  protected advance(): void {
    if (this.stepIndexValue === null) throw new InputError('step index advanced before it was set');
    this.stepIndexValue += 1;
  }

  /**
   * Position of a timestep in the schedule. With duplicates the second match is taken (so a
   * loop started mid-way never skips a sigma); a missing timestep is an error unless the class
   * falls back to the last index (`missingIsLast`, the DPM-Solver family).
   */
  indexForTimestep(t: number, opts: { missingIsLast?: boolean } = {}): number {
    const want = this.scheduler.timestepDtype === 'float32' ? Math.fround(t) : t;
    const hits: number[] = [];
    this.timesteps.forEach((v, i) => {
      if (v === want) hits.push(i);
    });
    const [first, second] = hits;
    if (first === undefined) {
      if (opts.missingIsLast ?? this.scheduler.missingTimestepIsLast) return this.timesteps.length - 1;
      throw new InputError(
        `${this.scheduler.className}: timestep ${t} is not in this run's schedule [${this.timesteps.join(', ')}]`,
      );
    }
    return second ?? first;
  }

  /**
   * A per-step table (timesteps, sigmas, …) at a schedule index. The index comes from the step
   * counter, so it runs off the table when `step` is called more often than the schedule has steps
   * (or after a late `setBeginIndex`); diffusers raises an IndexError there, this an InputError
   * naming the table, instead of stepping on with NaN.
   */
  protected scheduleAt(table: ArrayLike<number>, i: number, name: string): number {
    if (!(i >= 0 && i < table.length)) {
      throw new InputError(
        `${this.scheduler.className}: step index ${i} is outside this run's ${name} (${table.length} values); ` +
          'was step called more times than the schedule has steps?',
      );
    }
    return table[i]!;
  }

  /**
   * Schedule indices for `addNoise`: looked up per timestep before the loop has a begin index,
   * the current step index inside a loop, else the begin index (diffusers' rule).
   */
  protected noiseIndices(timesteps: readonly number[]): number[] {
    if (this.beginIndexValue === null) return timesteps.map((t) => this.indexForTimestep(t));
    const i = this.stepIndexValue ?? this.beginIndexValue;
    return timesteps.map(() => i);
  }

  /**
   * Unit Gaussian noise for a step: `varianceNoise` if given, else diffusers' `randn_tensor`
   * with the step's generator. Without one, diffusers draws from torch's global generator; here
   * each run owns a generator with torch's default seed instead, so draws still advance from
   * step to step without any state shared between runs.
   */
  protected stepNoise(dims: readonly number[], opts: StepOptions): Vec {
    const className = this.scheduler.className;
    if (opts.varianceNoise !== undefined) {
      if (opts.generator !== undefined) {
        throw new InputError(`${className}: pass either generator or varianceNoise to step, not both`);
      }
      const v = asVec('varianceNoise', opts.varianceNoise);
      if (v.length !== dims.reduce((a, b) => a * b, 1)) {
        throw new InputError(
          `${className}: varianceNoise dims [${opts.varianceNoise.dims.join(', ')}] do not match the sample`,
        );
      }
      return v;
    }
    this.fallbackGenerator ??= new Generator();
    return randnTensor(dims, { generator: opts.generator ?? this.fallbackGenerator }).data;
  }

  /** Check a step's tensors and return their data. */
  protected inputs(modelOutput: TensorLike, sample: TensorLike): { mo: Vec; x: Vec; dims: readonly number[] } {
    const mo = asVec('model_output', modelOutput);
    const x = asVec('sample', sample);
    if (mo.length !== x.length) {
      throw new InputError(
        `${this.scheduler.className}: model_output dims [${modelOutput.dims.join(', ')}] do not match ` +
          `sample dims [${sample.dims.join(', ')}]`,
      );
    }
    return { mo, x, dims: sample.dims };
  }
}

/** Shared construction of every scheduler: resolve the config and build the training schedule. */
export interface SchedulerInit<C extends SchedulerClassName> {
  readonly className: C;
  readonly config: SchedulerConfigInput;
  /** After `rescale_betas_zero_snr`, also set ᾱ_T = 2^-24 (the sigma-based classes). */
  readonly clampLastAlpha?: boolean;
}

/**
 * What a diffusers scheduler is apart from any loop: its config, the training noise schedule, and
 * a factory for runs. Every class extends it through `Scheduler` (current-run.ts).
 */
export abstract class SchedulerCore<C extends SchedulerClassName = SchedulerClassName> {
  /** diffusers class name (`_class_name`). */
  readonly className: C;
  /** Model evaluations per scheduler step (2 for Heun and KDPM2). */
  abstract readonly order: number;
  /** dtype of diffusers' `timesteps` tensor for this class. */
  abstract readonly timestepDtype: 'int64' | 'float32' | 'float64';
  /** Whether a timestep missing from the schedule maps to the last index (DPM-Solver family). */
  readonly missingTimestepIsLast: boolean = false;
  readonly numTrainTimesteps: number;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  readonly predictionType: PredictionType;
  private configValue: SchedulerConfig;
  private settingsValue: SchedulerSettings<C>;

  protected constructor(init: SchedulerInit<C>) {
    this.className = init.className;
    this.configValue = resolveConfig(init.className, init.config);
    this.settingsValue = parseSchedulerSettings(init.className, this.configValue);
    const s: SchedulerSettings = this.settingsValue;
    const schedule: NoiseSchedule = noiseSchedule(init.className, s, {
      // Exactly the classes whose diffusers signature has the key rescale.
      zeroSnr: 'rescaleBetasZeroSnr' in s && s.rescaleBetasZeroSnr,
      clampLastAlpha: init.clampLastAlpha,
    });
    this.numTrainTimesteps = schedule.numTrainTimesteps;
    this.betas = schedule.betas;
    this.alphasCumprod = schedule.alphasCumprod;
    this.predictionType = s.predictionType;
  }

  /** `Cls.from_config(config)`: class defaults, overridden by the config's keys for this class. */
  static fromConfig<T extends SchedulerCore>(
    this: new (config?: SchedulerConfigInput) => T,
    config: SchedulerConfigInput = {},
  ): T {
    return new this(config);
  }

  /**
   * diffusers' config dict, as `save_config` would write it: snake_case keys, hidden keys of
   * sibling classes, `_class_name`. Pass it to another class's `fromConfig` to swap schedulers.
   */
  get config(): SchedulerConfig {
    return this.configValue;
  }

  /** The class's own config keys, validated and camelCased (settings.ts): what scheduler code reads. */
  get settings(): SchedulerSettings<C> {
    return this.settingsValue;
  }

  /** Change config keys after construction (diffusers' `register_to_config`); both views follow. */
  protected registerToConfig(updates: Readonly<Record<string, boolean | number | string | null>>): void {
    this.configValue = resolveConfig(this.className, { ...this.configValue, ...updates });
    this.settingsValue = parseSchedulerSettings(this.className, this.configValue);
  }

  /** Create an independent run for `numInferenceSteps` steps. */
  createRun(numInferenceSteps: number): SchedulerRun {
    checkInferenceSteps(this.className, numInferenceSteps, this.numTrainTimesteps);
    return this.makeRun(numInferenceSteps);
  }

  protected abstract makeRun(numInferenceSteps: number): SchedulerRun;
}
