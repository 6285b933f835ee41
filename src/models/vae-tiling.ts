/**
 * diffusers' VAE tiling (`enable_tiling`) and slicing (`enable_slicing`) on the JS side: split an
 * [B, C, H, W] input into overlapping square tiles, run each through a model, blend every tile
 * linearly into its upper and left neighbours, keep the top-left `rowLimit` square of each and
 * stitch. Only the previous row of tiles is held, so peak memory is one row of outputs plus the
 * result, not the whole activation of the untiled model.
 */
import { InputError } from '../errors.js';
import { Tensor } from '../tensor.js';

/** The overlap diffusers uses between neighbouring tiles (`tile_overlap_factor`). */
export const TILE_OVERLAP_FACTOR = 0.25;

export interface TilePlan {
  /** Side of an input tile. */
  tile: number;
  /** Step between tile origins on the input (diffusers' `overlap_size`). */
  stride: number;
  /** Output rows/columns blended with the neighbour above/left. */
  blendExtent: number;
  /** Side of the square kept from each output tile. */
  rowLimit: number;
}

/** Tiles over latents for decoding: latent tile in, image tile out. */
export function decodeTilePlan(sizes: { sample: number; latent: number }, overlap = TILE_OVERLAP_FACTOR): TilePlan {
  const blendExtent = Math.trunc(sizes.sample * overlap);
  return checkPlan({ tile: sizes.latent, stride: Math.trunc(sizes.latent * (1 - overlap)), blendExtent, rowLimit: sizes.sample - blendExtent });
}

/** Tiles over an image for encoding: image tile in, latent tile out. */
export function encodeTilePlan(sizes: { sample: number; latent: number }, overlap = TILE_OVERLAP_FACTOR): TilePlan {
  const blendExtent = Math.trunc(sizes.latent * overlap);
  return checkPlan({ tile: sizes.sample, stride: Math.trunc(sizes.sample * (1 - overlap)), blendExtent, rowLimit: sizes.latent - blendExtent });
}

function checkPlan(p: TilePlan): TilePlan {
  if (p.tile < 1 || p.stride < 1 || p.rowLimit < 1) {
    throw new InputError(`VAE tiling needs tiles of at least a few pixels; sample_size gives tile ${p.tile}, step ${p.stride}, kept ${p.rowLimit}`);
  }
  return p;
}

function dims4(t: Tensor<'float32'>, what: string): [number, number, number, number] {
  if (t.dims.length !== 4) throw new InputError(`${what} must be [B, C, H, W], got [${t.dims.join(', ')}]`);
  return t.dims as unknown as [number, number, number, number];
}

/** `t[:, :, y0:y1, x0:x1]` with Python's clamping of the ends, as a new tensor. */
export function cropNCHW(t: Tensor<'float32'>, y0: number, y1: number, x0: number, x1: number): Tensor<'float32'> {
  const [n, c, h, w] = dims4(t, 'crop input');
  const ye = Math.min(y1, h);
  const xe = Math.min(x1, w);
  const oh = Math.max(0, ye - y0);
  const ow = Math.max(0, xe - x0);
  const out = new Float32Array(n * c * oh * ow);
  let o = 0;
  for (let p = 0; p < n * c; p++) {
    for (let y = y0; y < ye; y++) {
      const row = (p * h + y) * w;
      out.set(t.data.subarray(row + x0, row + xe), o);
      o += ow;
    }
  }
  return new Tensor('float32', out, [n, c, oh, ow]);
}

/** Concatenate [B, C, H, Wi] tensors along W (axis 3) or [B, C, Hi, W] along H (axis 2). */
export function concatNCHW(parts: readonly Tensor<'float32'>[], axis: 2 | 3): Tensor<'float32'> {
  if (parts.length === 0) throw new InputError('nothing to concatenate');
  const [n, c, h0, w0] = dims4(parts[0]!, 'tile');
  for (const p of parts) {
    const [pn, pc, ph, pw] = dims4(p, 'tile');
    if (pn !== n || pc !== c || (axis === 3 ? ph !== h0 : pw !== w0)) {
      throw new InputError(`tiles do not line up: [${parts[0]!.dims.join(', ')}] vs [${p.dims.join(', ')}]`);
    }
  }
  const total = parts.reduce((s, p) => s + p.dims[axis]!, 0);
  const dims = axis === 3 ? [n, c, h0, total] : [n, c, total, w0];
  const out = new Float32Array(n * c * dims[2]! * dims[3]!);
  if (axis === 2) {
    // Each (batch, channel) plane is the parts' planes one after another.
    let o = 0;
    for (let p = 0; p < n * c; p++) {
      for (const part of parts) {
        const size = part.dims[2]! * w0;
        out.set(part.data.subarray(p * size, (p + 1) * size), o);
        o += size;
      }
    }
  } else {
    let o = 0;
    for (let p = 0; p < n * c; p++) {
      for (let y = 0; y < h0; y++) {
        for (const part of parts) {
          const pw = part.dims[3]!;
          const row = (p * h0 + y) * pw;
          out.set(part.data.subarray(row, row + pw), o);
          o += pw;
        }
      }
    }
  }
  return new Tensor('float32', out, dims);
}

