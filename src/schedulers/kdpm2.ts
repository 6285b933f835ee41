/**
 * DPM-Solver-2 in Karras σ-space (k-diffusion's `sample_dpm_2`, after Lu et al. 2022 and Karras
 * et al. 2022), diffusers' `KDPM2DiscreteScheduler`: a midpoint method whose midpoint is the
 * geometric mean of consecutive sigmas; two model calls per step.
 */
import type { Tensor, TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import type { SchedulerConfigInput } from './config.js';
import { fround, torchExp32, torchLog32 } from './float32.js';
import { doubleAfterFirst, KarrasRun, KarrasScheduler } from './karras.js';
import { like, type Vec } from './ops.js';
import { predictX0FromSigma } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

/** exp(lerp(log a, log b, ½)) in torch float32: the geometric midpoint of two sigmas. */
export function logMidpoint(a: number, b: number): number {
  const la = torchLog32(a);
  const lb = torchLog32(b);
  // torch.lerp with weight ½ takes the "end - (end - start)·(1 - w)" branch.
  return torchExp32(fround(lb - fround(fround(lb - la) * 0.5)));
}

export class KDPM2DiscreteScheduler extends KarrasScheduler<'KDPM2DiscreteScheduler'> {
  readonly order = 2;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'KDPM2DiscreteScheduler', config }, { float64RampTimesteps: true });
  }

  /**
   * 1. The usual grid of n timesteps and σ_0 … σ_{n-1}, then σ_n = 0.
   * 2. Midpoints σ_{i-½} = √(σ_i σ_{i-1}) (σ_{-½} is NaN and unused) and their timesteps t(σ).
   * 3. Interleave: timesteps [t_0, t_{½}, t_1, t_{1½}, t_2, …], σ and midpoints doubled.
   */
  protected makeRun(n: number): KDPM2Run {
    const grid = this.sigmaGrid(n, { boundsFromConfig: true, roundKarrasTimesteps: true });
    const sigmas = Float32Array.from([...grid.sigmas, 0]);
    const m = sigmas.length;
    // (i - 1 + m) % m is in [0, m): σ_{-1} wraps to the last σ, as torch's roll does.
    const mid = Float32Array.from(sigmas, (sg, i) => logMidpoint(sg, sigmas[(i - 1 + m) % m]!));
    const midT = Array.from(mid, (sg) => this.timestepForSigma32(sg));
    const ts = this.timestepDtype === 'float32' ? grid.timesteps.map(fround) : grid.timesteps;
    // The grid has a timestep and a σ (so a midpoint) per step: k < n indexes both.
    const timesteps = [at(ts, 0)];
    for (let k = 1; k < n; k++) timesteps.push(at(midT, k), at(ts, k));
    return new KDPM2Run(this, n, timesteps, {
      sigmas: Float32Array.from(doubleAfterFirst(sigmas, 'extra')),
      midpoints: Float32Array.from(doubleAfterFirst(mid, 'extra')),
    });
  }
}

export class KDPM2Run extends KarrasRun {
  declare readonly scheduler: KDPM2DiscreteScheduler;
  /** Interleaved midpoint sigmas (diffusers' `sigmas_interpol`). */
  readonly sigmasInterpol: Float32Array;
  /** The sample at the start of the current step, between its two calls. */
  private firstSample: Vec | null = null;

  constructor(
    scheduler: KDPM2DiscreteScheduler,
    n: number,
    timesteps: number[],
    tables: { sigmas: Float32Array; midpoints: Float32Array },
  ) {
    super(scheduler, {
      numInferenceSteps: n,
      timesteps,
      sigmas: tables.sigmas,
      initNoiseSigma: scheduler.initNoiseSigmaFor(tables.sigmas),
    });
    this.sigmasInterpol = tables.midpoints;
  }

  get stateInFirstOrder(): boolean {
    return this.firstSample === null;
  }

  override scaleModelInput(sample: TensorLike, timestep: TimestepValue): Tensor<'float32'> {
    const i = this.currentIndex(timestep);
    return this.scaleBySigma(sample, this.firstSample === null ? this.sigma(i) : this.midpoint(i));
  }

  /** The run's midpoint σ at schedule index i (an InputError past the end of the schedule). */
  private midpoint(i: number): number {
    return this.scheduleAt(this.sigmasInterpol, i, 'sigmas_interpol');
  }

  /**
   * First call at σ: Euler step to the midpoint σ_mid with d = (x - x̂₀(σ))/σ.
   * Second call at σ_mid: x_prev = x + d_mid (σ_next - σ) with d_mid = (x_mid - x̂₀(σ_mid))/σ_mid,
   * starting again from the step's first sample.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    void opts;
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    const first = this.firstSample === null;
    const sigma = this.sigma(first ? i : i - 1);
    const sigmaMid = this.midpoint(first ? i + 1 : i);
    const sigmaNext = this.sigma(first ? i + 1 : i);
    const x0 = predictX0FromSigma(s.predictionType, first ? sigma : sigmaMid, mo, x);
    let prev: Vec;
    if (this.firstSample === null) {
      prev = KarrasRun.move(x, KarrasRun.derivative(x, x0, sigma), fround(sigmaMid - sigma));
      this.firstSample = x;
    } else {
      const d = KarrasRun.derivative(x, x0, sigmaMid);
      prev = KarrasRun.move(this.firstSample, d, fround(sigmaNext - sigma));
      this.firstSample = null;
    }
    this.advance();
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
