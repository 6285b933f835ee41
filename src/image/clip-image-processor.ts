/**
 * transformers' `CLIPImageProcessor` (4.44; `CLIPFeatureExtractor` is the same class under its old
 * name): the feature extractor SD 1.x pipelines put in front of the safety checker. Per image:
 *
 * 1. resize on the uint8 image with Pillow's filter (`resizeImage`, bit-exact): to a shortest edge,
 *    the long edge `int(edge · long / short)` (truncated), or to a fixed height × width;
 * 2. centre crop to `crop_size` at `((H − h) // 2, (W − w) // 2)` (floor division); where the image is
 *    smaller than the crop, transformers pads it with zeros first (see `cropAxis`);
 * 3. rescale: `uint8 · rescale_factor` in float64, then cast to float32;
 * 4. normalise: `(x − mean) / std` in float32, mean and std cast to float32;
 * 5. HWC → CHW, batched: [B, 3, h, w] float32 (`pixel_values`).
 *
 * Its `preprocessor_config.json` comes in two forms, both read here: the legacy feature-extractor
 * form SD 1.5 repos ship (`"size": 224`, `"crop_size": 224`, no rescale keys) and the form
 * `save_pretrained` writes today (`{"shortest_edge": 224}`, `{"height": 224, "width": 224}`, …).
 */
