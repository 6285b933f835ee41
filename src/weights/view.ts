/**
 * Weight views: how a model's tensor is laid out over the bytes a checkpoint stores. Torch pickles
 * can save a tensor as any `as_strided` window of a storage (shared storages, transposed or sliced
 * tensors); safetensors-derived keys can be a transpose of a stored tensor. This file classifies a
 * strided layout (so the graph uses the cheapest ops: none, a Transpose, or a Gather) and applies a
 * view in JS for small tensors (tests, reference checks).
 */
import { WeightLoadError } from '../errors.js';
import type { SafetensorsDType } from './safetensors.js';
import type { WeightRef } from './source.js';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Row-major (C-order) strides of `shape`, in elements. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!; // bounds: i in [0, rank)
  }
  return s;
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/**
 * How an `as_strided(shape, strides, offset)` window reads its region, cheapest first:
 * - `contiguous`: elements `[offset, offset + numel)` in C order — a narrower region, no op;
 * - `permuted`: `[offset, offset + numel)` holds the tensor contiguous as `storedShape`, and the
 *   model's tensor is `transpose(stored, perm)` (a transposed or permuted tensor);
 * - `general`: anything else (gaps, overlaps, zero strides) — an index gather.
 */
export type StridedLayout =
  | { readonly kind: 'contiguous'; readonly offset: number }
  | { readonly kind: 'permuted'; readonly offset: number; readonly storedShape: readonly number[]; readonly perm: readonly number[] }
  | { readonly kind: 'general' };

export function classifyStrided(shape: readonly number[], strides: readonly number[], offset: number): StridedLayout {
  // Axes of size 1 never move the index, so their strides say nothing about the layout.
  const moving = shape.map((_, i) => i).filter((i) => shape[i]! > 1);
  if (product(shape) === 0 || isContiguousOver(moving, shape, strides)) return { kind: 'contiguous', offset };
  // A permutation: the moving axes, ordered by decreasing stride, must be contiguous in that order.
  const order = [...moving].sort((a, b) => strides[b]! - strides[a]!);
  if (!isContiguousOver(order, shape, strides)) return { kind: 'general' };
  const full = [...order, ...shape.map((_, i) => i).filter((i) => shape[i]! <= 1)];
  const storedShape = full.map((i) => shape[i]!);
  // Transpose's output axis i is its input axis perm[i]: where model axis i sits in the stored order.
  const perm = shape.map((_, i) => full.indexOf(i));
  return { kind: 'permuted', offset, storedShape, perm };
}

/** Are `axes` (outermost first) laid out C-contiguously by `strides`? */
function isContiguousOver(axes: readonly number[], shape: readonly number[], strides: readonly number[]): boolean {
  let expect = 1;
  for (let k = axes.length - 1; k >= 0; k--) {
    const a = axes[k]!; // bounds: k in [0, axes.length)
    if (strides[a] !== expect) return false;
    expect *= shape[a]!;
  }
  return true;
}

/**
 * One past the largest element index a strided window reads (0 for an empty tensor). A view is
 * valid over a region of `n` elements when this is at most `n`.
 */
export function stridedExtent(shape: readonly number[], strides: readonly number[], offset: number): number {
  if (product(shape) === 0) return 0;
  return shape.reduce((acc, d, i) => acc + (d - 1) * strides[i]!, offset) + 1;
}

/** The model's tensor of `ref` as C-order little-endian bytes in its stored dtype, read now (small tensors only). */
export function readWeightBytes(ref: WeightRef): Uint8Array {
  const { info, view } = ref;
  const stored = ref.file.readRange(info.fileOffset, info.byteLength);
  if (view === undefined) return stored;
  const eb = DTYPE_BYTES[info.dtype];
  if (view.kind === 'transpose') {
    const st = contiguousStrides(info.shape);
    return gatherStrided(stored, eb, view.perm.map((p) => info.shape[p]!), view.perm.map((p) => st[p]!), 0, ref);
  }
  return gatherStrided(stored, eb, view.shape, view.strides, view.offset, ref);
}

function gatherStrided(
  stored: Uint8Array,
  eb: number,
  shape: readonly number[],
  strides: readonly number[],
  offset: number,
  ref: WeightRef,
): Uint8Array {
  const n = product(shape);
  if (stridedExtent(shape, strides, offset) * eb > stored.byteLength) {
    throw new WeightLoadError(`${ref.file.path}: view of "${ref.info.name}" reads past its ${stored.byteLength}-byte region`);
  }
  const out = new Uint8Array(n * eb);
  const idx = new Array<number>(shape.length).fill(0);
  let src = offset;
  for (let o = 0; o < n; o++) {
    out.set(stored.subarray(src * eb, src * eb + eb), o * eb);
    // Odometer over the model's axes, last fastest, moving `src` by each axis's stride.
    for (let a = shape.length - 1; a >= 0; a--) {
      idx[a]! += 1; // bounds: a in [0, rank)
      src += strides[a]!;
      if (idx[a]! < shape[a]!) break;
      src -= idx[a]! * strides[a]!;
      idx[a] = 0;
    }
  }
  return out;
}
