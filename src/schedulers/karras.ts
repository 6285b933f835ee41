/**
 * Common ground of the Karras-style discrete samplers (Euler, Euler ancestral, LMS, Heun, KDPM2
 * and KDPM2 ancestral): they integrate the probability-flow ODE in σ = √((1-ᾱ)/ᾱ), feed the
 * model x/√(σ²+1), and use float32 timesteps that may fall between training steps.
 */
import type { Tensor, TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import { addNoiseSigma } from './add-noise.js';
import { trainSigmas } from './betas.js';
import { fround, roundHalfEven } from './float32.js';
import { div, like, lin, asVec, type Vec } from './ops.js';
import { configNumber } from './config.js';
import type { SchedulerSettings } from './settings.js';
import { Scheduler } from './current-run.js';
import { SchedulerRun, timestepList, type SchedulerInit, type TimestepValue } from './scheduler.js';
import { interpSigmas, logSigmas, rampSigmas, sigmaRamp, sigmaToT, type SigmaRamp } from './sigmas.js';
import { spacedTimesteps } from './timesteps.js';

export type KarrasClassName =
  | 'EulerDiscreteScheduler'
  | 'EulerAncestralDiscreteScheduler'
  | 'LMSDiscreteScheduler'
  | 'HeunDiscreteScheduler'
  | 'KDPM2DiscreteScheduler'
  | 'KDPM2AncestralDiscreteScheduler';

/** An inference grid before the class-specific post-processing. */
export interface SigmaGrid {
  /** Timesteps: float32 values from the spacing, or float64 values from σ → t after a ramp. */
  readonly timesteps: number[];
  /** σ per timestep in float64 (the final σ is appended by each class). */
  readonly sigmas: number[];
}

/**
 * [v₀, v₁, v₁, v₂, v₂, …]: the first value once and every later one twice, the layout of the
 * two-call samplers (torch's `repeat_interleave(2)` after the first). `last` says what happens
 * to the final value: doubled like the others, kept `single`, or repeated once more (`extra`).
 */
export function doubleAfterFirst(values: ArrayLike<number>, last: 'double' | 'single' | 'extra'): number[] {
  const [head, ...rest] = Array.from(values);
  // Every table laid out this way holds at least one step (num_inference_steps ≥ 1).
  if (head === undefined) throw new RangeError('doubleAfterFirst: no values to lay out');
  const tail = rest.at(-1) ?? head;
  const middle = last === 'single' ? rest.slice(0, -1) : rest;
  const out = [head, ...middle.flatMap((x) => [x, x])];
  if (last !== 'double') out.push(tail);
  return out;
}

export abstract class KarrasScheduler<C extends KarrasClassName = KarrasClassName> extends Scheduler<C> {
  /** float32, or float64 for KDPM2 with a sigma ramp (diffusers keeps numpy's float64 there). */
  readonly timestepDtype: 'float32' | 'float64';
  /** Training sigmas σ_t (float32), indexed by training timestep. */
  readonly trainSigmas: Float32Array;
  /** The ramp of the `use_*_sigmas` flags (none for Euler ancestral, which lacks them). */
  readonly sigmaRamp: SigmaRamp;
  private logTable: Float32Array | undefined;

  /** @param opts.float64RampTimesteps whether timesteps stay float64 after a ramp (KDPM2) */
  protected constructor(init: SchedulerInit<C>, opts: { float64RampTimesteps?: boolean } = {}) {
    super(init);
    this.trainSigmas = trainSigmas(this.alphasCumprod);
    const s: SchedulerSettings<KarrasClassName> = this.settings;
    this.sigmaRamp = 'useKarrasSigmas' in s ? sigmaRamp(this.className, s) : null;
    this.timestepDtype = opts.float64RampTimesteps && this.sigmaRamp !== null ? 'float64' : 'float32';
  }

  /** numpy float32 log of the training sigmas (built on first use). */
  get logSigmas(): Float32Array {
    this.logTable ??= logSigmas(this.trainSigmas);
    return this.logTable;
  }

  /** `init_noise_sigma` for a σ table: max σ for linspace/trailing spacing, else √(max σ² + 1). */
  initNoiseSigmaFor(sigmas: ArrayLike<number>): number {
    let max = -Infinity;
    for (let i = 0; i < sigmas.length; i++) {
      const v = sigmas[i]!;
      if (v > max) max = v;
    }
    const spacing = this.settings.timestepSpacing;
    if (spacing === 'linspace' || spacing === 'trailing') return max;
    return fround(Math.sqrt(fround(fround(max * max) + 1)));
  }

  protected override trainInitNoiseSigma(): number {
    return this.initNoiseSigmaFor(this.trainSigmas);
  }

  /** Inference timesteps from the spacing, as float32 values. */
  protected spacingTimesteps(n: number): number[] {
    return spacedTimesteps(this.settings.timestepSpacing, {
      trainTimesteps: this.numTrainTimesteps,
      steps: n,
      stepsOffset: this.settings.stepsOffset,
      roundLinspace: false,
    }).map(fround);
  }

  /**
   * Replace interpolated sigmas by the configured ramp (if any) between the grid's ends, or the
   * config's `sigma_min` / `sigma_max` where the class reads them, and map each σ back to a
   * timestep t(σ). Returns the input unchanged without a ramp.
   */
  protected applyRamp(
    grid: SigmaGrid,
    n: number,
    opts: { boundsFromConfig: boolean; roundKarrasTimesteps?: boolean },
  ): SigmaGrid {
    if (this.sigmaRamp === null) return grid;
    const useConfig = opts.boundsFromConfig || this.sigmaRamp !== 'karras';
    // The grid has one σ per inference step, n ≥ 1 of them.
    const [lo, hi] = this.rampBounds(at(grid.sigmas, grid.sigmas.length - 1), at(grid.sigmas, 0), useConfig);
    const sigmas = rampSigmas(this.sigmaRamp, lo, hi, n);
    let timesteps = sigmas.map((sg) => sigmaToT(sg, this.logSigmas));
    if (this.sigmaRamp === 'karras' && opts.roundKarrasTimesteps) timesteps = timesteps.map(roundHalfEven);
    return { timesteps, sigmas };
  }

  /**
   * The usual grid:
   * 1. timesteps from the spacing (float32);
   * 2. σ by interpolating the training sigmas there (float64);
   * 3. the ramp, if configured.
   */
  protected sigmaGrid(n: number, opts: { boundsFromConfig: boolean; roundKarrasTimesteps?: boolean }): SigmaGrid {
    const timesteps = this.spacingTimesteps(n);
    return this.applyRamp({ timesteps, sigmas: interpSigmas(timesteps, this.trainSigmas) }, n, opts);
  }

  /**
   * σ_min / σ_max of a ramp: the config's values when present and set, else the grid's ends.
   * Read from the dict: only Euler has the keys, the others see them as hidden keys.
   */
  protected rampBounds(gridMin: number, gridMax: number, useConfig: boolean): [number, number] {
    const read = (key: string): number | null => (useConfig ? configNumber(this.config, key) : null);
    return [read('sigma_min') ?? gridMin, read('sigma_max') ?? gridMax];
  }

  /** σ → t against the training log-sigma table in float32 (KDPM2's interpolated timesteps). */
  timestepForSigma32(sigma: number): number {
    return sigmaToT(sigma, this.logSigmas, { float32Result: true });
  }
}

export abstract class KarrasRun extends SchedulerRun {
  declare readonly scheduler: KarrasScheduler;
  declare readonly sigmas: Float32Array;

  /** The model input at this step: x / √(σ_i² + 1) (KDPM2's runs pick their σ per half step). */
  override scaleModelInput(sample: TensorLike, timestep: TimestepValue): Tensor<'float32'> {
    return this.scaleBySigma(sample, this.sigma(this.currentIndex(timestep)));
  }

  /** The run's σ at schedule index i (an InputError past the end of the schedule). */
  protected sigma(i: number): number {
    return this.scheduleAt(this.sigmas, i, 'sigmas');
  }

  /** x / √(σ² + 1): the model sees unit-variance inputs. */
  protected scaleBySigma(sample: TensorLike, sigma: number): Tensor<'float32'> {
    const x = asVec('sample', sample);
    return like(sample.dims, div(x, fround(Math.sqrt(fround(fround(sigma * sigma) + 1)))));
  }

  /** d = (x - x̂₀)/σ, the slope dx/dσ of the probability-flow ODE. */
  protected static derivative(x: Vec, x0: Vec, sigma: number): Vec {
    return div(lin([[1, x], [-1, x0]]), sigma);
  }

  /** x + d·dt: one explicit step of size dt along slope d. */
  protected static move(x: Vec, d: Vec, dt: number): Vec {
    return lin([[1, x], [dt, d]]);
  }

  addNoise(
    original: TensorLike,
    noise: TensorLike,
    timesteps: TimestepValue | readonly (number | bigint)[],
  ): Tensor<'float32'> {
    const idx = this.noiseIndices(timestepList(timesteps));
    return addNoiseSigma(
      idx.map((i) => this.sigma(i)),
      original,
      noise,
    );
  }
}
