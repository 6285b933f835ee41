/** Command-line argument errors and number parsing with messages that name the option. */
export class UsageError extends Error {}

export function float(name: string, v: string, range: { min?: number; max?: number } = {}): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
  if (range.min !== undefined && n < range.min) throw new UsageError(`--${name} must be ≥ ${range.min}, got ${v}`);
  if (range.max !== undefined && n > range.max) throw new UsageError(`--${name} must be ≤ ${range.max}, got ${v}`);
  return n;
}

export function integer(name: string, v: string, range: { min?: number; max?: number } = {}): number {
  const n = float(name, v, range);
  if (!Number.isInteger(n)) throw new UsageError(`--${name} must be a whole number, got "${v}"`);
  return n;
}
