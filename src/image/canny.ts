/**
 * Canny edge detection equal pixel for pixel to OpenCV 4.x `cv2.Canny(rgb, low, high,
 * apertureSize=3, L2gradient=...)` on a 3-channel uint8 image.
 *
 * The steps, with OpenCV's integer arithmetic:
 * 1. 3×3 Sobel derivatives per channel with replicated borders (exact integers, |d| ≤ 1020).
 * 2. Per pixel, the channel with the largest magnitude wins (first channel on ties); its dx, dy are
 *    kept. Magnitude is |dx| + |dy| (L1) or dx² + dy² (L2, compared with squared thresholds).
 * 3. Non-maximum suppression along the gradient direction, binned into horizontal, vertical and the
 *    two diagonals with tan(22.5°) in 15-bit fixed point. The comparisons are asymmetric: strictly
 *    greater than the previous neighbour, greater or equal to the next one (both strict on
 *    diagonals). Magnitudes outside the image count as 0.
 * 4. Double threshold: a surviving pixel with magnitude > high is an edge, one > low is a candidate.
 * 5. Hysteresis: candidates 8-connected to an edge become edges.
 */
import { InputError } from '../errors.js';
import { RGBImage } from './rgb-image.js';

export interface CannyOptions {
  /** Lower hysteresis threshold (OpenCV's threshold1). */
  low: number;
  /** Upper hysteresis threshold (threshold2); the two are swapped if low > high. */
  high: number;
  /** Use the L2 gradient norm instead of L1 (default false). */
  l2Gradient?: boolean;
}

/** tan(22.5°) = √2 − 1 in Q15, rounded. */
const TAN_22_5_Q15 = Math.round((Math.SQRT2 - 1) * (1 << 15));

/** Map states. */
const NOT_EDGE = 1;
const CANDIDATE = 0;
const EDGE = 2;

/** Edge map of `image`: 255 on edges, 0 elsewhere, in all three channels. */
export function canny(image: RGBImage, opts: CannyOptions): RGBImage {
  const { low, high } = integerThresholds(opts);
  const { width: w, height: h } = image;
  const { dx, dy, mag } = gradients(image, opts.l2Gradient ?? false);
  const map = suppressNonMaxima(w, h, dx, dy, mag, low, high);
  hysteresis(map, w, h);

  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (map[(y + 1) * (w + 2) + x + 1] === EDGE) out.fill(255, (y * w + x) * 3, (y * w + x) * 3 + 3);
    }
  }
  return new RGBImage(w, h, out);
}

/** OpenCV's threshold handling: swap if reversed, square for L2 (after capping at 32767), floor. */
function integerThresholds(opts: CannyOptions): { low: number; high: number } {
  let { low, high } = opts;
  if (!Number.isFinite(low) || !Number.isFinite(high)) {
    throw new InputError(`canny thresholds must be finite numbers, got low=${low} high=${high}`);
  }
  if (low > high) [low, high] = [high, low];
  if (opts.l2Gradient) {
    low = Math.min(32767, low);
    high = Math.min(32767, high);
    if (low > 0) low *= low;
    if (high > 0) high *= high;
  }
  return { low: Math.floor(low), high: Math.floor(high) };
}

/**
 * Sobel derivatives and magnitude of the strongest channel, on a zero-padded grid.
 * Shapes: [h, w, 3] uint8 → dx, dy [h * w]; mag [(h + 2) * (w + 2)] with a zero border.
 */
function gradients(image: RGBImage, l2: boolean): { dx: Int16Array; dy: Int16Array; mag: Int32Array } {
  const { width: w, height: h, data } = image;
  const dx = new Int16Array(w * h);
  const dy = new Int16Array(w * h);
  const mag = new Int32Array((w + 2) * (h + 2));
  for (let y = 0; y < h; y++) {
    // Replicated border: clamp neighbour rows and columns into the image.
    const up = (y > 0 ? y - 1 : 0) * w * 3;
    const mid = y * w * 3;
    const down = (y < h - 1 ? y + 1 : y) * w * 3;
    for (let x = 0; x < w; x++) {
      const left = (x > 0 ? x - 1 : 0) * 3;
      const right = (x < w - 1 ? x + 1 : x) * 3;
      const centre = x * 3;
      let best = -1;
      let bx = 0;
      let by = 0;
      for (let c = 0; c < 3; c++) {
        const gx =
          data[up + right + c]! - data[up + left + c]! +
          2 * (data[mid + right + c]! - data[mid + left + c]!) +
          data[down + right + c]! - data[down + left + c]!;
        const gy =
          data[down + left + c]! - data[up + left + c]! +
          2 * (data[down + centre + c]! - data[up + centre + c]!) +
          data[down + right + c]! - data[up + right + c]!;
        const m = l2 ? gx * gx + gy * gy : Math.abs(gx) + Math.abs(gy);
        if (m > best) {
          best = m;
          bx = gx;
          by = gy;
        }
      }
      dx[y * w + x] = bx;
      dy[y * w + x] = by;
      mag[(y + 1) * (w + 2) + x + 1] = best;
    }
  }
  return { dx, dy, mag };
}

/**
 * Non-maximum suppression and double threshold into a padded state map.
 * Shapes: mag [(h + 2) * (w + 2)] → map [(h + 2) * (w + 2)], border = NOT_EDGE.
 */
function suppressNonMaxima(
  w: number,
  h: number,
  dx: Int16Array,
  dy: Int16Array,
  mag: Int32Array,
  low: number,
  high: number,
): Uint8Array {
  const stride = w + 2;
  const map = new Uint8Array(stride * (h + 2)).fill(NOT_EDGE);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y + 1) * stride + x + 1;
      const m = mag[p]!;
      if (m <= low) continue;
      const xs = dx[y * w + x]!;
      const ys = dy[y * w + x]!;
      const ax = Math.abs(xs);
      const ay = Math.abs(ys) * (1 << 15);
      const tg22x = ax * TAN_22_5_Q15;
      let isMax: boolean;
      if (ay < tg22x) {
        // Gradient mostly horizontal: compare left and right.
        isMax = m > mag[p - 1]! && m >= mag[p + 1]!;
      } else if (ay > tg22x + ax * (1 << 16)) {
        // Mostly vertical (beyond tan(67.5°) = tan(22.5°) + 2): compare above and below.
        isMax = m > mag[p - stride]! && m >= mag[p + stride]!;
      } else {
        // Diagonal: same-sign derivatives point down-right (image y grows downwards).
        const s = (xs ^ ys) < 0 ? -1 : 1;
        isMax = m > mag[p - stride - s]! && m > mag[p + stride + s]!;
      }
      if (isMax) map[p] = m > high ? EDGE : CANDIDATE;
    }
  }
  return map;
}

/**
 * Grow edges into 8-connected candidates, in place (depth-first with an explicit stack; the result
 * is the same set in any visiting order). Every pixel enters the stack at most once.
 */
function hysteresis(map: Uint8Array, w: number, h: number): void {
  const stride = w + 2;
  const stack = new Int32Array(w * h);
  let top = 0;
  for (let p = 0; p < map.length; p++) if (map[p] === EDGE) stack[top++] = p;
  const neighbours = [-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1];
  while (top > 0) {
    const p = stack[--top]!;
    for (const d of neighbours) {
      const q = p + d;
      if (map[q] === CANDIDATE) {
        map[q] = EDGE;
        stack[top++] = q;
      }
    }
  }
}
