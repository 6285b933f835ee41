/**
 * diffusers' per-block settings: many config keys take one value for every block or a list with
 * one entry per block. Module trees and model configs both expand them, so this sits below both.
 */
import { ConfigError } from '../errors.js';

/** A per-block setting given as one value or a list: expand to `n` entries. */
export function perBlock<V>(v: V | readonly V[], n: number, key: string, origin: string): V[] {
  if (Array.isArray(v)) {
    if (v.length !== n) throw new ConfigError(`${origin}: "${key}" has ${v.length} entries, expected ${n} (one per block)`);
    return [...(v as V[])];
  }
  return Array.from({ length: n }, () => v as V);
}
