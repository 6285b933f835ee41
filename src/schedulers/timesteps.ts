/**
 * Inference timestep grids, computed with numpy's float64 semantics as diffusers does.
 *
 * The three spacings of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (Table 2):
 * - `linspace`: evenly spaced over [0, T-1], including both ends;
 * - `leading`:  multiples of ⌊T/n⌋ counted from 0, plus `steps_offset`;
 * - `trailing`: counted down from T in steps of T/n, minus one.
 */
import { InputError } from '../errors.js';
import { roundHalfEven } from './float32.js';

export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

/** `np.linspace(start, stop, num, endpoint)` in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(div > 0 ? i * (delta / div) + start : start);
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` for a float step: length ⌈(stop - start)/step⌉, values
 * `start + i*δ` with δ = (start + step) - start.
 */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const delta = start + step - start;
  const out: number[] = [];
  for (let i = 0; i < len; i++) out.push(i === 0 ? start : i === 1 ? start + step : start + i * delta);
  return out;
}

/**
 * `np.interp(x, arange(len(fp)), fp)`: piecewise-linear interpolation on the integer grid,
 * clamped at both ends; x exactly on a grid point returns that point's value.
 */
export function npInterpOnIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  // np.interp refuses an empty fp; a training table always has num_train_timesteps ≥ 1 entries.
  if (n === 0) throw new RangeError('npInterpOnIndex: empty table');
  if (Number.isNaN(x)) return NaN;
  if (x <= 0) return fp[0]!;
  if (x >= n - 1) return fp[n - 1]!;
  // Here 0 < x < n - 1, so 0 ≤ j < j + 1 ≤ n - 1.
  const j = Math.floor(x);
  const y = fp[j]!;
  if (j === x) return y;
  // slope·(x - x_j) + y_j with unit grid spacing, as numpy evaluates it.
  return (fp[j + 1]! - y) * (x - j) + y;
}

export interface SpacingOptions {
  /** `num_train_timesteps`. */
  readonly trainTimesteps: number;
  /** Number of inference steps n. */
  readonly steps: number;
  readonly stepsOffset: number;
  /**
   * Build the grid with n + 1 points and drop the last (the multistep DPM-Solver family);
   * trailing spacing is unaffected.
   */
  readonly plusOne?: boolean;
  /** Upper end of the grid (DPM-Solver's `lambda_min_clipped` lowers it); T by default. */
  readonly lastTimestep?: number;
  /** Round the linspace grid to integers (int64 classes) or keep it fractional (float32 classes). */
  readonly roundLinspace: boolean;
}

/** Descending inference timesteps for one of the three spacings, as float64 values. */
export function spacedTimesteps(spacing: TimestepSpacing, o: SpacingOptions): number[] {
  const count = o.steps + (o.plusOne ? 1 : 0);
  const last = o.lastTimestep ?? o.trainTimesteps;
  let ts: number[];
  switch (spacing) {
    case 'linspace': {
      ts = npLinspace(0, last - 1, count);
      if (o.roundLinspace) ts = ts.map(roundHalfEven);
      ts.reverse();
      if (o.plusOne) ts.pop();
      return ts;
    }
    case 'leading': {
      const ratio = Math.floor(last / count);
      ts = Array.from({ length: count }, (_, i) => i * ratio).reverse();
      if (o.plusOne) ts.pop();
      return ts.map((t) => t + o.stepsOffset);
    }
    case 'trailing': {
      const ratio = o.trainTimesteps / o.steps;
      return npArange(last, 0, -ratio).map((t) => roundHalfEven(t) - 1);
    }
  }
}

/** Check `num_inference_steps` against the training schedule. */
export function checkInferenceSteps(className: string, steps: number, trainTimesteps: number): void {
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1) {
    throw new InputError(`${className}: num_inference_steps must be an integer >= 1, got ${String(steps)}`);
  }
  if (steps > trainTimesteps) {
    throw new InputError(
      `${className}: num_inference_steps ${steps} cannot be larger than num_train_timesteps ${trainTimesteps}`,
    );
  }
}
