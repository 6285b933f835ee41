/**
 * Forward diffusion q(x_t | x₀) for the three parametrizations, batched over dim 0 with one
 * coefficient pair per batch item (a single timestep broadcasts).
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { fround } from './float32.js';
import { asVec } from './ops.js';

/** `table[i]` with Python indexing (negative values count from the end); out of range is an InputError. */
export function pyAt(table: ArrayLike<number>, i: number, what: string): number {
  const j = i < 0 ? i + table.length : i;
  if (!Number.isInteger(j) || j < 0 || j >= table.length) {
    throw new InputError(`${what} ${i} is out of range for a table of ${table.length}`);
  }
  return table[j]!;
}

/** x_t = a_b · x₀ + s_b · ε with per-batch coefficients (a_b, s_b) in float32. */
export function mixNoise(
  original: TensorLike,
  noise: TensorLike,
  coefs: readonly (readonly [number, number])[],
): Tensor<'float32'> {
  const x = asVec('original_samples', original);
  const e = asVec('noise', noise);
  if (x.length !== e.length) {
    throw new InputError(`noise dims [${noise.dims.join(', ')}] do not match sample dims [${original.dims.join(', ')}]`);
  }
  const batch = coefs.length;
  if (batch !== 1 && original.dims[0] !== batch) {
    throw new InputError(`got ${batch} timesteps for a batch of ${original.dims[0] ?? 1}`);
  }
  const per = batch === 1 ? x.length : x.length / batch;
  const out = new Float32Array(x.length);
  // A single pair broadcasts; else dims[0] = batch, so x.length = batch·per and ⌊i/per⌋ < batch.
  // e has x's length (checked above).
  for (let i = 0; i < x.length; i++) {
    const [a, s] = coefs[batch === 1 ? 0 : Math.floor(i / per)]!;
    out[i] = fround(a * x[i]!) + fround(s * e[i]!);
  }
  return new Tensor('float32', out, original.dims);
}

/** ᾱ-form (DDPM, DDIM, PNDM, LCM): √ᾱ_t x₀ + √(1-ᾱ_t) ε. */
export function addNoiseAlphaProd(
  alphasCumprod: Float32Array,
  original: TensorLike,
  noise: TensorLike,
  timesteps: readonly number[],
): Tensor<'float32'> {
  const coefs = timesteps.map((t) => {
    const a = pyAt(alphasCumprod, t, 'timestep');
    return [fround(Math.sqrt(a)), fround(Math.sqrt(fround(1 - a)))] as const;
  });
  return mixNoise(original, noise, coefs);
}

/** Karras σ-form (Euler, LMS, Heun, KDPM2): x₀ + σ ε. */
export function addNoiseSigma(sigmas: readonly number[], original: TensorLike, noise: TensorLike): Tensor<'float32'> {
  return mixNoise(original, noise, sigmas.map((s) => [1, s] as const));
}
