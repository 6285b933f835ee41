/** Command-line usage errors, number parsing with messages that name the option, and "did you mean". */
import { ControlNetXSError } from '../errors.js';
import { HubNotCachedError } from '../hub/errors.js';

export { didYouMean } from '../generate/did-you-mean.js';

/** A mistake in the command line: exit code 2, reported before anything is loaded. */
export class UsageError extends ControlNetXSError {}

export interface Range {
  min?: number;
  max?: number;
}

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const WHOLE = /^[+-]?\d+$/;

/** A decimal number (`0.5`, `-1`, `1e-3`); hex, `Infinity`, blanks and trailing junk are refused. */
export function float(name: string, v: string, range: Range = {}): number {
  if (!DECIMAL.test(v.trim())) throw new UsageError(`--${name} must be a number, got "${v}"`);
  return inRange(name, Number(v), v, range);
}

/** A whole number written in decimal digits: `0x3`, `1e1` and `3.0` are refused. */
export function integer(name: string, v: string, range: Range = {}): number {
  if (!WHOLE.test(v.trim())) throw new UsageError(`--${name} must be a whole number, got "${v}"`);
  return inRange(name, Number(v), v, range);
}

function inRange(name: string, n: number, v: string, range: Range): number {
  if (range.min !== undefined && n < range.min) throw new UsageError(`--${name} must be ≥ ${range.min}, got ${v}`);
  if (range.max !== undefined && n > range.max) throw new UsageError(`--${name} must be ≤ ${range.max}, got ${v}`);
  return n;
}

const MAX_SEED = 2n ** 64n - 1n;

/** A seed: a whole number 0 … 2^64−1, as torch's `manual_seed` takes (beyond 2^53 too, exactly). */
export function seed(name: string, v: string): bigint {
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`--${name} must be a whole number 0 … ${MAX_SEED}, got "${v}"`);
  const n = BigInt(v.trim());
  if (n > MAX_SEED) throw new UsageError(`--${name} must be ≤ ${MAX_SEED} (2^64−1), got ${v}`);
  return n;
}

/** Rethrows `e`; a Hub cache miss is reworded, since the library says `localFilesOnly` where the user typed --offline. */
export function offlineWording(e: unknown): never {
  if (e instanceof HubNotCachedError) throw new ControlNetXSError(e.message.replace('localFilesOnly is set', '--offline is set'));
  throw e;
}