/**
 * Blend the bottom rows of `above` into the top rows of `below`, in place:
 * below[y] = above[H−e+y]·(1 − y/e) + below[y]·(y/e) for y < e = min(extent, both heights),
 * in float32 as torch computes it.
 */
export function blendV(above: Tensor<'float32'>, below: Tensor<'float32'>, extent: number): void {
  const [n, c, ha, w] = dims4(above, 'blend input');
  const [bn, bc, hb, bw] = dims4(below, 'blend input');
  if (bn !== n || bc !== c || bw !== w) throw new InputError(`blendV: [${above.dims.join(', ')}] and [${below.dims.join(', ')}] differ in B, C or W`);
  const e = Math.min(ha, hb, extent);
  const a = above.data;
  const b = below.data;
  for (let y = 0; y < e; y++) {
    const wb = Math.fround(y / e);
    const wa = Math.fround(1 - y / e);
    for (let p = 0; p < n * c; p++) {
      const ra = (p * ha + ha - e + y) * w;
      const rb = (p * hb + y) * w;
      for (let x = 0; x < w; x++) b[rb + x] = Math.fround(Math.fround(a[ra + x]! * wa) + Math.fround(b[rb + x]! * wb));
    }
  }
}

/** The same along W: the right columns of `left` into the left columns of `right`, in place. */
export function blendH(left: Tensor<'float32'>, right: Tensor<'float32'>, extent: number): void {
  const [n, c, h, wa] = dims4(left, 'blend input');
  const [bn, bc, bh, wb] = dims4(right, 'blend input');
  if (bn !== n || bc !== c || bh !== h) throw new InputError(`blendH: [${left.dims.join(', ')}] and [${right.dims.join(', ')}] differ in B, C or H`);
  const e = Math.min(wa, wb, extent);
  const a = left.data;
  const b = right.data;
  for (let x = 0; x < e; x++) {
    const kb = Math.fround(x / e);
    const ka = Math.fround(1 - x / e);
    for (let r = 0; r < n * c * h; r++) {
      const ia = r * wa + wa - e + x;
      const ib = r * wb + x;
      b[ib] = Math.fround(Math.fround(a[ia]! * ka) + Math.fround(b[ib]! * kb));
    }
  }
}

/**
 * Run `fn` over overlapping tiles of `input` and stitch the outputs as diffusers' `tiled_decode` /
 * `_tiled_encode` do: tile (i, j) is first blended with the (already blended) tile above, then with
 * the (already blended) tile to its left, then cropped to `rowLimit` × `rowLimit`.
 */
export async function tiledApply(
  input: Tensor<'float32'>,
  plan: TilePlan,
  fn: (tile: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  const [, , h, w] = dims4(input, 'tiled input');
  const strips: Tensor<'float32'>[] = [];
  let above: Tensor<'float32'>[] | null = null;
  for (let i = 0; i < h; i += plan.stride) {
    const row: Tensor<'float32'>[] = [];
    for (let j = 0; j < w; j += plan.stride) {
      const out = await fn(cropNCHW(input, i, i + plan.tile, j, j + plan.tile));
      // Blending writes in place: work on a private copy of the model's output.
      const tile = new Tensor('float32', Float32Array.from(out.data), out.dims);
      if (above) blendV(above[row.length]!, tile, plan.blendExtent);
      if (row.length > 0) blendH(row[row.length - 1]!, tile, plan.blendExtent);
      row.push(tile);
    }
    strips.push(concatNCHW(row.map((t) => cropNCHW(t, 0, plan.rowLimit, 0, plan.rowLimit)), 3));
    above = row;
  }
  return concatNCHW(strips, 2);
}

/** Batch item `i` of an [B, ...] tensor as its own [1, ...] tensor (a copy). */
export function batchItem(t: Tensor<'float32'>, i: number): Tensor<'float32'> {
  const size = t.data.length / t.dims[0]!;
  return new Tensor('float32', t.data.slice(i * size, (i + 1) * size), [1, ...t.dims.slice(1)]);
}

/** Stack [1, ...] (or [Bi, ...]) tensors along the batch axis. */
export function concatBatch(parts: readonly Tensor<'float32'>[]): Tensor<'float32'> {
  if (parts.length === 0) throw new InputError('nothing to concatenate');
  const rest = parts[0]!.dims.slice(1);
  for (const p of parts) {
    if (p.dims.length !== rest.length + 1 || p.dims.slice(1).some((d, k) => d !== rest[k])) {
      throw new InputError(`batch items differ in shape: [${parts[0]!.dims.join(', ')}] vs [${p.dims.join(', ')}]`);
    }
  }
  const out = new Float32Array(parts.reduce((s, p) => s + p.data.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p.data, o);
    o += p.data.length;
  }
  return new Tensor('float32', out, [parts.reduce((s, p) => s + p.dims[0]!, 0), ...rest]);
}
