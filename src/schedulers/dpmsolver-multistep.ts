/**
 * DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver" and "DPM-Solver++: Fast
 * Solver for Guided Sampling of Diffusion Probabilistic Models"), diffusers'
 * `DPMSolverMultistepScheduler`, with the SDE variants of Gonzalez et al. 2023 ("SEEDS").
 */
import { InputError } from '../errors.js';
import type { TensorLike } from '../tensor.js';
import type { SchedulerConfigInput } from './config.js';
import { dpmScalars, DpmRun, DpmScheduler, firstChannels, withNoise, type DpmAlgorithm, type DpmSolverType } from './dpm.js';
import { fround } from './float32.js';
import { div, like, lin, sub, type Vec } from './ops.js';
import { limitX0 } from './prediction.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

export class DPMSolverMultistepScheduler extends DpmScheduler<'DPMSolverMultistepScheduler'> {
  readonly order = 1;
  readonly algorithm: DpmAlgorithm;
  readonly solverType: DpmSolverType;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'DPMSolverMultistepScheduler', config, clampLastAlpha: true });
    const { algorithm, solverType } = this.dpmAlgorithm(this.settings);
    this.algorithm = algorithm;
    this.solverType = solverType;
  }

  protected makeRun(n: number): DPMSolverMultistepRun {
    const s = this.settings;
    const { timesteps, sigmas } = this.dpmGrid(n, {
      spacing: s.timestepSpacing,
      stepsOffset: s.stepsOffset,
      lastTimestep: this.numTrainTimesteps - this.lambdaClippedCount(s.lambdaMinClipped),
      roundRampTimesteps: s.betaSchedule !== 'squaredcos_cap_v2',
      finalSigma: 'config',
      finalSigmasType: s.finalSigmasType,
      luLambdas: s.useLuLambdas,
    });
    return new DPMSolverMultistepRun(this, timesteps, sigmas);
  }

  /** The part of the model output the solver uses: the first 3 channels for learned-variance ε models. */
  solverInput(modelOutput: TensorLike): TensorLike {
    const learned = this.settings.varianceType === 'learned' || this.settings.varianceType === 'learned_range';
    return learned && this.predictionType === 'epsilon' ? firstChannels(modelOutput, 3) : modelOutput;
  }

  /**
   * diffusers' `convert_model_output`: x̂₀ for DPM-Solver++ (data prediction), ε̂ for DPM-Solver
   * (noise prediction, thresholded through x̂₀ when configured).
   */
  convertModelOutput(sigma: number, mo: Vec, sample: Vec, dims: readonly number[]): Vec {
    if (this.algorithm === 'dpmsolver++' || this.algorithm === 'sde-dpmsolver++') {
      return this.x0At(sigma, mo, sample, dims);
    }
    const eps = this.epsAt(sigma, mo, sample);
    if (!this.x0Limits.thresholding) return eps;
    const { alpha, sigma: s } = this.alphaSigma(sigma);
    const x0 = limitX0(div(lin([[1, sample], [-s, eps]]), alpha), dims, this.x0Limits);
    return div(lin([[1, sample], [-alpha, x0]]), s);
  }
}

export class DPMSolverMultistepRun extends DpmRun {
  declare readonly scheduler: DPMSolverMultistepScheduler;

