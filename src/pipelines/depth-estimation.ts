/**
 * Depth maps as transformers 4.44's `pipeline("depth-estimation")` makes them, and the control images
 * diffusers' documentation makes from them for depth ControlNets:
 *
 * 1. preprocess: `load_image` (`convert("RGB")`), then `DPTImageProcessor` → pixel_values [1, 3, h, w];
 * 2. forward: the model (DPT or Depth Anything) → predicted_depth [1, h', w'];
 * 3. postprocess: torch's bicubic interpolation back to the input size, then
 *    `(x · 255 / max(x)).astype(uint8)` in float32 → `depth`, an 8-bit gray image (PIL mode L).
 *
 * Control images: recipe A (`depth.toRGB()`: the 8-bit depth in R, G and B, the ControlNet docs'
 * `np.concatenate([d] * 3)`) and recipe B (`depthControlImage`: diffusers' SDXL depth example,
 * bicubic to the generation size, min-max normalised over the image, × 255, clipped, truncated).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { InputError } from '../errors.js';
import { hubDownload } from '../hub/index.js';
import { DPTImageProcessor, DPT_PREPROCESSOR_CONFIG, checkDepthInputSize } from '../image/dpt-image-processor.js';
import { GrayImage } from '../image/gray-image.js';
import { loadImage } from '../image/load.js';
import { RGBImage } from '../image/rgb-image.js';
import { interpolateBicubic } from '../image/torch-bicubic.js';
import {
  depthModelType,
  loadDepthEstimationModel,
  type DepthEstimationModel,
  type DepthEstimationModelConfig,
  type DepthEstimationPretrainedOptions,
} from '../models/depth-estimation.js';
import { hubOptionsFrom, readConfigJson, resolveModelFolder } from '../models/loading.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { modelOptions, type Device } from './resolve.js';

/** An image as the pipeline takes it: decoded, or a file path, or encoded bytes (PNG, JPEG, WebP). */
export type DepthImageInput = RGBImage | string | Uint8Array;

export interface DepthEstimationResult {
  /** The model's output, not resized: [1, h', w'] float32 (relative inverse depth: larger is nearer). */
  readonly predictedDepth: Tensor<'float32'>;
  /** The depth at the input's size, scaled so the maximum is 255 (PIL mode L). */
  readonly depth: GrayImage;
}

export interface DepthEstimationOptions {
  model: DepthEstimationModel;
  /** The model repo's `preprocessor_config.json`; default `defaultDepthProcessor(model.config)`. */
  processor?: DPTImageProcessor;
}

/**
 * The processor a model's conversion script writes, for callers without the repo's file: DPT gets
 * DPTImageProcessor's defaults (384 × 384, mean = std = 0.5, bicubic: the published DPT models'), Depth
 * Anything its converter's (518 on the side that changes least, multiples of the patch size, ImageNet
 * mean and std, bicubic).
 */
export function defaultDepthProcessor(config: DepthEstimationModelConfig): DPTImageProcessor {
  if (config.modelType === 'dpt') return DPTImageProcessor.fromConfig({}, 'DPTImageProcessor defaults');
  return DPTImageProcessor.fromConfig(
    {
      size: { height: 518, width: 518 },
      keep_aspect_ratio: true,
      ensure_multiple_of: config.patchSize,
      image_mean: [0.485, 0.456, 0.406],
      image_std: [0.229, 0.224, 0.225],
    },
    'Depth Anything processor defaults',
  );
}

/** Step 1's `load_image`: decode a path or bytes; an `RGBImage` is taken as it is. */
async function toRGB(image: DepthImageInput): Promise<RGBImage> {
  return image instanceof RGBImage ? image : loadImage(image);
}

