/**
 * DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator"),
 * diffusers' `DEISMultistepScheduler`: the ε-form exponential integrator with the past noise
 * predictions extrapolated by Lagrange polynomials in log ρ, ρ = σ_t/α_t ("logrho").
 */
import type { TensorLike } from '../tensor.js';
import type { SchedulerConfigInput } from './config.js';
import { DpmRun, DpmScheduler, type DpmPoint } from './dpm.js';
import { fround, numpyLog32, torchExp32 } from './float32.js';
import { div, like, lin, scale, type Vec } from './ops.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

export class DEISMultistepScheduler extends DpmScheduler<'DEISMultistepScheduler'> {
  readonly order = 1;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'DEISMultistepScheduler', config });
    // The DPM-Solver and UniPC variants map to DEIS's only one, as in diffusers.
    if (this.settings.algorithmType !== 'deis') this.registerToConfig({ algorithm_type: 'deis' });
    if (this.settings.solverType !== 'logrho') this.registerToConfig({ solver_type: 'logrho' });
  }

  protected makeRun(n: number): DEISRun {
    const { timesteps, sigmas } = this.dpmGrid(n, {
      spacing: this.settings.timestepSpacing,
      stepsOffset: this.settings.stepsOffset,
      lastTimestep: this.numTrainTimesteps,
      roundRampTimesteps: true,
      finalSigma: 'deis',
      finalSigmasType: 'sigma_min',
    });
    return new DEISRun(this, timesteps, sigmas);
  }

  /** ε̂ through x̂₀ (so thresholding applies): ε̂ = (x - α_t x̂₀)/σ_t. */
  convertModelOutput(sigma: number, mo: Vec, sample: Vec, dims: readonly number[]): Vec {
    const x0 = this.x0At(sigma, mo, sample, dims);
    const { alpha, sigma: s } = this.alphaSigma(sigma);
    return div(lin([[1, sample], [-alpha, x0]]), s);
  }
}

/** numpy's float32 log of a float32 scalar (DEIS calls np.log on 0-d tensors). */
const ln = numpyLog32;

/** ρ = σ/α at a point (float32). */
const rho = (p: DpmPoint): number => fround(p.sigma / p.alpha);

export class DEISRun extends DpmRun {
  declare readonly scheduler: DEISMultistepScheduler;

  constructor(scheduler: DEISMultistepScheduler, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, timesteps.length, timesteps, sigmas);
  }

  /**
   * 1. Orders warm up from 1; with `lower_order_final` on short schedules the last two steps
   *    use orders 1 and 2.
   * 2. Convert to ε̂ and push on the history; update of that order.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    void opts;
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    const n = this.timesteps.length;
    // 1.
    const lof = s.settings.lowerOrderFinal && n < 15;
    const lowerFinal = i === n - 1 && lof;
    const lowerSecond = i === n - 2 && lof;
    // 2.
    this.pushModelOutput(s.convertModelOutput(this.sigma(i), mo, x, dims));
    let prev: Vec;
    const { solverOrder } = s.settings;
    if (solverOrder === 1 || this.lowerOrderNums < 1 || lowerFinal) prev = this.firstOrder(i, x);
    else if (solverOrder === 2 || this.lowerOrderNums < 2 || lowerSecond) prev = this.secondOrder(i, x);
    else prev = this.thirdOrder(i, x);
    this.countStep();
    this.advance();
    return { prevSample: like(dims, prev) };
  }

  /** x_t = α_t/α_s x - σ_t (e^h - 1) ε̂ (the DDIM step in ε form). */
  private firstOrder(i: number, x: Vec): Vec {
    const t = this.point(i + 1);
    const s = this.point(i);
    const h = fround(t.lambda - s.lambda);
    return lin([[fround(t.alpha / s.alpha), x], [-fround(t.sigma * fround(torchExp32(h) - 1)), this.history(0)]]);
  }

  /**
   * Second order: with ρ = σ/α, ∫ of the Lagrange basis in log ρ gives
   * c₁ = F(ρ_t; ρ₀, ρ₁) - F(ρ₀; ρ₀, ρ₁), F(t; b, c) = t (log t - log c - 1)/(log b - log c);
   * x_t = α_t (x/α₀ + c₁ ε₀ + c₂ ε₁).
   */
  private secondOrder(i: number, x: Vec): Vec {
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const [rt, r0, r1] = [rho(t), rho(s0), rho(s1)];
    const ind = (tt: number, b: number, c: number): number =>
      fround(fround(tt * fround(fround(fround(-ln(c) + ln(tt)) - 1))) / fround(ln(b) - ln(c)));
    const c1 = fround(ind(rt, r0, r1) - ind(r0, r0, r1));
    const c2 = fround(ind(rt, r1, r0) - ind(r0, r1, r0));
    const inner = lin([[1, div(x, s0.alpha)], [c1, this.history(0)], [c2, this.history(1)]]);
    return scale(inner, t.alpha);
  }

  /** Third order: the same with the quadratic Lagrange basis in log ρ over ρ₀, ρ₁, ρ₂. */
  private thirdOrder(i: number, x: Vec): Vec {
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const s1 = this.point(i - 1);
    const s2 = this.point(i - 2);
    const [rt, r0, r1, r2] = [rho(t), rho(s0), rho(s1), rho(s2)];
    const ind = (tt: number, b: number, c: number, d: number): number => {
      const [lt, lb, lc, ld] = [ln(tt), ln(b), ln(c), ln(d)];
      let num = fround(lc * fround(fround(ld - lt) + 1));
      num = fround(num - fround(ld * lt));
      num = fround(num + ld);
      num = fround(num + fround(lt * lt));
      num = fround(num - fround(2 * lt));
      num = fround(num + 2);
      const numerator = fround(tt * num);
      const denominator = fround(fround(lb - lc) * fround(lb - ld));
      return fround(numerator / denominator);
    };
    const c1 = fround(ind(rt, r0, r1, r2) - ind(r0, r0, r1, r2));
    const c2 = fround(ind(rt, r1, r2, r0) - ind(r0, r1, r2, r0));
    const c3 = fround(ind(rt, r2, r0, r1) - ind(r0, r2, r0, r1));
    const inner = lin([
      [1, div(x, s0.alpha)],
      [c1, this.history(0)],
      [c2, this.history(1)],
      [c3, this.history(2)],
    ]);
    return scale(inner, t.alpha);
  }
}
