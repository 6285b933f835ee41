/**
 * diffusers' `VaeImageProcessor` (diffusers 0.33): image ↔ tensor conversion around the VAE and the
 * ControlNet conditioning input.
 *
 * - `preprocess` of images: size rounded down to a multiple of `vaeScaleFactor`, PIL-exact resize
 *   (Lanczos by default), uint8 / 255 → float32 [B, 3, H, W] in [0, 1], then `2x - 1` into [-1, 1]
 *   when `doNormalize` (VAE input). ControlNet pipelines build theirs with
 *   `{ doConvertRgb: true, doNormalize: false }`, so control images stay in [0, 1].
 * - `preprocess` of a tensor (torch layout [B, C, H, W] or [C, H, W], values in [0, 1]): latents (C =
 *   `vaeLatentChannels`) pass through; otherwise resized like `torch.nn.functional.interpolate`'s
 *   default nearest mode, then normalised — unless the tensor already has negative values, which
 *   diffusers takes as "already in [-1, 1]".
 * - `postprocess`: [B, 3, H, W] in [-1, 1] → `(x / 2 + 0.5).clamp(0, 1)`, then 'pt' (NCHW), 'np'
 *   (NHWC) or 'pil' (RGBImage[], numpy rounding); 'latent' returns the input untouched.
 */
import { InputError } from '../errors.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { nchwDims, nchwToNhwc, pilToTensor, tensorToImages } from './convert.js';
import { resizeImage, type ResampleFilter } from './resample.js';
import { RGBImage } from './rgb-image.js';

export interface VaeImageProcessorOptions {
  /** Resize images so height and width are multiples of `vaeScaleFactor` (default true). */
  doResize?: boolean;
  /** Spatial downscaling of the VAE (default 8). */
  vaeScaleFactor?: number;
  /** Channel count that marks a tensor as latents, which preprocess passes through (default 4). */
  vaeLatentChannels?: number;
  /** PIL filter for resizing images (default 'lanczos'). */
  resample?: ResampleFilter;
  /** Map [0, 1] to [-1, 1] in preprocess and back in postprocess (default true). */
  doNormalize?: boolean;
  /** Images are converted to RGB; `RGBImage`s always are, so this only records the config (default false). */
  doConvertRgb?: boolean;
}

export interface SizeOptions {
  height?: number;
  width?: number;
}

export type OutputType = 'pil' | 'np' | 'pt' | 'latent';

export interface PostprocessOptions {
  /** Per batch item: whether to denormalize. Default: every item iff `doNormalize`. */
  doDenormalize?: readonly boolean[];
}

export class VaeImageProcessor {
  readonly doResize: boolean;
  readonly vaeScaleFactor: number;
  readonly vaeLatentChannels: number;
  readonly resample: ResampleFilter;
  readonly doNormalize: boolean;
  readonly doConvertRgb: boolean;

  constructor(opts: VaeImageProcessorOptions = {}) {
    this.doResize = opts.doResize ?? true;
    this.vaeScaleFactor = opts.vaeScaleFactor ?? 8;
    this.vaeLatentChannels = opts.vaeLatentChannels ?? 4;
    this.resample = opts.resample ?? 'lanczos';
    this.doNormalize = opts.doNormalize ?? true;
    this.doConvertRgb = opts.doConvertRgb ?? false;
    if (!Number.isInteger(this.vaeScaleFactor) || this.vaeScaleFactor <= 0) {
      throw new InputError(`vaeScaleFactor must be a positive integer, got ${this.vaeScaleFactor}`);
    }
  }

