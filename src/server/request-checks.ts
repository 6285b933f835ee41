/** Checks both request forms (the API's and A1111's) make, each naming the field as its form spells it. */
import { didYouMean } from '../generate/did-you-mean.js';
import { schedulerKey, schedulerKeys } from '../generate/scheduler.js';
import { MAX_SEED } from '../generate/seeds.js';
import type { ServerLimits } from './limits.js';
import { BadRequestError, type FieldReader } from './request-fields.js';

/** A sampler name as `cnxs generate --scheduler` takes it → its alias key. */
export function readScheduler(name: string, field: string): string {
  const key = schedulerKey(name);
  if (key === undefined) {
    throw new BadRequestError(field, `unknown ${field} "${name}"${didYouMean(name, schedulerKeys())}; choose one of ${schedulerKeys().join(', ')} (or an A1111 sampler label)`);
  }
  return key;
}

/** Width and height, each optional (absent: from the control image's aspect), held to the limits. */
export function readSize(f: FieldReader, keys: { width: string; height: string }, limits: ServerLimits): { width?: number; height?: number } {
  // 8 px: one latent pixel; the runner rounds to the model's multiple (32 for SD and SDXL)
  const width = f.integer(keys.width, { min: 8, max: limits.maxWidth });
  const height = f.integer(keys.height, { min: 8, max: limits.maxHeight });
  if (width !== undefined && height !== undefined && width * height > limits.maxPixels) {
    throw new BadRequestError(f.name(keys.width), `${f.name(keys.width)} × ${f.name(keys.height)} is ${width}×${height} = ${width * height} px, over this server's ${limits.maxPixels}`);
  }
  return { ...(width !== undefined ? { width } : {}), ...(height !== undefined ? { height } : {}) };
}

export function checkControlWindow(start: number, end: number, startField: string, endField: string): void {
  if (!(start < end)) throw new BadRequestError(startField, `${startField} (${start}) must be below ${endField} (${end})`);
}

/** Image k gets seed + k: the last one must still be a u64. */
export function seedFor(seed: bigint, numImages: number, field: string): bigint {
  if (seed + BigInt(numImages - 1) > MAX_SEED) throw new BadRequestError(field, `${field} ${seed} + ${numImages - 1} more images runs past 2^64−1`);
  return seed;
}
