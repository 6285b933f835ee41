/**
 * What transformers' image processors (4.44, `BaseImageProcessor` and its helpers) share, for
 * `CLIPImageProcessor` and `DPTImageProcessor`: the `preprocessor_config.json` file, the keys that only
 * name the class, PIL's resample codes, the rescale / normalise settings and the per-byte values they give.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import { readJsonObject } from '../util/json.js';
import type { ResampleFilter } from './resample.js';

/** The file an image processor's `from_pretrained` reads. */
export const PREPROCESSOR_CONFIG = 'preprocessor_config.json';

/** Bookkeeping keys of a processor file: they name the class, not the processing (never warned about). */
export const PROCESSOR_CLASS_KEYS: ReadonlySet<string> = new Set(['feature_extractor_type', 'image_processor_type', 'processor_class']);

/** `raw` without `keys`. */
export function withoutKeys(raw: Readonly<Record<string, unknown>>, keys: ReadonlySet<string>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(raw).filter(([k]) => !keys.has(k)));
}

/**
 * `<dir>[/<subfolder>]/preprocessor_config.json` as an object, with its path (the origin its errors
 * name). A folder without one is a ConfigError naming it, `what` saying what the folder should have been.
 */
export function readPreprocessorConfig(dir: string, subfolder: string | undefined, what: string): { raw: Record<string, unknown>; path: string } {
  const folder = subfolder ? join(dir, subfolder) : dir;
  const path = join(folder, PREPROCESSOR_CONFIG);
  if (!existsSync(path)) throw new ConfigError(`${folder}: no ${PREPROCESSOR_CONFIG} (${what})`);
  return { raw: readJsonObject(path), path };
}

/** PIL's resampling codes, as the config stores them. BOX (4) and HAMMING (5) have no port. */
const PIL_RESAMPLE: Readonly<Record<number, ResampleFilter>> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic' };

/** The filter of a config's `resample` code; anything but 0–3 is a ConfigError naming the value. */
export function pilResample(v: unknown, origin: string): ResampleFilter {
  const filter = typeof v === 'number' ? PIL_RESAMPLE[v] : undefined;
  if (filter === undefined) {
    throw new ConfigError(`${origin}: "resample" ${JSON.stringify(v)} is not supported (0 NEAREST, 1 LANCZOS, 2 BILINEAR or 3 BICUBIC)`);
  }
  return filter;
}

/** `rescale_factor`, which must be a positive finite number. */
export function rescaleFactor(v: unknown, origin: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new ConfigError(`${origin}: "rescale_factor" must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A mean or std (`key`): one number for all three channels, or three; with `nonZero`, none may be 0. */
export function perChannel(v: unknown, key: string, origin: string, nonZero: boolean): [number, number, number] {
  const list: unknown[] = typeof v === 'number' ? [v, v, v] : Array.isArray(v) ? v : [];
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && (!nonZero || x !== 0);
  const [r, g, b] = list;
  if (list.length !== 3 || !ok(r) || !ok(g) || !ok(b)) {
    throw new ConfigError(`${origin}: "${key}" must be one number or three (one per RGB channel)${nonZero ? ', none zero' : ''}, got ${JSON.stringify(v)}`);
  }
  return [r, g, b];
}

/** The settings of steps rescale and normalise, as both processors' parsed configs hold them. */
export interface RescaleNormalize {
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
}

/**
 * Per RGB channel, the float32 `pixel_values` value of each byte (256 entries): rescale as `uint8 ·
 * rescale_factor` in float64 cast to float32, then normalise `(x − mean) / std` in float32 with mean
 * and std cast to float32 — transformers' numpy arithmetic, so a lookup is bit-exact.
 */
export function pixelValueTables(c: RescaleNormalize): [Float32Array, Float32Array, Float32Array] {
  const table = (ch: 0 | 1 | 2) => {
    const mean = Math.fround(c.imageMean[ch]);
    const std = Math.fround(c.imageStd[ch]);
    return Float32Array.from({ length: 256 }, (_, v) => {
      const x = c.doRescale ? Math.fround(v * c.rescaleFactor) : v; // float64 product, cast to float32
      return c.doNormalize ? Math.fround(Math.fround(x - mean) / std) : x; // float32 arithmetic
    });
  };
  return [table(0), table(1), table(2)];
}
