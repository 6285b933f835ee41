/** Command-line usage errors, number parsing with messages that name the option, and "did you mean". */
import { ControlNetXSError } from '../errors.js';

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

/** `; did you mean --steps?` when a known word is close to `word` (at most 2 edits, or a prefix), else ''. */
export function didYouMean(word: string, known: readonly string[], prefix = ''): string {
  const w = word.toLowerCase();
  let best: { name: string; d: number } | null = null;
  for (const k of known) {
    const d = k.startsWith(w) && w.length >= 2 ? 0.5 : editDistance(w, k.toLowerCase());
    if (d <= Math.max(1, Math.min(2, Math.floor(w.length / 3))) && (!best || d < best.d)) best = { name: k, d };
  }
  return best ? `; did you mean ${prefix}${best.name}?` : '';
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}