  constructor(scheduler: DPMSolverMultistepScheduler, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, timesteps.length, timesteps, sigmas);
  }

  /**
   * 1. Convert the model output (x̂₀ or ε̂) and push it on the history.
   * 2. Order: 1 for the first step and (with `lower_order_final`, short schedules or a zero
   *    final σ) the last; 2 for the second and the second to last; else `solver_order`.
   * 3. The DPM-Solver(++) update of that order from σ_i to σ_{i+1}.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(s.solverInput(modelOutput), sample);
    const i = this.currentIndex(timestep);
    const n = this.timesteps.length;
    const set = s.settings;
    // 2.
    const shortSchedule = set.lowerOrderFinal && n < 15;
    const lowerFinal = i === n - 1 && (set.eulerAtFinal || shortSchedule || set.finalSigmasType === 'zero');
    const lowerSecond = i === n - 2 && shortSchedule;
    // 1.
    this.pushModelOutput(s.convertModelOutput(this.sigma(i), mo, x, dims));
    const sde = s.algorithm === 'sde-dpmsolver' || s.algorithm === 'sde-dpmsolver++';
    const z = sde ? this.stepNoise(dims, opts) : null;
    // 3.
    let prev: Vec;
    if (set.solverOrder === 1 || this.lowerOrderNums < 1 || lowerFinal) prev = this.firstOrder(i, x, z);
    else if (set.solverOrder === 2 || this.lowerOrderNums < 2 || lowerSecond) prev = this.secondOrder(i, x, z);
    else prev = this.thirdOrder(i, x, z);
    this.countStep();
    this.advance();
    return { prevSample: like(dims, prev) };
  }

  /** DPM-Solver-1 (= DDIM for ++): x_t = σ_t/σ_s x - α_t (e^{-h} - 1) D₀, and variants. */
  private firstOrder(i: number, x: Vec, z: Vec | null): Vec {
    return this.dpmFirstOrder(this.scheduler.algorithm, i, x, z);
  }

  /**
   * Multistep second order: r₀ = h₀/h, D₀ = m₀, D₁ = (m₀ - m₁)/r₀, then the midpoint (½ D₁ with
   * the first-order weight) or Heun (the φ₂ weight) correction.
   */
  private secondOrder(i: number, x: Vec, z: Vec | null): Vec {
    const s = this.scheduler;
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const c = dpmScalars(s.algorithm, t, s0);
    const h0 = fround(s0.lambda - s1.lambda);
    const r0 = fround(h0 / c.h);
    const m0 = this.history(0);
    const d1 = lin([[fround(1 / r0), sub(m0, this.history(1))]]);
    const heun = s.solverType === 'heun';
    switch (s.algorithm) {
      case 'dpmsolver++': {
        const w = fround(t.alpha * fround(c.expNegH - 1));
        const w1 = heun ? fround(t.alpha * fround(fround(fround(c.expNegH - 1) / c.h) + 1)) : -fround(0.5 * w);
        return lin([[c.xCoef, x], [-w, m0], [w1, d1]]);
      }
      case 'dpmsolver': {
        const w = fround(t.sigma * fround(c.expH - 1));
        const w1 = heun ? fround(t.sigma * fround(fround(fround(c.expH - 1) / c.h) - 1)) : fround(0.5 * w);
        return lin([[c.xCoef, x], [-w, m0], [-w1, d1]]);
      }
      case 'sde-dpmsolver++': {
        const w = fround(t.alpha * fround(1 - c.expNeg2H));
        const w1 = heun
          ? fround(t.alpha * fround(fround(fround(1 - c.expNeg2H) / fround(-2 * c.h)) + 1))
          : fround(0.5 * w);
        return withNoise([[c.xCoef, x], [w, m0], [w1, d1]], c.zCoef, z);
      }
      case 'sde-dpmsolver': {
        const w = fround(t.sigma * fround(c.expH - 1));
        const w1 = heun ? fround(2 * fround(t.sigma * fround(fround(fround(c.expH - 1) / c.h) - 1))) : w;
        return withNoise([[c.xCoef, x], [-fround(2 * w), m0], [-w1, d1]], c.zCoef, z);
      }
    }
  }

  /**
   * Multistep third order: D₁ = D₁₀ + r₀/(r₀ + r₁)(D₁₀ - D₁₁), D₂ = (D₁₀ - D₁₁)/(r₀ + r₁) with
   * D₁₀ = (m₀ - m₁)/r₀, D₁₁ = (m₁ - m₂)/r₁; weights φ₁, φ₂, φ₃ of the exponential integrator.
   */
  private thirdOrder(i: number, x: Vec, z: Vec | null): Vec {
    const s = this.scheduler;
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const s2 = this.point(i - 2);
    const c = dpmScalars(s.algorithm, t, s0);
    const r0 = fround(fround(s0.lambda - s1.lambda) / c.h);
    const r1 = fround(fround(s1.lambda - s2.lambda) / c.h);
    const [m0, m1, m2] = [this.history(0), this.history(1), this.history(2)];
    const d10 = lin([[fround(1 / r0), sub(m0, m1)]]);
    const d11 = lin([[fround(1 / r1), sub(m1, m2)]]);
    const gap = sub(d10, d11);
    const r01 = fround(r0 + r1);
    const d1 = lin([[1, d10], [fround(r0 / r01), gap]]);
    const d2 = lin([[fround(1 / r01), gap]]);
    const h2 = fround(c.h * c.h);
    switch (s.algorithm) {
      case 'dpmsolver++': {
        const e = fround(c.expNegH - 1);
        return lin([
          [c.xCoef, x],
          [-fround(t.alpha * e), m0],
          [fround(t.alpha * fround(fround(e / c.h) + 1)), d1],
          [-fround(t.alpha * fround(fround(fround(e + c.h) / h2) - 0.5)), d2],
        ]);
      }
      case 'dpmsolver': {
        const e = fround(c.expH - 1);
        return lin([
          [c.xCoef, x],
          [-fround(t.sigma * e), m0],
          [-fround(t.sigma * fround(fround(e / c.h) - 1)), d1],
          [-fround(t.sigma * fround(fround(fround(e - c.h) / h2) - 0.5)), d2],
        ]);
      }
      case 'sde-dpmsolver++': {
        const e = fround(1 - c.expNeg2H);
        const m2h = fround(-2 * c.h);
        return withNoise(
          [
            [c.xCoef, x],
            [fround(t.alpha * e), m0],
            [fround(t.alpha * fround(fround(e / m2h) + 1)), d1],
            [fround(t.alpha * fround(fround(fround(e - fround(2 * c.h)) / fround(m2h * m2h)) - 0.5)), d2],
          ],
          c.zCoef,
          z,
        );
      }
      case 'sde-dpmsolver':
        throw new InputError('DPMSolverMultistepScheduler: sde-dpmsolver has no third-order update; use solver_order <= 2');
    }
  }
}
