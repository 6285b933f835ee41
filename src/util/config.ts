/**
 * Typed configs from diffusers' config.json: each model lists every key its diffusers class knows,
 * with diffusers' default. `null` or an absent key takes the default; unknown keys are reported
 * through `warn` (keys starting with `_` are metadata and ignored). Fields are camelCased.
 */
import { ConfigError } from '../errors.js';

type SnakeToCamel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<SnakeToCamel<T>>}` : S;
export type Camelize<T> = { readonly [K in keyof T as SnakeToCamel<K & string>]: T[K] };

export type Warn = (message: string) => void;

export function snakeToCamel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Fill `defaults` (snake_case, as in config.json) from `raw` and return the camelCased config.
 * A value of a different JSON kind than its default (string for a number, …) is a ConfigError.
 */
export function parseConfig<T extends object>(
  raw: Readonly<Record<string, unknown>>,
  defaults: T,
  origin: string,
  warn: Warn,
): Camelize<T> {
  const out: Record<string, unknown> = {};
  const known = new Set(Object.keys(defaults));
  for (const [key, def] of Object.entries(defaults)) {
    const v = raw[key];
    if (v === undefined || v === null) {
      out[snakeToCamel(key)] = def;
      continue;
    }
    if (def !== null && !compatible(def, v)) {
      throw new ConfigError(`${origin}: "${key}" must be like ${JSON.stringify(def)}, got ${JSON.stringify(v)}`);
    }
    out[snakeToCamel(key)] = v;
  }
  const unknown = Object.keys(raw).filter((k) => !k.startsWith('_') && !known.has(k));
  if (unknown.length) warn(`${origin}: ignoring unknown config key(s) ${unknown.join(', ')}`);
  return out as Camelize<T>;
}

function compatible(def: unknown, v: unknown): boolean {
  const kind = (x: unknown) => (Array.isArray(x) ? 'array' : typeof x);
  const kd = kind(def);
  const kv = kind(v);
  if (kd === kv) return true;
  // diffusers accepts a scalar or a per-block list for many keys.
  return (kd === 'number' && kv === 'array') || (kd === 'array' && kv === 'number') || (kd === 'array' && kv === 'string');
}

/** Throws a ConfigError naming the key unless `v` is a whole number ≥ 1 (sizes, counts, channels). */
export function requirePositiveInteger(origin: string, key: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(`${origin}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
}

/** A transformer's shape keys: each a positive integer, and the hidden size split evenly over the heads. */
export function checkTransformerSizes(origin: string, sizes: readonly (readonly [string, number])[], hidden: number, heads: number): void {
  for (const [key, v] of sizes) requirePositiveInteger(origin, key, v);
  if (hidden % heads !== 0) throw new ConfigError(`${origin}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
}
