/**
 * Ancestral DPM-Solver-2 (k-diffusion's `sample_dpm_2_ancestral`), diffusers'
 * `KDPM2AncestralDiscreteScheduler`: the KDPM2 midpoint step aimed at σ_down, plus fresh
 * noise σ_up after each full step.
 */
import type { Tensor, TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { doubleAfterFirst, KarrasRun, KarrasScheduler } from './karras.js';
import { logMidpoint } from './kdpm2.js';
import { like, lin, type Vec } from './ops.js';
import { predictX0FromSigma } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

/** Per-step tables of the ancestral split, each laid out like the sigmas. */
interface AncestralTables {
  readonly sigmas: Float32Array;
  readonly midpoints: Float32Array;
  readonly up: Float32Array;
  readonly down: Float32Array;
}

export class KDPM2AncestralDiscreteScheduler extends KarrasScheduler<'KDPM2AncestralDiscreteScheduler'> {
  readonly order = 2;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'KDPM2AncestralDiscreteScheduler', config }, { float64RampTimesteps: true });
  }

  /**
   * 1. The usual grid σ_0 … σ_{n-1}, σ_n = 0.
   * 2. Ancestral split of each move σ_i → σ_{i+1}: σ_up = √(σ_{i+1}² (σ_i² - σ_{i+1}²)/σ_i²),
   *    σ_down = √(σ_{i+1}² - σ_up²) (σ_down = 0 at the end).
   * 3. Midpoints √(σ_i σ_down,i) (the last two set to 0) and their timesteps.
   * 4. Interleave timesteps [t_0, t_mid,0, t_1, t_mid,1, t_2, …]; tables doubled after the first.
   */
  protected makeRun(n: number): KDPM2AncestralRun {
    const grid = this.sigmaGrid(n, { boundsFromConfig: true, roundKarrasTimesteps: true });
    const sigmas = Float32Array.from([...grid.sigmas, 0]);
    const m = sigmas.length;
    const up = new Float32Array(m);
    const down = new Float32Array(m);
    sigmas.forEach((sg, i) => {
      const s2 = fround(sg * sg);
      // i + 1 < m = sigmas.length.
      const next = i + 1 < m ? sigmas[i + 1]! : 0;
      const n2 = fround(next * next);
      // Rounded to float32 as up[i] stores it, and read back as such.
      const u = fround(Math.sqrt(fround(fround(n2 * fround(s2 - n2)) / s2)));
      up[i] = u;
      down[i] = i === m - 1 ? 0 : Math.sqrt(fround(n2 - fround(u * u)));
    });
    // down has the length m of sigmas.
    const mid = Float32Array.from(sigmas, (sg, i) => (i >= m - 2 ? 0 : logMidpoint(sg, down[i]!)));
    const midT = Array.from(mid, (sg) => this.timestepForSigma32(sg));
    const ts = this.timestepDtype === 'float32' ? grid.timesteps.map(fround) : grid.timesteps;
    // The grid has a timestep and a σ (so a midpoint) per step: k < n indexes both.
    const timesteps = [at(ts, 0)];
    for (let k = 1; k < n; k++) timesteps.push(at(midT, k - 1), at(ts, k));
    const doubled = (t: Float32Array) => Float32Array.from(doubleAfterFirst(t, 'extra'));
    return new KDPM2AncestralRun(this, n, timesteps, {
      sigmas: doubled(sigmas),
      midpoints: doubled(mid),
      up: doubled(up),
      down: doubled(down),
    });
  }
}

export class KDPM2AncestralRun extends KarrasRun {
  declare readonly scheduler: KDPM2AncestralDiscreteScheduler;
  readonly sigmasInterpol: Float32Array;
  readonly sigmasUp: Float32Array;
  readonly sigmasDown: Float32Array;
  private firstSample: Vec | null = null;

  constructor(scheduler: KDPM2AncestralDiscreteScheduler, n: number, timesteps: number[], t: AncestralTables) {
    super(scheduler, {
      numInferenceSteps: n,
      timesteps,
      sigmas: t.sigmas,
      initNoiseSigma: scheduler.initNoiseSigmaFor(t.sigmas),
    });
    this.sigmasInterpol = t.midpoints;
    this.sigmasUp = t.up;
    this.sigmasDown = t.down;
  }

  get stateInFirstOrder(): boolean {
    return this.firstSample === null;
  }

  override scaleModelInput(sample: TensorLike, timestep: TimestepValue): Tensor<'float32'> {
    const i = this.currentIndex(timestep);
    const sigma =
      this.firstSample === null ? this.sigma(i) : this.scheduleAt(this.sigmasInterpol, i - 1, 'sigmas_interpol');
    return this.scaleBySigma(sample, sigma);
  }

  /**
   * First call at σ: Euler step to the midpoint σ_mid.
   * Second call at σ_mid: x_prev = x + d_mid (σ_down - σ) from the step's first sample, then
   * + σ_up z.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    const first = this.firstSample === null;
    const j = first ? i : i - 1;
    const sigma = this.sigma(j);
    const sigmaMid = this.scheduleAt(this.sigmasInterpol, j, 'sigmas_interpol');
    const x0 = predictX0FromSigma(s.predictionType, first ? sigma : sigmaMid, mo, x);
    let prev: Vec;
    if (this.firstSample === null) {
      prev = KarrasRun.move(x, KarrasRun.derivative(x, x0, sigma), fround(sigmaMid - sigma));
      this.firstSample = x;
    } else {
      const d = KarrasRun.derivative(x, x0, sigmaMid);
      prev = KarrasRun.move(this.firstSample, d, fround(this.scheduleAt(this.sigmasDown, i - 1, 'sigmas_down') - sigma));
      this.firstSample = null;
      prev = lin([[1, prev], [this.scheduleAt(this.sigmasUp, i - 1, 'sigmas_up'), this.stepNoise(dims, opts)]]);
    }
    this.advance();
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