/** `depthEstimation` with an explicit model (and processor): transformers' `pipeline("depth-estimation")(image)`. */
export async function depthEstimation(image: DepthImageInput, options: DepthEstimationOptions): Promise<DepthEstimationResult> {
  // 1. preprocess
  const rgb = await toRGB(image);
  checkDepthInputSize(rgb.width, rgb.height);
  const processor = options.processor ?? defaultDepthProcessor(options.model.config);
  const pixelValues = processor.preprocess(rgb); // [1, 3, h, w]
  // 2. forward
  const predictedDepth = checkPredictedDepth(await options.model.forward(pixelValues)); // [1, h', w']
  // 3. postprocess
  const interpolated = interpolateDepth(predictedDepth, { width: rgb.width, height: rgb.height }); // [H, W]
  return { predictedDepth, depth: depthToImage(interpolated) };
}

function checkPredictedDepth(t: TensorLike): Tensor<'float32'> {
  const [batch, h, w] = t.dims;
  if (!(t.data instanceof Float32Array) || t.dims.length !== 3 || batch !== 1 || !(h! > 0 && w! > 0) || t.data.length !== h! * w!) {
    throw new InputError(`predicted_depth must be float32 [1, h, w], got ${t.data.constructor.name} [${t.dims.join(', ')}]`);
  }
  return new Tensor('float32', t.data, t.dims);
}

/**
 * The pipeline's `F.interpolate(predicted_depth.unsqueeze(1), size=(H, W), mode="bicubic",
 * align_corners=False).squeeze()`. Shapes: [1, h', w'] → [H, W].
 */
export function interpolateDepth(predictedDepth: TensorLike, size: { readonly width: number; readonly height: number }): Tensor<'float32'> {
  const d = checkPredictedDepth(predictedDepth);
  const [, h, w] = d.dims as [number, number, number];
  return new Tensor('float32', interpolateBicubic(d.data, { width: w, height: h }, size), [size.height, size.width]);
}

/**
 * numpy's float32 → uint8 `astype` as it behaves on x86-64 (the reference platform): truncation
 * toward zero through a 32-bit integer, keeping the low byte; NaN and values out of int32 range give 0.
 * In [0, 256) this is plain truncation, which is all a positive depth map ever meets; a bicubic
 * overshoot to −1 or below wraps (to 255 …), as it does in Python.
 */
function castToUint8(x: number): number {
  if (!(Math.abs(x) < 2 ** 31)) return 0;
  return Math.trunc(x) & 255;
}

/**
 * Step 3's normalisation: `(x · 255 / max(x)).astype("uint8")` in float32 (multiply first, then
 * divide). Shapes: [H, W] float32 → H × W gray bytes.
 */
export function depthToImage(interpolated: TensorLike): GrayImage {
  if (!(interpolated.data instanceof Float32Array) || interpolated.dims.length !== 2) {
    throw new InputError(`depthToImage: expected float32 [H, W], got ${interpolated.data.constructor.name} [${interpolated.dims.join(', ')}]`);
  }
  const [height, width] = interpolated.dims as [number, number];
  const src = interpolated.data;
  let max = -Infinity;
  for (const v of src) {
    if (Number.isNaN(v)) {
      max = NaN; // np.max propagates NaN (and every byte then comes out 0)
      break;
    }
    if (v > max) max = v;
  }
  const out = new Uint8Array(src.length);
  const f = Math.fround;
  for (let i = 0; i < src.length; i++) out[i] = castToUint8(f(f(src[i]! * 255) / max));
  return new GrayImage(width, height, out);
}

/**
 * Recipe B before the bytes: bicubic (torch, align_corners=False) to `size`, then `(d − min) / (max − min)`
 * over the whole map in float32. Shapes: [1, h', w'] → [H, W]. A flat map gives NaN (0 / 0), as in Python.
 */
