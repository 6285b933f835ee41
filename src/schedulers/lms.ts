/**
 * Linear multistep sampler (k-diffusion's `sample_lms`, after Karras et al. 2022), diffusers'
 * `LMSDiscreteScheduler`: an Adams–Bashforth method on the ODE dx/dσ = (x - x̂₀)/σ whose step
 * coefficients integrate Lagrange basis polynomials over each σ interval.
 */
import { InputError } from '../errors.js';
import type { TensorLike } from '../tensor.js';
import type { SchedulerConfigInput } from './config.js';
import { fround } from './float32.js';
import { KarrasRun, KarrasScheduler } from './karras.js';
import { div, like, lin, type Vec } from './ops.js';
import { predictX0FromSigma } from './prediction.js';
import { gaussKronrod21, quadAcceptsFirstRule } from './quadrature.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

export class LMSDiscreteScheduler extends KarrasScheduler<'LMSDiscreteScheduler'> {
  readonly order = 1;

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'LMSDiscreteScheduler', config });
  }

  /** Spacing timesteps, interpolated σ (or a ramp with t(σ)), and a final σ = 0. */
  protected makeRun(n: number): LMSRun {
    const grid = this.sigmaGrid(n, { boundsFromConfig: false });
    const sigmas = Float32Array.from([...grid.sigmas, 0]);
    return new LMSRun(this, n, grid.timesteps.map(fround), sigmas);
  }
}

/** Coefficients of the polynomial Π (τ - r_k), lowest degree first. */
function polyFromRoots(roots: readonly number[]): number[] {
  let p = [1];
  for (const r of roots) {
    const next = new Array<number>(p.length + 1).fill(0);
    // next is one longer than p, so i and i + 1 are both in range.
    p.forEach((c, i) => {
      next[i + 1] = next[i + 1]! + c;
      next[i] = next[i]! - r * c;
    });
    p = next;
  }
  return p;
}

export class LMSRun extends KarrasRun {
  declare readonly scheduler: LMSDiscreteScheduler;
  /** Past derivatives d = (x - x̂₀)/σ, newest last. */
  private derivatives: Vec[] = [];

  constructor(scheduler: LMSDiscreteScheduler, n: number, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, { numInferenceSteps: n, timesteps, sigmas, initNoiseSigma: scheduler.initNoiseSigmaFor(sigmas) });
  }

  /**
   * Weight of the derivative taken `current` steps ago in an order-`order` step from σ_t to
   * σ_{t+1}: ∫ L_current(τ) dτ over [σ_t, σ_{t+1}], with L the Lagrange basis polynomial on
   * σ_t, σ_{t-1}, ….
   *
   * 1. The integrand is evaluated like diffusers' (float32 tensor arithmetic, τ rounded to
   *    float32), and integrated like `scipy.integrate.quad`: one 21-point Gauss–Kronrod rule,
   *    exact for this degree-≤3 polynomial up to that float32 rounding.
   * 2. Should quad's error test ever ask for subdivision, the exact integral of the polynomial
   *    (what subdivision converges to) is returned instead.
   */
  lmsCoefficient(order: number, t: number, current: number): number {
    const from = this.sigma(t);
    const to = this.sigma(t + 1);
    const nodeCurrent = this.sigma(t - current);
    /** The other interpolation nodes σ_{t-k}, k ≠ current. */
    const nodes = Array.from({ length: order }, (_, k) => k)
      .filter((k) => k !== current)
      .map((k) => this.sigma(t - k));
    // 1.
    const integrand = (tau: number): number => {
      const t32 = fround(tau);
      let prod = 1;
      for (const node of nodes) prod = fround(prod * fround(fround(t32 - node) / fround(nodeCurrent - node)));
      return prod;
    };
    const q = gaussKronrod21(integrand, from, to);
    if (quadAcceptsFirstRule(q, 1e-4)) return q.result;
    // 2.
    const p = polyFromRoots(nodes);
    const denom = nodes.reduce((acc, node) => acc * (nodeCurrent - node), 1);
    const antiderivative = (x: number): number => p.reduce((acc, c, i) => acc + (c * x ** (i + 1)) / (i + 1), 0);
    return (antiderivative(to) - antiderivative(from)) / denom;
  }

  /**
   * 1. x̂₀ from the model output, d = (x - x̂₀)/σ, kept in a history of `lmsOrder` (default 4).
   * 2. x_prev = x + Σ_k c_k d_{t-k} with the exact LMS coefficients c_k.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    const s = this.scheduler;
    const { mo, x, dims } = this.inputs(modelOutput, sample);
    const maxOrder = opts.lmsOrder ?? 4;
    if (!Number.isInteger(maxOrder) || maxOrder < 1) {
      throw new InputError(`LMSDiscreteScheduler: lmsOrder must be an integer >= 1, got ${maxOrder}`);
    }
    const i = this.currentIndex(timestep);
    const sigma = this.sigma(i);
    // 1.
    const x0 = predictX0FromSigma(s.predictionType, sigma, mo, x);
    this.derivatives.push(div(lin([[1, x], [-1, x0]]), sigma));
    if (this.derivatives.length > maxOrder) this.derivatives.shift();
    // 2.
    const order = Math.min(i + 1, maxOrder);
    // Newest first; never empty, as this step's derivative was just pushed.
    const [newest, ...older] = [...this.derivatives].reverse().slice(0, order);
    if (newest === undefined) throw new RangeError('LMS derivative history is empty after a push');
    const terms: [[number, Vec], ...[number, Vec][]] = [[fround(this.lmsCoefficient(order, i, 0)), newest]];
    older.forEach((d, k) => terms.push([fround(this.lmsCoefficient(order, i, k + 1)), d]));
    const prev = lin([[1, x], [1, lin(terms)]]);
    this.advance();
    return { prevSample: like(dims, prev), predOriginalSample: like(dims, x0) };
  }
}