  /**
   * The requested size, or the image's own size where not given, each rounded DOWN to a multiple of
   * `vaeScaleFactor`. A tensor is read as [B, C, H, W].
   */
  getDefaultHeightWidth(image: RGBImage | TensorLike, size: SizeOptions = {}): { height: number; width: number } {
    const rank = image instanceof RGBImage ? 0 : image.dims.length;
    const height = size.height ?? (image instanceof RGBImage ? image.height : image.dims[rank - 2]);
    const width = size.width ?? (image instanceof RGBImage ? image.width : image.dims[rank - 1]);
    if (height === undefined || width === undefined) {
      throw new InputError(`cannot read height and width from a tensor of rank ${rank}`);
    }
    if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
      throw new InputError(`height and width must be positive integers, got ${height} and ${width}`);
    }
    const f = this.vaeScaleFactor;
    const out = { height: height - (height % f), width: width - (width % f) };
    if (out.height === 0 || out.width === 0) {
      throw new InputError(`size ${width}x${height} is smaller than the VAE scale factor ${f}`);
    }
    return out;
  }

  /**
   * Images or a tensor → model input. Shapes: B × [H0, W0, 3] (or [B, 3, H0, W0]) → [B, 3, H, W]
   * float32, H and W from `getDefaultHeightWidth`.
   */
  preprocess(images: RGBImage | readonly RGBImage[] | TensorLike, size: SizeOptions = {}): Tensor<'float32'> {
    let t: Tensor<'float32'>;
    if (images instanceof RGBImage || Array.isArray(images)) {
      let list = images instanceof RGBImage ? [images] : (images as readonly RGBImage[]);
      if (list.length === 0) throw new InputError('preprocess: no images given');
      if (this.doResize) {
        const target = this.getDefaultHeightWidth(list[0]!, size);
        list = list.map((img) => resizeImage(img, target, { filter: this.resample }));
      }
      t = pilToTensor(list);
    } else {
      const tensor = images as TensorLike;
      const t4 = tensor.dims.length === 3 ? { data: tensor.data, dims: [1, ...tensor.dims] } : tensor;
      const [, channels] = nchwDims('preprocess', t4, null);
      t = new Tensor('float32', t4.data as Float32Array, t4.dims);
      if (channels === this.vaeLatentChannels) return t;
      if (this.doResize) t = interpolateNearest(t, this.getDefaultHeightWidth(t, size));
    }
    if (this.doNormalize && !hasNegative(t.data)) t = normalize(t);
    return t;
  }

  /** Model output → images. Shapes: [B, 3, H, W] → 'pt' [B, 3, H, W] | 'np' [B, H, W, 3] | 'pil' B × RGBImage. */
  postprocess(sample: TensorLike, outputType: 'pil', opts?: PostprocessOptions): RGBImage[];
  postprocess(sample: TensorLike, outputType: 'np' | 'pt', opts?: PostprocessOptions): Tensor<'float32'>;
  postprocess(sample: TensorLike, outputType: 'latent', opts?: PostprocessOptions): Tensor;
  postprocess(sample: TensorLike, outputType: OutputType, opts?: PostprocessOptions): RGBImage[] | Tensor;
  postprocess(sample: TensorLike, outputType: OutputType = 'pil', opts: PostprocessOptions = {}): RGBImage[] | Tensor {
    if (outputType === 'latent') return Tensor.from(sample);
    if (!['pil', 'np', 'pt'].includes(outputType)) {
      throw new InputError(`output type must be 'pil', 'np', 'pt' or 'latent', got ${JSON.stringify(outputType)}`);
    }
    const [batch] = nchwDims('postprocess', sample, null);
    const flags = opts.doDenormalize ?? new Array<boolean>(batch).fill(this.doNormalize);
    if (flags.length !== batch) {
      throw new InputError(`doDenormalize has ${flags.length} entries for a batch of ${batch}`);
    }
    const t = denormalize(new Tensor('float32', sample.data as Float32Array, sample.dims), flags);
    if (outputType === 'pt') return t;
    if (outputType === 'np') return nchwToNhwc(t);
    return tensorToImages(t);
  }
}

function hasNegative(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) if (data[i]! < 0) return true;
  return false;
}

/** [0, 1] → [-1, 1]: float32 `2x - 1`. */
function normalize(t: Tensor<'float32'>): Tensor<'float32'> {
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = 2 * t.data[i]! - 1;
  return new Tensor('float32', out, t.dims);
}

/** [-1, 1] → [0, 1] per batch item where `flags[b]`: float32 `(x / 2 + 0.5).clamp(0, 1)`. */
function denormalize(t: Tensor<'float32'>, flags: readonly boolean[]): Tensor<'float32'> {
  const out = Float32Array.from(t.data);
  const item = t.data.length / flags.length;
  flags.forEach((on, b) => {
    if (!on) return;
    for (let i = b * item; i < (b + 1) * item; i++) {
      const v = Math.fround(out[i]! / 2 + 0.5);
      out[i] = Number.isNaN(v) ? v : Math.min(1, Math.max(0, v)); // torch's clamp keeps NaN
    }
  });
  return new Tensor('float32', out, t.dims);
}

/**
 * torch `interpolate(mode='nearest')` on the CPU: source index `floor(dst * (in / out))` with the
 * scale and the product in float32. Shapes: [B, C, H, W] → [B, C, outH, outW].
 */
function interpolateNearest(t: Tensor<'float32'>, size: { height: number; width: number }): Tensor<'float32'> {
  const [batch, channels, inH, inW] = t.dims as [number, number, number, number];
  const { height, width } = size;
  if (height === inH && width === inW) return t;
  const ys = nearestSourceIndices(inH, height);
  const xs = nearestSourceIndices(inW, width);
  const out = new Float32Array(batch * channels * height * width);
  for (let p = 0; p < batch * channels; p++) {
    const src = p * inH * inW;
    const dst = p * height * width;
    for (let y = 0; y < height; y++) {
      const row = src + ys[y]! * inW;
      for (let x = 0; x < width; x++) out[dst + y * width + x] = t.data[row + xs[x]!]!;
    }
  }
  return new Tensor('float32', out, [batch, channels, height, width]);
}

function nearestSourceIndices(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  const scale = Math.fround(inSize / outSize);
  for (let o = 0; o < outSize; o++) {
    if (outSize === inSize) idx[o] = o;
    else if (outSize === 2 * inSize) idx[o] = o >> 1;
    else idx[o] = Math.min(Math.floor(Math.fround(o * scale)), inSize - 1);
  }
  return idx;
}
