/** Seeds as A1111 and `cnxs generate` use them: image k of a generation gets seed + k, each its own torch-exact generator. */
import { randomBytes } from 'node:crypto';
import { Generator } from '../random/index.js';

/** torch's `manual_seed` takes any unsigned 64-bit integer. */
export const MAX_SEED = 2n ** 64n - 1n;

/** The seeds of `count` images: seed, seed + 1, … (the caller keeps seed + count − 1 within MAX_SEED). */
export function imageSeeds(seed: bigint, count: number): bigint[] {
  return Array.from({ length: count }, (_, k) => seed + BigInt(k));
}

/** One generator per image, so every image reproduces from the seed written into its file. */
export function seedGenerators(seeds: readonly bigint[]): Generator[] {
  return seeds.map((s) => new Generator().manualSeed(s));
}

/** A uniformly random u64 seed (the server's default; its value is reported, so the run reproduces). */
export function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64BE(0);
}
