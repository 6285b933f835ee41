/**
 * transformers' `DPTImageProcessor` (4.44), the processor of DPT (Intel/dpt-hybrid-midas, dpt-large)
 * and of Depth Anything, whose repos name the same class. Per image:
 *
 * 1. output size (`get_resize_output_image_size`): the scales `size.height / H` and `size.width / W`;
 *    with `keep_aspect_ratio` the one closer to 1 is used for both axes (a tie keeps the height's);
 *    each side is then `round(scale · side / m) · m`, m = `ensure_multiple_of`, with Python's round
 *    (half to even) on float64 values;
 * 2. resize on the uint8 image with Pillow's filter (`resizeImage`, bit-exact);
 * 3. rescale: `uint8 · rescale_factor` in float64, then cast to float32;
 * 4. normalise: `(x − mean) / std` in float32, mean and std cast to float32;
 * 5. with `do_pad`: zeros around each side up to a multiple of `size_divisor` (after normalising, as
 *    transformers; the odd pixel goes to the bottom / right);
 * 6. HWC → CHW, batch 1: [1, 3, h, w] float32 (`pixel_values`).
 *
 * Images are `RGBImage`s, i.e. already `load_image`'d (`convert("RGB")`: alpha dropped, gray and
 * palettes expanded), as the depth-estimation pipeline gives them to the processor.
 */
import { ConfigError, InputError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { parseConfig, type Warn } from '../util/config.js';
import { perChannel, pilResample, pixelValueTables, PREPROCESSOR_CONFIG, PROCESSOR_CLASS_KEYS, readPreprocessorConfig, rescaleFactor, withoutKeys } from './base-image-processor.js';
import { roundHalfEven } from './convert.js';
import { resizeImage, type ResampleFilter } from './resample.js';
import type { RGBImage } from './rgb-image.js';

/** The file `DPTImageProcessor.from_pretrained` reads. */
export const DPT_PREPROCESSOR_CONFIG = PREPROCESSOR_CONFIG;

/**
 * The largest input image, in pixels: Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`,
 * 89,478,485 = 0.25 GiB of RGB), past which transformers' `load_image` would already warn. The depth
 * pipeline holds about 11 bytes per input pixel (the RGB bytes, the float32 depth interpolated back to
 * the input size, the 8-bit depth), so the cap also keeps one call near 1 GB.
 */
export const MAX_DEPTH_IMAGE_PIXELS = 89_478_485;

/** The longest side a processor config may ask for: far above any published model (384, 518). */
const MAX_CONFIG_SIDE = 16_384;

/** transformers' IMAGENET_STANDARD_MEAN / _STD, DPTImageProcessor's defaults. */
const IMAGENET_STANDARD = [0.5, 0.5, 0.5];

/** DPTImageProcessor's `__init__` keys with transformers' defaults (`size` is read apart: several JSON shapes). */
const DEFAULTS = {
  do_resize: true,
  size: null as unknown,
  resample: 3,
  keep_aspect_ratio: false,
  ensure_multiple_of: 1,
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: IMAGENET_STANDARD as number | number[],
  image_std: IMAGENET_STANDARD as number | number[],
  do_pad: false,
  size_divisor: null as number | null,
};

/**
 * Keys hub files carry that name the class or belong to other tasks: not warned about. DPTFeatureExtractor
 * files (older repos) and the semantic-segmentation processors of the same class write `do_reduce_labels`.
 */
const IGNORED_KEYS = new Set([...PROCESSOR_CLASS_KEYS, 'do_reduce_labels', 'reduce_labels']);

export interface DPTImageProcessorConfig {
  readonly doResize: boolean;
  /** The target before the aspect and multiple rules. */
  readonly size: { readonly height: number; readonly width: number };
  readonly resample: ResampleFilter;
  readonly keepAspectRatio: boolean;
  readonly ensureMultipleOf: number;
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  /** One value per RGB channel. */
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
  readonly doPad: boolean;
  /** Pad target multiple (`do_pad`); null when the file has none. */
  readonly sizeDivisor: number | null;
}

/** Parse a `preprocessor_config.json` object with transformers' defaults; unknown keys are warned about. */
export function parseDPTImageProcessorConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): DPTImageProcessorConfig {
  const c = parseConfig(withoutKeys(raw, IGNORED_KEYS), DEFAULTS, origin, warn);
  const size = sizeDict(c.size ?? { height: 384, width: 384 }, origin);
  const resample = pilResample(c.resample, origin);
  if (!Number.isInteger(c.ensureMultipleOf) || c.ensureMultipleOf < 1 || c.ensureMultipleOf > MAX_CONFIG_SIDE) {
    throw new ConfigError(`${origin}: "ensure_multiple_of" must be a whole number from 1 to ${MAX_CONFIG_SIDE}, got ${JSON.stringify(c.ensureMultipleOf)}`);
  }
  const factor = rescaleFactor(c.rescaleFactor, origin);
  const divisor = c.sizeDivisor;
  if (divisor !== null && (!Number.isInteger(divisor) || divisor < 1 || divisor > MAX_CONFIG_SIDE)) {
    throw new ConfigError(`${origin}: "size_divisor" must be a whole number from 1 to ${MAX_CONFIG_SIDE}, got ${JSON.stringify(divisor)}`);
  }
  // transformers' validate_preprocess_arguments refuses padding without a divisor
  if (c.doPad && divisor === null) throw new ConfigError(`${origin}: "do_pad" is true but "size_divisor" is not set`);
  return {
    doResize: c.doResize,
    size,
    resample,
    keepAspectRatio: c.keepAspectRatio,
    ensureMultipleOf: c.ensureMultipleOf,
    doRescale: c.doRescale,
    rescaleFactor: factor,
    doNormalize: c.doNormalize,
    imageMean: perChannel(c.imageMean, 'image_mean', origin, false),
    imageStd: perChannel(c.imageStd, 'image_std', origin, true),
    doPad: c.doPad,
    sizeDivisor: divisor,
  };
}

