/**
 * `torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)` on one float32 plane,
 * with torch 1.13's CPU arithmetic (`upsample_bicubic2d`, no antialias) — not Pillow's bicubic:
 *
 * - Keys cubic convolution with A = −0.75 (Pillow uses −0.5), never widened when downscaling;
 * - source coordinate `(dst + 0.5) · (in / out) − 0.5` in float32, not clamped (so it may be negative);
 *   the four taps at `floor(src) − 1 … floor(src) + 2` are clamped to the border;
 * - weights in float32 from `t = src − floor(src)` as torch computes them; per output sample the four
 *   taps of each row are summed along the width first, then the four rows along the height (torch's
 *   nesting), in tap order, with the fused multiply-adds of torch's build (see `dot4`).
 *
 * Checked against torch 1.13.1 on the depth reference: bit for bit wherever in / out is exact in
 * float32 (56 → 64, 98 → 64, …), within 2.4e-6 (a few float32 ulps) for other ratios, where torch's
 * result is not yet pinned down bit for bit; the 8-bit depth images agree but for one pixel on a
 * truncation boundary, which the reference's tolerance allows.
 *
 * The result may overshoot the input's range (a cubic does), as torch's does.
 */
import { InputError } from '../errors.js';

const A = -0.75;

/** The cubic for |x| ≤ 1, in float32 steps: ((A + 2)·x − (A + 3))·x·x + 1. */
function cubic1(x: number): number {
  const f = Math.fround;
  return f(f(f(f(f((A + 2) * x) - (A + 3)) * x) * x) + 1);
}

/** The cubic for 1 < |x| < 2, in float32 steps: ((A·x − 5A)·x + 8A)·x − 4A. */
function cubic2(x: number): number {
  const f = Math.fround;
  return f(f(f(f(f(f(A * x) - 5 * A) * x) + 8 * A) * x) - 4 * A);
}

/**
 * Σ v_j · w[k + j] as torch's compiled kernel forms it: GCC contracts `out = v0·w0; out += v1·w1; …`
 * into fused multiply-adds, the first around the rounded second product, the rest along the chain.
 * A float product is exact in float64, so `fround(a · b + c)` is the fused result (up to a double
 * rounding too rare to matter).
 */
function dot4(v0: number, v1: number, v2: number, v3: number, w: Float32Array, k: number): number {
  const f = Math.fround;
  let acc = f(v0 * w[k]! + f(v1 * w[k + 1]!));
  acc = f(v2 * w[k + 2]! + acc);
  return f(v3 * w[k + 3]! + acc);
}

/** Per output position along one axis: the 4 clamped input indices and their float32 weights. */
interface AxisTaps {
  /** [out * 4] */
  readonly index: Int32Array;
  /** [out * 4] */
  readonly weight: Float32Array;
}

function axisTaps(inSize: number, outSize: number): AxisTaps {
  const f = Math.fround;
  const scale = f(inSize / outSize); // float(in) / out, in float32
  const index = new Int32Array(outSize * 4);
  const weight = new Float32Array(outSize * 4);
  for (let o = 0; o < outSize; o++) {
    const src = f(f(scale * f(o + 0.5)) - 0.5);
    const base = Math.floor(src);
    const t = f(src - base);
    const u = f(1 - t);
    weight[o * 4] = cubic2(f(t + 1));
    weight[o * 4 + 1] = cubic1(t);
    weight[o * 4 + 2] = cubic1(u);
    weight[o * 4 + 3] = cubic2(f(u + 1));
    for (let j = 0; j < 4; j++) index[o * 4 + j] = Math.min(Math.max(base - 1 + j, 0), inSize - 1);
  }
  return { index, weight };
}

/**
 * Resize a float32 plane. Shapes: [inHeight, inWidth] → [outHeight, outWidth], both row-major.
 * Separable in effect: the width pass of each input row is computed once and reused by every output
 * row that reads it, which gives exactly the sums torch forms per output sample.
 */
export function interpolateBicubic(
  src: Float32Array,
  inSize: { readonly width: number; readonly height: number },
  outSize: { readonly width: number; readonly height: number },
): Float32Array {
  const { width: inW, height: inH } = inSize;
  const { width: outW, height: outH } = outSize;
  for (const [what, v] of [['input width', inW], ['input height', inH], ['output width', outW], ['output height', outH]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new InputError(`bicubic interpolation: ${what} must be a positive integer, got ${v}`);
  }
  if (src.length !== inW * inH) throw new InputError(`bicubic interpolation: a ${inW}x${inH} plane needs ${inW * inH} values, got ${src.length}`);
  const xs = axisTaps(inW, outW);
  const ys = axisTaps(inH, outH);

  // Width pass: [inH, inW] → [inH, outW]
  const rows = new Float32Array(inH * outW);
  for (let y = 0; y < inH; y++) {
    const line = y * inW;
    for (let x = 0; x < outW; x++) {
      const k = x * 4;
      rows[y * outW + x] = dot4(
        src[line + xs.index[k]!]!, src[line + xs.index[k + 1]!]!, src[line + xs.index[k + 2]!]!, src[line + xs.index[k + 3]!]!,
        xs.weight, k,
      );
    }
  }
  // Height pass: [inH, outW] → [outH, outW]
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const k = y * 4;
    const r0 = ys.index[k]! * outW;
    const r1 = ys.index[k + 1]! * outW;
    const r2 = ys.index[k + 2]! * outW;
    const r3 = ys.index[k + 3]! * outW;
    for (let x = 0; x < outW; x++) out[y * outW + x] = dot4(rows[r0 + x]!, rows[r1 + x]!, rows[r2 + x]!, rows[r3 + x]!, ys.weight, k);
  }
  return out;
}
