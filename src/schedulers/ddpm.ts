/**
 * DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"), diffusers' `DDPMScheduler`:
 * ancestral sampling from the posterior q(x_{t-1} | x_t, x̂₀).
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { AlphaProdRun, AlphaProdScheduler } from './alpha-prod.js';
import type { SchedulerConfigInput } from './config.js';
import { fround, torchExp32, torchLog32 } from './float32.js';
import { like, lin, type Vec } from './ops.js';
import { limitX0, predictFromAlphaProd, x0Limits, type X0Limits } from './prediction.js';
import { timestepNumber, type StepOptions, type StepOutput, type TimestepValue } from './scheduler.js';
import type { SchedulerSettings } from './settings.js';
import { spacedTimesteps } from './timesteps.js';

/** DDPM's `variance_type` values (settings.ts validates them). */
export type DDPMVarianceType = SchedulerSettings<'DDPMScheduler'>['varianceType'];

export class DDPMScheduler extends AlphaProdScheduler<'DDPMScheduler'> {
  readonly order = 1;
  readonly x0Limits: X0Limits;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'DDPMScheduler', config });
    this.x0Limits = x0Limits(this.settings);
  }

  protected makeRun(numInferenceSteps: number): DDPMRun {
    const timesteps = spacedTimesteps(this.settings.timestepSpacing, {
      trainTimesteps: this.numTrainTimesteps,
      steps: numInferenceSteps,
      stepsOffset: this.settings.stepsOffset,
      roundLinspace: true,
    });
    return new DDPMRun(this, numInferenceSteps, timesteps);
  }
}

export class DDPMRun extends AlphaProdRun {
  declare readonly scheduler: DDPMScheduler;

  constructor(scheduler: DDPMScheduler, numInferenceSteps: number, timesteps: number[]) {
    super(scheduler, { numInferenceSteps, timesteps });
  }

  /** The timestep after t in this run's schedule (-1 after the last). */
  private previousTimestep(t: number): number {
    const i = this.timesteps.indexOf(t);
    if (i < 0) throw new InputError(`DDPMScheduler: timestep ${t} is not in this run's schedule`);
    // -1 after the last timestep (i ≥ 0 was found above).
    return this.timesteps[i + 1] ?? -1;
  }

  /**
   * Posterior variance β̃_t = (1 - ᾱ_prev)/(1 - ᾱ_t) · β_t (Ho et al. eq. 7), or the variant
   * the config names; returned as the standard deviation applied to the noise.
   */
  private noiseScale(t: number, prevT: number, predictedVariance: Vec | null): Vec | number {
    const s = this.scheduler;
    const a = s.alphaProdAt(t);
    const aPrev = prevT >= 0 ? s.alphaProdAt(prevT) : 1;
    const betaT = fround(1 - fround(a / aPrev));
    const variance = Math.max(fround(fround(fround(1 - aPrev) / fround(1 - a)) * betaT), fround(1e-20));
    switch (s.settings.varianceType) {
      case 'fixed_small':
        return fround(Math.sqrt(variance));
      case 'fixed_small_log':
        return torchExp32(fround(0.5 * torchLog32(variance)));
      case 'fixed_large':
        return fround(Math.sqrt(betaT));
      case 'fixed_large_log':
        return fround(Math.sqrt(torchLog32(betaT)));
      case 'learned':
        return this.learnedVariance(predictedVariance).map(Math.sqrt);
      case 'learned_range': {
        // Interpolate log-variance between β̃_t and β_t with the model's v in [-1, 1].
        const minLog = torchLog32(variance);
        const maxLog = torchLog32(betaT);
        return this.learnedVariance(predictedVariance).map((v) => {
          const frac = fround(fround(v + 1) / 2);
          const logVar = fround(fround(frac * maxLog) + fround(fround(1 - frac) * minLog));
          return torchExp32(fround(0.5 * logVar));
        });
      }
    }
  }

  /** The model's variance channels, which a learned variance type cannot do without (diffusers fails on None). */
  private learnedVariance(predictedVariance: Vec | null): Vec {
    if (predictedVariance === null) {
      throw new InputError(
        `DDPMScheduler: variance_type "${this.scheduler.settings.varianceType}" needs a model output with twice ` +
          "the sample's channels (the second half is the predicted variance)",
      );
    }
    return predictedVariance;
  }

  /**
   * 1. ᾱ_t, ᾱ_prev (1 past the end), α_t = ᾱ_t/ᾱ_prev, β_t = 1 - α_t.
   * 2. x̂₀ from the model output; threshold or clip.
   * 3. Posterior mean μ̃ = √ᾱ_prev β_t/(1-ᾱ_t) x̂₀ + √α_t (1-ᾱ_prev)/(1-ᾱ_t) x_t (Ho et al. eq. 7).
   * 4. For t > 0 add σ_t z.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const learned = s.settings.varianceType === 'learned' || s.settings.varianceType === 'learned_range';
    let mo = modelOutput;
    let predictedVariance: Vec | null = null;
    const [batch, moChannels] = modelOutput.dims;
    const sampleChannels = sample.dims[1];
    if (
      learned &&
      batch !== undefined &&
      moChannels !== undefined &&
      sampleChannels !== undefined &&
      moChannels === 2 * sampleChannels
    ) {
      const split = splitChannels(modelOutput, batch, moChannels);
      mo = split.first;
      predictedVariance = split.second;
    }
    const { mo: out, x, dims } = this.inputs(mo, sample);
    // 1.
    const t = timestepNumber(timestep);
    const prevT = this.previousTimestep(t);
    const a = s.alphaProdAt(t);
    const aPrev = prevT >= 0 ? s.alphaProdAt(prevT) : 1;
    const b = fround(1 - a);
    const bPrev = fround(1 - aPrev);
    const alphaT = fround(a / aPrev);
    const betaT = fround(1 - alphaT);
    // 2.
    const x0 = limitX0(predictFromAlphaProd(s.predictionType, a, out, x).x0, dims, s.x0Limits);
    // 3.
    const x0Coeff = fround(fround(fround(Math.sqrt(aPrev)) * betaT) / b);
    const xCoeff = fround(fround(fround(Math.sqrt(alphaT)) * bPrev) / b);
    let prev = lin([[x0Coeff, x0], [xCoeff, x]]);
    // 4.
    if (t > 0) {
      const z = this.stepNoise(dims, opts);
      const sd = this.noiseScale(t, prevT, predictedVariance);
      // A per-element sd is the variance half of the model output: as long as the sample, and z.
      const noise = typeof sd === 'number' ? lin([[sd, z]]) : z.map((v, i) => v * sd[i]!);
      prev = lin([[1, prev], [1, noise]]);
    }
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}

/** Split a (B, 2C, ...) tensor, whose first two dims the caller has read, into its first and second C channels. */
function splitChannels(t: TensorLike, batch: number, channels2: number): { first: Tensor<'float32'>; second: Vec } {
  const data = t.data as Float32Array;
  const c = channels2 / 2;
  const inner = t.dims.slice(2).reduce((p, q) => p * q, 1);
  const first = new Float32Array(batch * c * inner);
  const second = new Float32Array(batch * c * inner);
  for (let bi = 0; bi < batch; bi++) {
    const src = bi * channels2 * inner;
    first.set(data.subarray(src, src + c * inner), bi * c * inner);
    second.set(data.subarray(src + c * inner, src + 2 * c * inner), bi * c * inner);
  }
  return { first: new Tensor('float32', first, [batch, c, ...t.dims.slice(2)]), second };
}