/**
 * transformers' `get_size_dict` as DPTImageProcessor uses it: an int is a square (the old
 * DPTFeatureExtractor files say `"size": 384`), a list is [height, width], a dict must give both.
 */
function sizeDict(v: unknown, origin: string): { height: number; width: number } {
  const side = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= MAX_CONFIG_SIDE;
  const bad = () =>
    new ConfigError(`${origin}: "size" must be a whole number from 1 to ${MAX_CONFIG_SIDE}, [height, width] or {"height": h, "width": w}; got ${JSON.stringify(v)}`);
  if (side(v)) return { height: v, width: v };
  if (Array.isArray(v)) {
    if (v.length !== 2 || !side(v[0]) || !side(v[1])) throw bad();
    return { height: v[0], width: v[1] };
  }
  if (typeof v !== 'object' || v === null) throw bad();
  const d = v as Record<string, unknown>;
  if (side(d['height']) && side(d['width'])) return { height: d['height'], width: d['width'] };
  throw bad();
}

/** Python's `round(val / multiple) * multiple` for the float64 `val` (a zero stays zero: min_val is 0). */
function constrainToMultipleOf(val: number, multiple: number): number {
  return roundHalfEven(val / multiple) * multiple;
}

/** Throws an InputError unless `image` is one the processor can take (positive size, at most MAX_DEPTH_IMAGE_PIXELS). */
export function checkDepthInputSize(width: number, height: number, what = 'image'): void {
  if (!(width > 0 && height > 0)) throw new InputError(`${what} is ${width}x${height}, it has no pixels`);
  if (width * height > MAX_DEPTH_IMAGE_PIXELS) {
    throw new InputError(
      `${what} is ${width}x${height} = ${width * height} pixels, over the ${MAX_DEPTH_IMAGE_PIXELS}-pixel limit (Pillow's decompression-bomb limit); scale it down first`,
    );
  }
}