import { ConfigError, InputError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { parseConfig, type Warn } from '../util/config.js';
import { perChannel, pilResample, pixelValueTables, PREPROCESSOR_CONFIG, PROCESSOR_CLASS_KEYS, readPreprocessorConfig, rescaleFactor, withoutKeys } from './base-image-processor.js';
import { resizeImage, type ResampleFilter } from './resample.js';
import { RGBImage } from './rgb-image.js';

/** OpenAI CLIP's channel statistics (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** CLIPImageProcessor's `__init__` keys with transformers' defaults (`size` and `crop_size` are read apart: several JSON shapes). */
const DEFAULTS = {
  do_resize: true,
  size: null as unknown,
  resample: 3,
  do_center_crop: true,
  crop_size: null as unknown,
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: OPENAI_CLIP_MEAN as number | number[],
  image_std: OPENAI_CLIP_STD as number | number[],
  do_convert_rgb: true,
  /** Kosmos-2's old flag: a shortest edge becomes a square of that side. */
  use_square_size: false,
};

export type CLIPResizeTarget = { readonly shortestEdge: number } | { readonly height: number; readonly width: number };

export interface CLIPImageProcessorConfig {
  readonly doResize: boolean;
  readonly size: CLIPResizeTarget;
  readonly resample: ResampleFilter;
  readonly doCenterCrop: boolean;
  readonly cropSize: { readonly height: number; readonly width: number };
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  readonly doNormalize: boolean;
  /** One value per RGB channel. */
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
  /** Images are RGB already (`RGBImage`, loaded as `convert("RGB")`); kept as the config says. */
  readonly doConvertRgb: boolean;
}

/** Parse a `preprocessor_config.json` (either form) with transformers' defaults; unknown keys are warned about. */
export function parseCLIPImageProcessorConfig(raw: Readonly<Record<string, unknown>>, origin: string, warn: Warn): CLIPImageProcessorConfig {
  const c = parseConfig(withoutKeys(raw, PROCESSOR_CLASS_KEYS), DEFAULTS, origin, warn);
  let size = sizeDict(c.size ?? { shortest_edge: 224 }, false, 'size', origin);
  if (c.useSquareSize && 'shortestEdge' in size) size = { height: size.shortestEdge, width: size.shortestEdge };
  const crop = sizeDict(c.cropSize ?? { height: 224, width: 224 }, true, 'crop_size', origin);
  if (!('height' in crop)) throw new ConfigError(`${origin}: "crop_size" must give a height and a width, got ${JSON.stringify(c.cropSize)}`);
  return {
    doResize: c.doResize,
    size,
    resample: pilResample(c.resample, origin),
    doCenterCrop: c.doCenterCrop,
    cropSize: crop,
    doRescale: c.doRescale,
    rescaleFactor: rescaleFactor(c.rescaleFactor, origin),
    doNormalize: c.doNormalize,
    imageMean: perChannel(c.imageMean, 'image_mean', origin, false),
    imageStd: perChannel(c.imageStd, 'image_std', origin, true),
    doConvertRgb: c.doConvertRgb,
  };
}

/**
 * transformers' `get_size_dict`: an int is a square (`crop_size`) or a shortest edge (`size`), a
 * list is [height, width], a dict is taken as is. CLIPImageProcessor resizes by `shortest_edge`
 * (a `longest_edge` beside it is not used) or by `height` and `width`.
 */
function sizeDict(v: unknown, square: boolean, key: string, origin: string): CLIPResizeTarget {
  const positive = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0;
  const bad = () => new ConfigError(`${origin}: "${key}" must be a positive integer, [height, width], {"shortest_edge": n} or {"height": h, "width": w}; got ${JSON.stringify(v)}`);
  if (positive(v)) return square ? { height: v, width: v } : { shortestEdge: v };
  if (Array.isArray(v)) {
    if (v.length !== 2 || !positive(v[0]) || !positive(v[1])) throw bad();
    return { height: v[0], width: v[1] };
  }
  if (typeof v !== 'object' || v === null) throw bad();
  const d = v as Record<string, unknown>;
  if ('shortest_edge' in d) {
    if (!positive(d['shortest_edge'])) throw bad();
    return { shortestEdge: d['shortest_edge'] };
  }
  if (positive(d['height']) && positive(d['width'])) return { height: d['height'], width: d['width'] };
  throw bad();
}

/**
 * One axis of transformers' `center_crop`: the source index of each output position (−1 for a
 * padded zero). An image at least as large as the crop is cut at `(orig − crop) // 2`. A smaller one
 * is first centred in zeros of the crop's size at `(crop − orig) // 2`, and the window, shifted by
 * that padding, is then clipped to the padded image: when `crop − orig` is odd that loses a row, so
 * the result is one shorter than asked — transformers does exactly that, and so does this.
 */
function cropAxis(orig: number, crop: number): Int32Array {
  const start = Math.floor((orig - crop) / 2);
  if (orig >= crop) return Int32Array.from({ length: crop }, (_, i) => start + i);
  const pad = Math.floor((crop - orig) / 2);
  const from = Math.max(0, start + pad);
  const to = Math.min(crop, start + pad + crop);
  return Int32Array.from({ length: to - from }, (_, i) => {
    const src = from + i - pad;
    return src >= 0 && src < orig ? src : -1;
  });
}

export class CLIPImageProcessor {
  constructor(readonly config: CLIPImageProcessorConfig) {}

  /** From a parsed `preprocessor_config.json` object. */
  static fromConfig(raw: Readonly<Record<string, unknown>>, origin = PREPROCESSOR_CONFIG, warn: Warn = console.warn): CLIPImageProcessor {
    return new CLIPImageProcessor(parseCLIPImageProcessorConfig(raw, origin, warn));
  }

  /** transformers' defaults (CLIP ViT at 224 px). */
  static default(): CLIPImageProcessor {
    return CLIPImageProcessor.fromConfig({}, 'defaults');
  }

  /** A local folder holding `preprocessor_config.json` (a pipeline's `feature_extractor/` with `subfolder`). */
  static fromPretrained(dir: string, options: { subfolder?: string; warn?: Warn } = {}): CLIPImageProcessor {
    const { raw, path } = readPreprocessorConfig(dir, options.subfolder, 'not a feature extractor folder');
    return CLIPImageProcessor.fromConfig(raw, path, options.warn ?? console.warn);
  }

  /** Step 1: the resized uint8 image (a copy when the size does not change, as PIL gives). */
  resize(image: RGBImage): RGBImage {
    const s = this.config.size;
    if ('height' in s) return resizeImage(image, s, { filter: this.config.resample });
    const { width, height } = image;
    const short = Math.min(width, height);
    const long = Math.max(width, height);
    // Python's int(edge * long / short): the float64 quotient truncated
    const newLong = Math.trunc((s.shortestEdge * long) / short);
    const target = width <= height ? { width: s.shortestEdge, height: newLong } : { width: newLong, height: s.shortestEdge };
    return resizeImage(image, target, { filter: this.config.resample });
  }

  /** Step 2: the centre crop (zero-padded where the image is smaller; see `cropAxis`). */
  centerCrop(image: RGBImage): RGBImage {
    const rows = cropAxis(image.height, this.config.cropSize.height);
    const cols = cropAxis(image.width, this.config.cropSize.width);
    if (rows.length === 0 || cols.length === 0) {
      throw new InputError(`center crop of a ${image.width}x${image.height} image to ${this.config.cropSize.width}x${this.config.cropSize.height} leaves no pixels`);
    }
    const out = new Uint8Array(rows.length * cols.length * 3);
    rows.forEach((y, r) => {
      if (y < 0) return; // a padded row stays zero
      cols.forEach((x, c) => {
        if (x < 0) return;
        const s = (y * image.width + x) * 3;
        const d = (r * cols.length + c) * 3;
        out[d] = image.data[s]!;
        out[d + 1] = image.data[s + 1]!;
        out[d + 2] = image.data[s + 2]!;
      });
    });
    return new RGBImage(cols.length, rows.length, out);
  }

  /**
   * Images → `pixel_values`. Shapes: B × [H_b, W_b, 3] uint8 → [B, 3, h, w] float32; every image must
   * come out at one size (it does with a centre crop, unless a crop had to pad an odd difference).
   */
  preprocess(images: RGBImage | readonly RGBImage[]): Tensor<'float32'> {
    const list = images instanceof RGBImage ? [images] : images;
    if (list.length === 0) throw new InputError('CLIPImageProcessor.preprocess: no images given');
    const c = this.config;
    const prepared = list.map((img) => {
      let x = c.doResize ? this.resize(img) : img;
      if (c.doCenterCrop) x = this.centerCrop(x);
      return x;
    });
    const { width, height } = prepared[0]!;
    prepared.forEach((img, b) => {
      if (img.width !== width || img.height !== height) {
        throw new InputError(`CLIPImageProcessor: image 0 comes out ${width}x${height} but image ${b} ${img.width}x${img.height}; a batch needs one size`);
      }
    });
    const tables = pixelValueTables(c); // steps 3 and 4 per byte value, once per call
    const plane = width * height;
    const out = new Float32Array(list.length * 3 * plane);
    prepared.forEach((img, b) => {
      for (const [ch, t] of tables.entries()) {
        const base = (b * 3 + ch) * plane;
        for (let i = 0; i < plane; i++) out[base + i] = t[img.data[i * 3 + ch]!]!; // HWC → CHW
      }
    });
    return new Tensor('float32', out, [list.length, 3, height, width]);
  }
}
