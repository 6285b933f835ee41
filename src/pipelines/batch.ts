/**
 * Batch arithmetic the pipelines do between model calls, in float32 exactly as torch does it on
 * the CPU (every intermediate rounded to float32; Python scalars rounded to float32 first).
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';

const f32 = Math.fround;

function float32(name: string, t: TensorLike): Tensor<'float32'> {
  if (!(t.data instanceof Float32Array)) throw new InputError(`${name} must hold a Float32Array`);
  return t instanceof Tensor ? (t as Tensor<'float32'>) : new Tensor('float32', t.data, t.dims);
}

/** Concatenate along dim 0: torch.cat([a, b, …]). */
export function catBatch(parts: readonly TensorLike[]): Tensor<'float32'> {
  const first = parts[0]!;
  const rest = first.dims.slice(1);
  let rows = 0;
  for (const p of parts) {
    if (p.dims.length !== first.dims.length || p.dims.slice(1).some((d, i) => d !== rest[i])) {
      throw new InputError(`cannot concatenate [${p.dims.join(', ')}] with [${first.dims.join(', ')}]`);
    }
    rows += p.dims[0]!;
  }
  const out = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(float32('tensor', p).data, at);
    at += p.data.length;
  }
  return new Tensor('float32', out, [rows, ...rest]);
}

/** Each row repeated n times in place: torch.repeat_interleave(n, dim=0) (p0, p0, p1, p1, …). */
export function repeatInterleave(t: TensorLike, n: number): Tensor<'float32'> {
  const src = float32('tensor', t).data;
  const rows = t.dims[0]!;
  const row = src.length / rows;
  const out = new Float32Array(src.length * n);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < n; k++) out.set(src.subarray(r * row, (r + 1) * row), (r * n + k) * row);
  }
  return new Tensor('float32', out, [rows * n, ...t.dims.slice(1)]);
}

/** Rows [from, to) along dim 0. */
export function sliceBatch(t: TensorLike, from: number, to: number): Tensor<'float32'> {
  const row = t.data.length / t.dims[0]!;
  return new Tensor('float32', float32('tensor', t).data.slice(from * row, to * row), [to - from, ...t.dims.slice(1)]);
}

/** Classifier-free guidance on a [2B, …] prediction (uncond rows first): u + g · (c − u). */
export function guide(noise: TensorLike, guidanceScale: number): Tensor<'float32'> {
  const d = float32('noise', noise).data;
  const half = d.length / 2;
  const g = f32(guidanceScale);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const u = d[i]!;
    out[i] = f32(u + f32(g * f32(d[half + i]! - u)));
  }
  return new Tensor('float32', out, [noise.dims[0]! / 2, ...noise.dims.slice(1)]);
}

/** t · s with s rounded to float32 (tensor × Python float). */
export function scale(t: TensorLike, s: number): Tensor<'float32'> {
  const d = float32('tensor', t).data;
  const k = f32(s);
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = d[i]! * k;
  return new Tensor('float32', out, t.dims);
}

/** t / s with s rounded to float32 (tensor / Python float). */
export function divide(t: TensorLike, s: number): Tensor<'float32'> {
  const d = float32('tensor', t).data;
  const k = f32(s);
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = d[i]! / k;
  return new Tensor('float32', out, t.dims);
}