export class DPTImageProcessor {
  constructor(readonly config: DPTImageProcessorConfig) {}

  /** From a parsed `preprocessor_config.json` object. */
  static fromConfig(raw: Readonly<Record<string, unknown>>, origin = DPT_PREPROCESSOR_CONFIG, warn: Warn = console.warn): DPTImageProcessor {
    return new DPTImageProcessor(parseDPTImageProcessorConfig(raw, origin, warn));
  }

  /** A local folder holding `preprocessor_config.json` (a model repo's snapshot, or `subfolder` of it). */
  static fromPretrained(dir: string, options: { subfolder?: string; warn?: Warn } = {}): DPTImageProcessor {
    const { raw, path } = readPreprocessorConfig(dir, options.subfolder, 'the image processor of a depth model');
    return DPTImageProcessor.fromConfig(raw, path, options.warn ?? console.warn);
  }

  /**
   * Step 1: the resized size of a `width` × `height` image (the input size when `do_resize` is off).
   * Throws an InputError when a side would come out 0 (a very thin image with the aspect kept).
   */
  outputSize(width: number, height: number): { width: number; height: number } {
    checkDepthInputSize(width, height);
    const c = this.config;
    if (!c.doResize) return { width, height };
    let scaleHeight = c.size.height / height;
    let scaleWidth = c.size.width / width;
    if (c.keepAspectRatio) {
      // scale as little as possible; a tie fits the height
      if (Math.abs(1 - scaleWidth) < Math.abs(1 - scaleHeight)) scaleHeight = scaleWidth;
      else scaleWidth = scaleHeight;
    }
    const out = {
      width: constrainToMultipleOf(scaleWidth * width, c.ensureMultipleOf),
      height: constrainToMultipleOf(scaleHeight * height, c.ensureMultipleOf),
    };
    if (out.width < 1 || out.height < 1) {
      throw new InputError(
        `a ${width}x${height} image resizes to ${out.width}x${out.height} (size ${c.size.width}x${c.size.height}, keep_aspect_ratio ${c.keepAspectRatio}, ensure_multiple_of ${c.ensureMultipleOf}): too thin for this processor`,
      );
    }
    return out;
  }

  /** Step 2: the resized uint8 image (a copy when the size does not change, as PIL gives; the image itself with `do_resize` off). */
  resize(image: RGBImage): RGBImage {
    const size = this.outputSize(image.width, image.height);
    if (!this.config.doResize) return image;
    return resizeImage(image, size, { filter: this.config.resample });
  }

  /** The image → `pixel_values`. Shapes: [H, W, 3] uint8 → [1, 3, h, w] float32 (h, w padded with `do_pad`). */
  preprocess(image: RGBImage): Tensor<'float32'> {
    const c = this.config;
    const resized = this.resize(image);
    const { width, height } = resized;
    const tables = pixelValueTables(c); // steps 3 and 4 per byte value
    const pad = c.doPad && c.sizeDivisor !== null ? padding(height, width, c.sizeDivisor) : { top: 0, left: 0, height, width };
    const plane = pad.height * pad.width;
    const out = new Float32Array(3 * plane); // padded positions stay 0
    for (const [ch, t] of tables.entries()) {
      for (let y = 0; y < height; y++) {
        const row = ch * plane + (y + pad.top) * pad.width + pad.left;
        for (let x = 0; x < width; x++) out[row + x] = t[resized.data[(y * width + x) * 3 + ch]!]!; // HWC → CHW
      }
    }
    return new Tensor('float32', out, [1, 3, pad.height, pad.width]);
  }
}

/** transformers' `pad_image`: each side up to `ceil(side / d) · d`, the smaller half before. */
function padding(height: number, width: number, d: number): { top: number; left: number; height: number; width: number } {
  const h = Math.ceil(height / d) * d;
  const w = Math.ceil(width / d) * d;
  return { top: Math.floor((h - height) / 2), left: Math.floor((w - width) / 2), height: h, width: w };
}
