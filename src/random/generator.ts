/**
 * A random number generator that reproduces torch 1.13.1's CPU `torch.Generator` bit for bit:
 * `manual_seed`, `torch.rand` and `torch.randn` (float32 and float64, contiguous output), plus
 * diffusers' `randn_tensor` helper built on top of it.
 *
 * How torch draws the numbers (see the reference README, section "torch-rng"):
 *
 * - The engine is MT19937 seeded with the low 32 bits of the seed. A 64-bit draw is two 32-bit
 *   outputs, the first one being the high word.
 * - float32 uniforms use the low 24 bits of one output, float64 uniforms the low 53 bits of a
 *   64-bit draw; both are scaled into [0, 1) exactly.
 * - `randn` with fewer than 16 elements uses scalar Box–Muller in float64. Every pair it computes
 *   yields a cosine value (returned) and a sine value (kept in the generator and returned by the
 *   next scalar draw, whatever dtype or call that is).
 * - `randn` with 16 or more elements first fills the whole output with uniforms, then turns each
 *   full run of 16 into 16 normals (lanes j and j+8 form one Box–Muller pair). A ragged end is
 *   handled by drawing 16 fresh uniforms into the last 16 slots and transforming those again.
 *   For float32, torch's AVX2 kernel uses Cephes-style float32 log/sin/cos with fused
 *   multiply-adds (emulated in cephes32.ts). For float64 it uses the C library's log/sin/cos
 *   (correctly rounded stand-ins in libm64.ts; the scalar path uses those too).
 */
