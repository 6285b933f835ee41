/**
 * UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models"), diffusers' `UniPCMultistepScheduler`: a multistep predictor (UniP) and,
 * once the next model output is known, a corrector (UniC) applied to the previous step.
 */
import type { TensorLike } from '../tensor.js';
import { at } from '../util/at.js';
import type { SchedulerConfigInput } from './config.js';
import { DpmRun, DpmScheduler } from './dpm.js';
import { fround, torchExpm1_32 } from './float32.js';
import { div, like, lin, sub, type Terms, type Vec } from './ops.js';
import type { StepOptions, StepOutput, TimestepValue } from './scheduler.js';

/**
 * Solve A x = b in float32 the way torch.linalg.solve does on CPU with reference LAPACK.
 *
 * 1. LU with partial pivoting (sgetrf2: first largest |pivot|, multipliers scaled by the
 *    reciprocal pivot, each update one rounded multiply and subtract).
 * 2. torch factors Aᵀ instead of A when A is a contiguous tensor (`transposed`) and then solves
 *    with the transposed factors (sgetrs 'T'): Uᵀ y = b forward, Lᵀ z = y backward, pivots undone
 *    in reverse. Otherwise (a sliced matrix) it factors A and solves with sgetrs 'N'.
 */
export function solveFloat32(
  matrix: readonly (readonly number[])[],
  rhs: readonly number[],
  opts: { transposed: boolean },
): number[] {
  const n = rhs.length;
  if (matrix.length !== n || matrix.some((row) => row.length !== n)) {
    throw new RangeError(`solveFloat32: the matrix must be ${n} × ${n} for ${n} right-hand sides`);
  }
  // From here on every row and column index is in [0, n) and every array below has n entries
  // (n rows of n for a): the `!` in these accessors restate that bound.
  // 1.
  const a = opts.transposed
    ? matrix.map((_, i) => matrix.map((row) => fround(row[i]!)))
    : matrix.map((r) => r.map(fround));
  const get = (r: number, c: number): number => a[r]![c]!;
  const put = (r: number, c: number, v: number): void => {
    a[r]![c] = v;
  };
  const pivots: number[] = [];
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let r = k + 1; r < n; r++) if (Math.abs(get(r, k)) > Math.abs(get(p, k))) p = r;
    pivots.push(p);
    [a[k], a[p]] = [a[p]!, a[k]!];
    const inv = fround(1 / get(k, k));
    for (let r = k + 1; r < n; r++) {
      const l = fround(get(r, k) * inv);
      put(r, k, l);
      for (let c = k + 1; c < n; c++) put(r, c, fround(get(r, c) - fround(l * get(k, c))));
    }
  }
  const b = rhs.map(fround);
  const bAt = (i: number): number => b[i]!;
  /** Swap b[k] with b[pivots[k]]. */
  const interchange = (k: number): void => {
    const p = pivots[k]!;
    [b[k], b[p]] = [bAt(p), bAt(k)];
  };
  if (!opts.transposed) {
    // 2a. P b, then L y = b (unit lower), then U x = y.
    for (let k = 0; k < n; k++) interchange(k);
    for (let k = 0; k < n; k++) for (let r = k + 1; r < n; r++) b[r] = fround(bAt(r) - fround(bAt(k) * get(r, k)));
    for (let k = n - 1; k >= 0; k--) {
      b[k] = fround(bAt(k) / get(k, k));
      for (let r = 0; r < k; r++) b[r] = fround(bAt(r) - fround(bAt(k) * get(r, k)));
    }
    return b;
  }
  // 2b. Uᵀ y = b, Lᵀ z = y, then the row interchanges in reverse.
  for (let i = 0; i < n; i++) {
    let t = bAt(i);
    for (let k = 0; k < i; k++) t = fround(t - fround(get(k, i) * bAt(k)));
    b[i] = fround(t / get(i, i));
  }
  for (let i = n - 1; i >= 0; i--) {
    let t = bAt(i);
    for (let k = i + 1; k < n; k++) t = fround(t - fround(get(k, i) * bAt(k)));
    b[i] = t;
  }
  for (let k = n - 1; k >= 0; k--) interchange(k);
  return b;
}

/** The terms ρ_k·D_k of a UniP/UniC correction: one weight per difference, at least one of each. */
function weightedTerms(weights: readonly number[], diffs: readonly Vec[]): Terms {
  const [d0, ...rest] = diffs;
  if (d0 === undefined || weights.length !== diffs.length) {
    throw new RangeError(`UniPC: ${weights.length} weights for ${diffs.length} differences`);
  }
  // weights has the length of diffs, so k + 1 < weights.length for every rest index k.
  return [[weights[0]!, d0], ...rest.map((d, k): [number, Vec] => [weights[k + 1]!, d])];
}

