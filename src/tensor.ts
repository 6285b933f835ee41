/**
 * A dense, row-major tensor on the JS side: graph inputs and outputs, scheduler state, RNG output.
 * Any `{ data, dims }` object with a matching typed array is accepted wherever a tensor is expected.
 */
import { InputError } from './errors.js';

export type DType = 'float32' | 'float64' | 'int64' | 'bool' | 'float16' | 'bfloat16' | 'int32' | 'uint8';

export type TypedArrayOf<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : D extends 'int64'
      ? BigInt64Array
      : D extends 'int32'
        ? Int32Array
        : D extends 'bool' | 'uint8'
          ? Uint8Array
          : Uint16Array;

export type AnyTypedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array;

/** What the public API accepts: a Float32Array (int64 as BigInt64Array) with its dims. */
export interface TensorLike<A extends AnyTypedArray = AnyTypedArray> {
  readonly data: A;
  readonly dims: readonly number[];
}

export class Tensor<D extends DType = DType> implements TensorLike<TypedArrayOf<D>> {
  readonly dtype: D;
  readonly dims: readonly number[];
  readonly data: TypedArrayOf<D>;

  constructor(dtype: D, data: TypedArrayOf<D>, dims: readonly number[]) {
    const n = numel(dims);
    if (data.length !== n) {
      throw new InputError(`tensor data has ${data.length} elements but dims [${dims.join(', ')}] need ${n}`);
    }
    this.dtype = dtype;
    this.data = data;
    this.dims = Object.freeze([...dims]);
  }

  get size(): number {
    return this.data.length;
  }

  static zeros(dims: readonly number[]): Tensor<'float32'> {
    return new Tensor('float32', new Float32Array(numel(dims)), dims);
  }

  static float32(data: Float32Array | readonly number[], dims: readonly number[]): Tensor<'float32'> {
    return new Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
  }

  /** Wrap a `{ data, dims }` object, inferring the dtype from the typed array. */
  static from(t: TensorLike): Tensor {
    if (t instanceof Tensor) return t;
    return new Tensor(dtypeOfArray(t.data), t.data as TypedArrayOf<DType>, t.dims);
  }

  reshape(dims: readonly number[]): Tensor<D> {
    return new Tensor(this.dtype, this.data, dims);
  }
}

export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

export function dtypeOfArray(a: AnyTypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint16Array) return 'float16';
  return 'uint8';
}

/** Check a float32 input: right typed array, right rank and fixed dims (null = any). */
export function expectFloat32(
  name: string,
  t: TensorLike,
  shape: readonly (number | null)[],
): Tensor<'float32'> {
  if (!(t.data instanceof Float32Array)) {
    throw new InputError(`${name} must hold a Float32Array, got ${t.data.constructor.name}`);
  }
  const dims = t.dims;
  const ok = dims.length === shape.length && shape.every((s, i) => s === null || s === dims[i]);
  if (!ok) {
    const want = shape.map((s) => (s === null ? '*' : String(s))).join(', ');
    throw new InputError(`${name} must have shape [${want}], got [${dims.join(', ')}]`);
  }
  return new Tensor('float32', t.data, dims);
}
