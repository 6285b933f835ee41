/**
 * Conversions between `RGBImage`s and float32 tensors, with diffusers' exact arithmetic:
 * `pil_to_numpy` (uint8 / 255 in float32), `numpy_to_pil` (`(x * 255).round().astype("uint8")`,
 * numpy rounding half to even) and the NCHW ↔ NHWC transposes.
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { RGBImage } from './rgb-image.js';

/** Round to nearest, ties to even (numpy's `round` / C `rint`). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties go up
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * A float in [0, 1] → byte as diffusers' `numpy_to_pil`: float32 product `x * 255`, rounded half to
 * even. Values outside [0, 255] after scaling clamp (numpy's cast would be undefined there); NaN → 0.
 */
export function floatToByte(x: number): number {
  const v = roundHalfEven(Math.fround(x * 255));
  return v > 0 ? (v < 255 ? v : 255) : 0;
}

/**
 * Images → float32 tensor in [0, 1], like `numpy_to_pt(pil_to_numpy(images))`.
 * Shapes: B × [H, W, 3] uint8 → [B, 3, H, W] float32. All images must share one size.
 */
export function pilToTensor(images: RGBImage | readonly RGBImage[]): Tensor<'float32'> {
  const list = Array.isArray(images) ? (images as readonly RGBImage[]) : [images as RGBImage];
  if (list.length === 0) throw new InputError('pilToTensor: no images given');
  const { width, height } = list[0]!;
  const plane = width * height;
  const out = new Float32Array(list.length * 3 * plane);
  list.forEach((img, b) => {
    if (img.width !== width || img.height !== height) {
      throw new InputError(
        `all images of a batch must have one size: image 0 is ${width}x${height}, image ${b} is ${img.width}x${img.height}`,
      );
    }
    const base = b * 3 * plane;
    for (let i = 0; i < plane; i++) {
      // uint8 → float32 / 255: the float64 quotient rounded once to float32 is the float32 quotient.
      out[base + i] = img.data[i * 3]! / 255;
      out[base + plane + i] = img.data[i * 3 + 1]! / 255;
      out[base + 2 * plane + i] = img.data[i * 3 + 2]! / 255;
    }
  });
  return new Tensor('float32', out, [list.length, 3, height, width]);
}

/**
 * Float tensor in [0, 1] → images, like `numpy_to_pil(pt_to_numpy(t))`. One channel is replicated to
 * gray RGB. Shapes: [B, C, H, W] (C = 3 or 1) → B × [H, W, 3] uint8.
 */
export function tensorToImages(t: TensorLike): RGBImage[] {
  const [batch, channels, height, width] = nchwDims('tensorToImages', t, [1, 3]);
  const plane = height * width;
  const src = t.data as Float32Array;
  const images: RGBImage[] = [];
  for (let b = 0; b < batch; b++) {
    const out = new Uint8Array(plane * 3);
    for (let c = 0; c < 3; c++) {
      const from = (b * channels + (channels === 1 ? 0 : c)) * plane;
      for (let i = 0; i < plane; i++) out[i * 3 + c] = floatToByte(src[from + i]!);
    }
    images.push(new RGBImage(width, height, out));
  }
  return images;
}

/** Shapes: [B, C, H, W] → [B, H, W, C]. */
export function nchwToNhwc(t: TensorLike): Tensor<'float32'> {
  const [batch, channels, height, width] = nchwDims('nchwToNhwc', t, null);
  const src = t.data as Float32Array;
  const out = new Float32Array(src.length);
  const plane = height * width;
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      const from = (b * channels + c) * plane;
      for (let i = 0; i < plane; i++) out[(b * plane + i) * channels + c] = src[from + i]!;
    }
  }
  return new Tensor('float32', out, [batch, height, width, channels]);
}

/** Check a float32 NCHW tensor (optionally with an allowed channel set) and return its dims. */
export function nchwDims(
  what: string,
  t: TensorLike,
  allowedChannels: readonly number[] | null,
): [number, number, number, number] {
  if (!(t.data instanceof Float32Array)) {
    throw new InputError(`${what}: expected a Float32Array tensor, got ${t.data.constructor.name}`);
  }
  if (t.dims.length !== 4) throw new InputError(`${what}: expected shape [B, C, H, W], got [${t.dims.join(', ')}]`);
  const [b, c, h, w] = t.dims as [number, number, number, number];
  if (t.data.length !== b * c * h * w) {
    throw new InputError(`${what}: tensor holds ${t.data.length} values but shape [${t.dims.join(', ')}] needs ${b * c * h * w}`);
  }
  if (allowedChannels !== null && !allowedChannels.includes(c)) {
    throw new InputError(`${what}: expected ${allowedChannels.join(' or ')} channels, got shape [${t.dims.join(', ')}]`);
  }
  return [b, c, h, w];
}