export class UniPCMultistepScheduler extends DpmScheduler<'UniPCMultistepScheduler'> {
  readonly order = 1;
  readonly solverType: 'bh1' | 'bh2';

  constructor(config: SchedulerConfigInput = {}) {
    super({ className: 'UniPCMultistepScheduler', config, clampLastAlpha: true });
    // The DPM-Solver and DEIS solver types map to UniPC's bh2, as in diffusers.
    const solver = this.settings.solverType;
    if (solver !== 'bh1' && solver !== 'bh2') this.registerToConfig({ solver_type: 'bh2' });
    this.solverType = solver === 'bh1' ? 'bh1' : 'bh2';
  }

  protected makeRun(n: number): UniPCRun {
    const s = this.settings;
    const { timesteps, sigmas } = this.dpmGrid(n, {
      spacing: s.timestepSpacing,
      stepsOffset: s.stepsOffset,
      lastTimestep: this.numTrainTimesteps,
      roundRampTimesteps: true,
      finalSigma: 'config-ramp-last',
      finalSigmasType: s.finalSigmasType,
    });
    return new UniPCRun(this, timesteps, sigmas);
  }

  /** x̂₀ (thresholded) with `predict_x0`, else ε̂. */
  convertModelOutput(sigma: number, mo: Vec, sample: Vec, dims: readonly number[]): Vec {
    return this.settings.predictX0 ? this.x0At(sigma, mo, sample, dims) : this.epsAt(sigma, mo, sample);
  }
}

/** α_t and σ_t at one point. */
interface AlphaSigma {
  readonly alpha: number;
  readonly sigma: number;
}

/** The B(h)-dependent coefficients shared by UniP and UniC. */
interface UniCoefficients {
  /** hφ₁(h) = e^{±h} - 1. */
  readonly hPhi1: number;
  /** B(h): h (bh1) or e^{±h} - 1 (bh2). */
  readonly bH: number;
  /** Right-hand side b_k = k!·φ_{k+1}(h)/B(h), k = 0 … order-1. */
  readonly b: number[];
}

export class UniPCRun extends DpmRun {
  declare readonly scheduler: UniPCMultistepScheduler;
  /** The sample the last predictor started from (needed by the corrector). */
  private lastSample: Vec | null = null;
  /** Order of the last predictor step (the corrector reuses it). */
  private thisOrder = 0;

  constructor(scheduler: UniPCMultistepScheduler, timesteps: number[], sigmas: Float32Array) {
    super(scheduler, timesteps.length, timesteps, sigmas);
  }

  /**
   * 1. Convert the model output at σ_i.
   * 2. Unless disabled, correct the current sample with UniC using the new output.
   * 3. Push the output; the order warms up from 1 and (with `lower_order_final`) winds down
   *    at the end.
   * 4. Predict the next sample with UniP.
   */
  step(modelOutput: TensorLike, timestep: TimestepValue, sample: TensorLike, opts: StepOptions = {}): StepOutput {
    void opts;
    const s = this.scheduler;
    const { mo, x: xIn, dims } = this.inputs(modelOutput, sample);
    const i = this.currentIndex(timestep);
    let x = xIn;
    // 1.
    const converted = s.convertModelOutput(this.sigma(i), mo, x, dims);
    // 2.
    if (i > 0 && !s.settings.disableCorrector.includes(i - 1) && this.lastSample !== null) {
      x = this.corrector(i, converted, this.lastSample, x, this.thisOrder);
    }
    // 3.
    this.pushModelOutput(converted);
    const n = this.timesteps.length;
    const { lowerOrderFinal, solverOrder } = s.settings;
    const target = lowerOrderFinal ? Math.min(solverOrder, n - i) : solverOrder;
    this.thisOrder = Math.min(target, this.lowerOrderNums + 1);
    this.lastSample = x;
    // 4.
    const prev = this.predictor(i, x, this.thisOrder);
    this.countStep();
    this.advance();
    return { prevSample: like(dims, prev) };
  }

  /**
   * hh = -h (data prediction) or h; hφ₁ = expm1(hh); then for k = 1 … order:
   * b_k = hφ_k·k!/B(h) with hφ_{k+1} = hφ_k/hh - 1/(k+1)! (the φ-function recursion).
   */
  private coefficients(h: number, order: number): UniCoefficients {
    const s = this.scheduler;
    const hh = s.settings.predictX0 ? -h : h;
    const hPhi1 = torchExpm1_32(hh);
    let hPhiK = fround(fround(hPhi1 / hh) - 1);
    let factorial = 1;
    const bH = s.solverType === 'bh1' ? hh : torchExpm1_32(hh);
    const b: number[] = [];
    for (let k = 1; k <= order; k++) {
      b.push(fround(fround(hPhiK * factorial) / bH));
      factorial *= k + 1;
      hPhiK = fround(fround(hPhiK / hh) - fround(1 / factorial));
    }
    return { hPhi1, bH, b };
  }