import { InputError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { boxMuller16Float32 } from './cephes32.js';
import { cos64, log64, sin64 } from './libm64.js';
import { MT19937 } from './mt19937.js';

/** Element types the generator can produce. */
export type RandomDType = 'float32' | 'float64';

export interface RandomOptions {
  /** Output element type; float32 unless given. */
  dtype?: RandomDType;
}

/** torch's default CPU seed (`torch.Generator().initial_seed()`). */
export const DEFAULT_SEED = 67280421310721n;

/** Scale of a 24-bit float32 uniform: 2^-24. */
const TWO_POW_M24 = 2 ** -24;
/** Scale of a 53-bit float64 uniform: 2^-53. */
const TWO_POW_M53 = 2 ** -53;
/** 2^32, to join the high 21 bits of a 53-bit draw with the low word. */
const TWO_POW_32 = 2 ** 32;
/** 2π in double precision, as the float64 Box–Muller paths use it. */
const TWO_PI = 2 * Math.PI;
/** Tensors this size and larger take the 16-lane path. */
const VECTOR_MIN = 16;

/** Largest seed torch accepts is 2^64 - 1; negative seeds down to -2^63 wrap like int64. */
const SEED_MIN = -(2n ** 63n);
const SEED_MAX = 2n ** 64n - 1n;

export class Generator {
  private readonly engine = new MT19937();
  private seedValue = 0n;
  /** The cached sine half of the last scalar Box–Muller pair, if any. */
  private cachedNormal = 0;
  private hasCachedNormal = false;

  /** A generator seeded like `torch.Generator()`, or with `seed` when given. */
  constructor(seed: number | bigint = DEFAULT_SEED) {
    this.manualSeed(seed);
  }

  /**
   * Reseed like `Generator.manual_seed`: the engine gets the low 32 bits of the seed and the
   * cached scalar normal is dropped. Seeds above 2^53 must be given as a bigint to be exact.
   */
  manualSeed(seed: number | bigint): this {
    const big = toSeedBigInt(seed);
    // torch stores the seed as uint64; a negative int64 seed reads back as 2^64 + seed.
    this.seedValue = BigInt.asUintN(64, big);
    this.engine.seed(Number(BigInt.asUintN(32, big)));
    this.hasCachedNormal = false;
    this.cachedNormal = 0;
    return this;
  }

  /** The seed last given to `manualSeed` (or the default), as an unsigned 64-bit integer. */
  initialSeed(): bigint {
    return this.seedValue;
  }

  /** `torch.randn(shape, generator=g, dtype=...)`. */
  randn(shape: readonly number[], opts: { dtype: 'float64' }): Tensor<'float64'>;
  randn(shape: readonly number[], opts?: { dtype?: 'float32' }): Tensor<'float32'>;
  randn(shape: readonly number[], opts?: RandomOptions): Tensor<'float32'> | Tensor<'float64'>;
  randn(shape: readonly number[], opts: RandomOptions = {}): Tensor<'float32'> | Tensor<'float64'> {
    const n = checkShape(shape, 'randn');
    if (checkDType(opts.dtype) === 'float64') {
      return new Tensor('float64', this.normals64(n), shape);
    }
    return new Tensor('float32', this.normals32(n), shape);
  }

  /** `torch.rand(shape, generator=g, dtype=...)`: uniforms in [0, 1), in memory order. */
  rand(shape: readonly number[], opts: { dtype: 'float64' }): Tensor<'float64'>;
  rand(shape: readonly number[], opts?: { dtype?: 'float32' }): Tensor<'float32'>;
  rand(shape: readonly number[], opts?: RandomOptions): Tensor<'float32'> | Tensor<'float64'>;
  rand(shape: readonly number[], opts: RandomOptions = {}): Tensor<'float32'> | Tensor<'float64'> {
    const n = checkShape(shape, 'rand');
    if (checkDType(opts.dtype) === 'float64') {
      const out = allocate(Float64Array, n);
      this.fillUniform64(out, 0, n);
      return new Tensor('float64', out, shape);
    }
    const out = allocate(Float32Array, n);
    this.fillUniform32(out, 0, n);
    return new Tensor('float32', out, shape);
  }

  /** Fill `out[from, from+count)` with float32 uniforms: 24 random bits times 2^-24. */
  private fillUniform32(out: Float32Array, from: number, count: number): void {
    const mt = this.engine;
    for (let i = from, end = from + count; i < end; i++) {
      out[i] = (mt.nextUint32() & 0xffffff) * TWO_POW_M24;
    }
  }

  /** Fill `out[from, from+count)` with float64 uniforms: 53 random bits times 2^-53. */
  private fillUniform64(out: Float64Array, from: number, count: number): void {
    for (let i = from, end = from + count; i < end; i++) out[i] = this.uniform64();
  }

  /**
   * One float64 uniform. The 64-bit draw is `(hi << 32) | lo`; its low 53 bits are the low 21
   * bits of `hi` followed by all of `lo`.
   */
  private uniform64(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_M53;
  }

  /**
   * The scalar Box–Muller draw (torch's `normal_distribution<double>`). A cached value is
   * returned first. Otherwise u1 then u2 are drawn, the radius is `sqrt(-2 log(1 - u2))` (torch
   * 1.13 writes `log(1 - u2)`, not `log1p(-u2)`), the angle is `2π u1`, the cosine value is
   * returned and the sine value cached. The trailing `+ 0` mirrors torch's `* std + mean` with
   * std 1 and mean 0, which turns a negative zero into +0.
   */
  private scalarNormal(): number {
    if (this.hasCachedNormal) {
      this.hasCachedNormal = false;
      return this.cachedNormal + 0;
    }
    const u1 = this.uniform64();
    const u2 = this.uniform64();
    const radius = Math.sqrt(-2 * log64(1 - u2));
    const theta = TWO_PI * u1;
    this.cachedNormal = radius * sin64(theta);
    this.hasCachedNormal = true;
    return radius * cos64(theta) + 0;
  }

  /** float32 normals: the scalar path (rounded to float32) below 16 elements, else 16 lanes. */
  private normals32(n: number): Float32Array {
    const out = allocate(Float32Array, n);
    if (n < VECTOR_MIN) {
      for (let i = 0; i < n; i++) out[i] = this.scalarNormal();
      return out;
    }
    this.fillUniform32(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16Float32(out, i);
    if (n % 16 !== 0) {
      // Ragged end: 16 new uniforms overwrite the last 16 outputs and are transformed again.
      this.fillUniform32(out, n - 16, 16);
      boxMuller16Float32(out, n - 16);
    }
    return out;
  }

  /** float64 normals: same structure as `normals32`, with double-precision libm math. */
  private normals64(n: number): Float64Array {
    const out = allocate(Float64Array, n);
    if (n < VECTOR_MIN) {
      for (let i = 0; i < n; i++) out[i] = this.scalarNormal();
      return out;
    }
    this.fillUniform64(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) boxMuller16Float64(out, i);
    if (n % 16 !== 0) {
      this.fillUniform64(out, n - 16, 16);
      boxMuller16Float64(out, n - 16);
    }
    return out;
  }
}

/**
 * The float64 16-lane transform (torch's `normal_fill_16<double>`): for lane j < 8,
 * `u1 = 1 - d[j]`, `u2 = d[j+8]`, `r = sqrt(-2 log u1)`, `θ = 2π u2`, then `d[j] = r cos θ` and
 * `d[j+8] = r sin θ`, all in double with the C library's functions (see libm64.ts).
 */
function boxMuller16Float64(d: Float64Array, base: number): void {
  // Callers pass `base + 16 <= d.length`, so j and j+8 are in range: the `!`s are true claims.
  for (let j = base; j < base + 8; j++) {
    const u1 = 1 - d[j]!;
    const u2 = d[j + 8]!;
    const radius = Math.sqrt(-2 * log64(u1));
    const theta = TWO_PI * u2;
    d[j] = radius * cos64(theta) + 0;
    d[j + 8] = radius * sin64(theta) + 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Argument checks and allocation
// ---------------------------------------------------------------------------------------------

function toSeedBigInt(seed: number | bigint): bigint {
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) {
      throw new InputError(
        `seed must be an integer (give seeds beyond 2^53 as a bigint), got ${String(seed)}`,
      );
    }
    return BigInt(seed);
  }
  if (typeof seed !== 'bigint') {
    throw new InputError(`seed must be a number or bigint, got ${typeof seed}`);
  }
  if (seed < SEED_MIN || seed > SEED_MAX) {
    throw new InputError(`seed ${seed} is outside torch's range [-2^63, 2^64 - 1]`);
  }
  return seed;
}

/** Check every dimension is a non-negative integer; returns the element count. */
function checkShape(shape: readonly number[], what: string): number {
  if (!Array.isArray(shape)) throw new InputError(`${what}: shape must be an array of integers`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InputError(
        `${what}: shape [${shape.join(', ')}] must hold non-negative integers, got ${String(d)}`,
      );
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new InputError(`${what}: shape [${shape.join(', ')}] is too large`);
  return n;
}

function checkDType(dtype: RandomDType | undefined): RandomDType {
  if (dtype === undefined || dtype === 'float32') return 'float32';
  if (dtype === 'float64') return 'float64';
  throw new InputError(`dtype must be 'float32' or 'float64', got ${JSON.stringify(dtype)}`);
}

/** Allocate a typed array, reporting an impossible size as an InputError. */
function allocate<A extends Float32Array | Float64Array>(Ctor: new (n: number) => A, n: number): A {
  try {
    return new Ctor(n);
  } catch (e) {
    throw new InputError(`cannot allocate ${n} random values (${(e as Error).message})`, { cause: e });
  }
}

// ---------------------------------------------------------------------------------------------
// Free functions
// ---------------------------------------------------------------------------------------------

export interface GeneratorOptions extends RandomOptions {
  /** The generator to draw from; a fresh default-seeded one when left out. */
  generator?: Generator;
}

/** `torch.randn(shape, generator=...)`; without a generator, a new one with torch's default seed. */
export function randn(shape: readonly number[], opts: GeneratorOptions & { dtype: 'float64' }): Tensor<'float64'>;
export function randn(shape: readonly number[], opts?: GeneratorOptions & { dtype?: 'float32' }): Tensor<'float32'>;
export function randn(shape: readonly number[], opts?: GeneratorOptions): Tensor<'float32'> | Tensor<'float64'>;
export function randn(shape: readonly number[], opts: GeneratorOptions = {}): Tensor<'float32'> | Tensor<'float64'> {
  return pickGenerator(opts.generator).randn(shape, { dtype: checkDType(opts.dtype) });
}

/** `torch.rand(shape, generator=...)`; without a generator, a new one with torch's default seed. */
export function rand(shape: readonly number[], opts: GeneratorOptions & { dtype: 'float64' }): Tensor<'float64'>;
export function rand(shape: readonly number[], opts?: GeneratorOptions & { dtype?: 'float32' }): Tensor<'float32'>;
export function rand(shape: readonly number[], opts?: GeneratorOptions): Tensor<'float32'> | Tensor<'float64'>;
export function rand(shape: readonly number[], opts: GeneratorOptions = {}): Tensor<'float32'> | Tensor<'float64'> {
  return pickGenerator(opts.generator).rand(shape, { dtype: checkDType(opts.dtype) });
}

export interface RandnTensorOptions extends RandomOptions {
  /** One generator for the whole tensor, or one per batch item (dim 0). */
  generator?: Generator | readonly Generator[];
}

/**
 * diffusers' `randn_tensor` on CPU. With one generator (or none) it is `randn(shape)`. With a
 * list, batch item i is `randn([1, ...shape.slice(1)])` drawn from `generators[i]`, and the items
 * are stacked along dim 0; the list must hold exactly `shape[0]` generators.
 */
export function randnTensor(shape: readonly number[], opts: RandnTensorOptions & { dtype: 'float64' }): Tensor<'float64'>;
export function randnTensor(shape: readonly number[], opts?: RandnTensorOptions & { dtype?: 'float32' }): Tensor<'float32'>;
export function randnTensor(shape: readonly number[], opts?: RandnTensorOptions): Tensor<'float32'> | Tensor<'float64'>;
export function randnTensor(shape: readonly number[], opts: RandnTensorOptions = {}): Tensor<'float32'> | Tensor<'float64'> {
  const dtype = checkDType(opts.dtype);
  const gens = opts.generator;
  if (!Array.isArray(gens)) {
    return pickGenerator(gens as Generator | undefined).randn(shape, { dtype });
  }
  const n = checkShape(shape, 'randnTensor');
  if (shape.length === 0) {
    throw new InputError('randnTensor: a list of generators needs a shape with a batch dimension');
  }
  const batch = shape[0];
  if (gens.length !== batch) {
    throw new InputError(
      `randnTensor: got ${gens.length} generators for a batch of ${batch} (shape [${shape.join(', ')}]); ` +
        'pass one generator per batch item',
    );
  }
  const itemShape = [1, ...shape.slice(1)];
  const itemSize = batch === 0 ? 0 : n / batch;
  const out = dtype === 'float64' ? allocate(Float64Array, n) : allocate(Float32Array, n);
  for (let i = 0; i < batch; i++) {
    const item = pickGenerator(gens[i], `generator[${i}]`).randn(itemShape, { dtype });
    out.set(item.data, i * itemSize);
  }
  return dtype === 'float64'
    ? new Tensor('float64', out as Float64Array, shape)
    : new Tensor('float32', out as Float32Array, shape);
}

/** The given generator (checked), or a fresh default-seeded one. */
function pickGenerator(g: Generator | undefined, what = 'generator'): Generator {
  if (g === undefined) return new Generator();
  if (!(g instanceof Generator)) throw new InputError(`${what} must be a Generator`);
  return g;
}