export function depthMinMax(predictedDepth: TensorLike, size: { readonly width: number; readonly height: number }): Tensor<'float32'> {
  const d = interpolateDepth(predictedDepth, size);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of d.data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const f = Math.fround;
  const range = f(hi - lo);
  const out = new Float32Array(d.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(f(d.data[i]! - lo) / range);
  return new Tensor('float32', out, d.dims);
}

/**
 * Recipe B, diffusers' `get_depth_map` (the SDXL depth ControlNet example): the min-max map of
 * `depthMinMax` in R, G and B, `(x · 255).clip(0, 255).astype(uint8)` (truncation; a flat map's NaN → 0).
 * Shapes: [1, h', w'] → `size`.height × `size`.width RGB.
 */
export function depthControlImage(predictedDepth: TensorLike, size: { readonly width: number; readonly height: number }): RGBImage {
  const m = depthMinMax(predictedDepth, size).data;
  const out = new Uint8Array(m.length * 3);
  for (let i = 0; i < m.length; i++) {
    const x = Math.fround(m[i]! * 255);
    const v = x > 0 ? (x < 255 ? Math.trunc(x) : 255) : 0; // NaN fails both tests → 0
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return new RGBImage(size.width, size.height, out);
}

export interface DepthEstimationPipelineOptions extends DepthEstimationPretrainedOptions {
  /** Execution provider shorthand, as for the ControlNet-XS pipelines: 'cpu' (default), 'cuda', 'webgpu'. */
  device?: Device;
}

/**
 * A depth model with its image processor, loaded from one folder or Hub repo
 * (`pipeline("depth-estimation", model=...)`): `run(image)` gives `{ predictedDepth, depth }`.
 */
export class DepthEstimationPipeline {
  constructor(
    readonly model: DepthEstimationModel,
    readonly processor: DPTImageProcessor,
  ) {}

  /**
   * `preprocessor_config.json`, `config.json` and the weights of a local folder or a Hub repo (through
   * the shared cache; `localFilesOnly` for offline use). config.json's model type and the processor
   * are checked first, so a folder that is not a depth model fails by name before any weight is opened.
   */
  static async fromPretrained(source: string, options: DepthEstimationPipelineOptions = {}): Promise<DepthEstimationPipeline> {
    const { subfolder, device, runtime, trace, warn, variant, ...hub } = options;
    const folder = await resolveModelFolder(source, { ...hub, ...(subfolder ? { subfolder } : {}), ...(variant ? { variant } : {}), ...(warn ? { warn } : {}) });
    depthModelType(readConfigJson(folder), join(folder, 'config.json')); // another architecture is refused by name first
    const processorPath = await processorFile(source, folder, options);
    const processor = DPTImageProcessor.fromPretrained(dirname(processorPath), warn ? { warn } : {});
    const runtimeOptions = modelOptions({ ...(device ? { device } : {}), ...(runtime ? { runtime } : {}), ...(trace ? { trace } : {}), ...(warn ? { warn } : {}) });
    const model = await loadDepthEstimationModel(folder, { ...hub, ...runtimeOptions, ...(variant ? { variant } : {}), ...(warn ? { warn } : {}) });
    return new DepthEstimationPipeline(model, processor);
  }

  /** Estimate the depth of one image. */
  async run(image: DepthImageInput): Promise<DepthEstimationResult> {
    return depthEstimation(image, { model: this.model, processor: this.processor });
  }

  /** Free the model's onnxruntime session. */
  async release(): Promise<void> {
    await this.model.release();
  }
}

/**
 * Where `preprocessor_config.json` is: in the model folder, or (Hub repos, whose model download takes
 * config.json and weights only) fetched into the same snapshot.
 */
async function processorFile(source: string, folder: string, options: DepthEstimationPipelineOptions): Promise<string> {
  const local = join(folder, DPT_PREPROCESSOR_CONFIG);
  if (existsSync(local) || existsSync(source) || !/^[\w.-]+\/[\w.-]+$/.test(source)) return local;
  const file = options.subfolder ? `${options.subfolder}/${DPT_PREPROCESSOR_CONFIG}` : DPT_PREPROCESSOR_CONFIG;
  return hubDownload(source, file, hubOptionsFrom(options));
}