  /** Vandermonde rows R[k] = r^k over the ratios r (the last ratio is 1), as torch.pow computes them. */
  private static vandermonde(ratios: readonly number[], order: number): number[][] {
    const pow = (r: number, k: number): number => {
      if (k === 0) return 1;
      if (k === 1) return r;
      if (k === 2) return fround(r * r);
      if (k === 3) return fround(fround(r * r) * r);
      return fround(r ** k);
    };
    return Array.from({ length: order }, (_, k) => ratios.map((r) => pow(r, k)));
  }

  /**
   * The first part of both updates: x_t' = σ_t/σ_s x - α_t hφ₁ m₀ (data prediction) or
   * α_t/α_s x - σ_t hφ₁ m₀ (noise prediction), and the weight of the correction terms.
   */
  private base(t: AlphaSigma, s0: AlphaSigma, x: Vec, m0: Vec, c: UniCoefficients): { xt: Vec; weight: number } {
    if (this.scheduler.settings.predictX0) {
      return {
        xt: lin([[fround(t.sigma / s0.sigma), x], [-fround(t.alpha * c.hPhi1), m0]]),
        weight: fround(t.alpha * c.bH),
      };
    }
    return {
      xt: lin([[fround(t.alpha / s0.alpha), x], [-fround(t.sigma * c.hPhi1), m0]]),
      weight: fround(t.sigma * c.bH),
    };
  }

  /**
   * UniP-p from σ_i to σ_{i+1}: differences D_k = (m_k - m₀)/r_k of older outputs, weights ρ
   * from R ρ = b over the first p-1 rows and columns (ρ = ½ for p = 2; a sliced, so
   * non-contiguous, matrix for torch), x_{i+1} = x_t' - w Σ ρ_k D_k.
   */
  private predictor(i: number, x: Vec, order: number): Vec {
    const t = this.point(i + 1);
    const s0 = this.point(i);
    const h = fround(t.lambda - s0.lambda);
    const m0 = this.history(0);
    const ratios: number[] = [];
    const diffs: Vec[] = [];
    for (let k = 1; k < order; k++) {
      const rk = fround(fround(this.point(i - k).lambda - s0.lambda) / h);
      ratios.push(rk);
      diffs.push(div(sub(this.history(k), m0), rk));
    }
    ratios.push(1);
    const c = this.coefficients(h, order);
    const { xt, weight } = this.base(t, s0, x, m0, c);
    if (diffs.length === 0) return xt;
    const rhos =
      order === 2
        ? [0.5]
        : solveFloat32(
            UniPCRun.vandermonde(ratios, order)
              .slice(0, -1)
              .map((row) => row.slice(0, -1)),
            c.b.slice(0, -1),
            { transposed: false },
          );
    const res = lin(weightedTerms(rhos, diffs));
    return lin([[1, xt], [-weight, res]]);
  }

  /**
   * UniC-p correcting x_i (predicted from x_{i-1}) with the new output m_t: weights ρ from the
   * full system R ρ = b (ρ = ½ for p = 1; a contiguous matrix, so torch factors Rᵀ);
   * x_i = x_t' - w (Σ ρ_k D_k + ρ_p (m_t - m₀)).
   */
  private corrector(i: number, modelT: Vec, last: Vec, current: Vec, order: number): Vec {
    void current;
    const t = this.point(i);
    const s0 = this.point(i - 1);
    const h = fround(t.lambda - s0.lambda);
    const m0 = this.history(0);
    const ratios: number[] = [];
    const diffs: Vec[] = [];
    for (let k = 1; k < order; k++) {
      const rk = fround(fround(this.point(i - (k + 1)).lambda - s0.lambda) / h);
      ratios.push(rk);
      diffs.push(div(sub(this.history(k), m0), rk));
    }
    ratios.push(1);
    const c = this.coefficients(h, order);
    const { xt, weight } = this.base(t, s0, last, m0, c);
    const rhos = order === 1 ? [0.5] : solveFloat32(UniPCRun.vandermonde(ratios, order), c.b, { transposed: true });
    const dT = sub(modelT, m0);
    // One weight per difference plus the last one for m_t - m₀ (order ≥ 1 weights in all).
    const lastRho = at(rhos, rhos.length - 1);
    const corr =
      diffs.length > 0
        ? lin([[1, lin(weightedTerms(rhos.slice(0, -1), diffs))], [lastRho, dT]])
        : lin([[lastRho, dT]]);
    return lin([[1, xt], [-weight, corr]]);
  }
}
