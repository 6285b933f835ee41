/**
 * The depth-estimation models behind one interface (transformers' `AutoModelForDepthEstimation` for
 * the two architectures the ControlNet-XS depth recipes use): DPT (`model_type` "dpt": dpt-hybrid-midas,
 * dpt-large) and Depth Anything (`model_type` "depth_anything", V1/V2). `loadDepthEstimationModel`
 * reads config.json and picks the class; anything else is refused by name before any weight is read.
 */
import { ConfigError } from '../errors.js';
import type { Tensor, TensorLike } from '../tensor.js';
import { DepthAnythingForDepthEstimation } from './depth-anything.js';
import { DPTForDepthEstimation } from './dpt.js';
import { readConfigJson, resolveModelFolder, type PretrainedOptions } from './loading.js';
import type { ModelRuntimeOptions } from './traced-model.js';

export interface DepthEstimationPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {}

/** What the depth pipeline needs of a model's config (both configs have these fields). */
export interface DepthEstimationModelConfig {
  readonly modelType: 'dpt' | 'depth_anything';
  /** Side length of a patch of the ViT/Dinov2 backbone: what the image processor's ensure_multiple_of usually matches. */
  readonly patchSize: number;
}

export interface DepthEstimationModel {
  readonly config: DepthEstimationModelConfig;
  /**
   * Throws an InputError naming the size if the model cannot take a `height` × `width` input
   * (DPT-hybrid: only its image_size; plain-ViT DPT: a square patch grid; every model: at least one patch).
   * Both built-in classes have it (optional so stand-in models need not); `forward` checks it too.
   */
  checkInputSize?(height: number, width: number): void;
  /** [h', w'] of predicted_depth for a `height` × `width` input (DPT: the fusion chain's size; Depth Anything: ⌊H/p⌋·p × ⌊W/p⌋·p). */
  predictedDepthSize?(height: number, width: number): [number, number];
  /** pixel_values float32 [1, 3, h, w] (the image processor's output) → predicted_depth float32 [1, h', w']. */
  forward(pixelValues: TensorLike): Promise<Tensor<'float32'>>;
  /** Free the onnxruntime session; the next forward opens a new one. */
  release(): Promise<void>;
}

/** The model types `loadDepthEstimationModel` knows. */
export const DEPTH_MODEL_TYPES = ['dpt', 'depth_anything'] as const;

/** The transformers class each of them loads as (config.json's `architectures`, when it says). */
const DEPTH_CLASSES = { dpt: 'DPTForDepthEstimation', depth_anything: 'DepthAnythingForDepthEstimation' } as const;

/**
 * A depth-estimation model from a folder or Hub id: config.json's `model_type` picks DPT or Depth
 * Anything (ConfigError naming the file and the type for anything else, e.g. a UNet folder).
 */
export async function loadDepthEstimationModel(source: string, options: DepthEstimationPretrainedOptions = {}): Promise<DepthEstimationModel> {
  const folder = await resolveModelFolder(source, options);
  const origin = `${folder}/config.json`;
  const raw = readConfigJson(folder);
  const type = depthModelType(raw, origin);
  const opened = withoutSubfolder(options);
  return type === 'dpt' ? DPTForDepthEstimation.fromPretrained(folder, opened) : DepthAnythingForDepthEstimation.fromPretrained(folder, opened);
}

/** `folder` already includes the subfolder. */
function withoutSubfolder(options: DepthEstimationPretrainedOptions): DepthEstimationPretrainedOptions {
  const { subfolder: _s, ...rest } = options;
  return rest;
}

/**
 * config.json's model type, if it is a depth model this port runs: ConfigError naming the file and the
 * type otherwise, or naming the class when `architectures` lists another head of a known type (DPT's
 * semantic segmentation, a bare DPTModel).
 */
export function depthModelType(raw: Readonly<Record<string, unknown>>, origin: string): (typeof DEPTH_MODEL_TYPES)[number] {
  const type = raw['model_type'];
  if (type === 'dpt' || type === 'depth_anything') {
    const archs = raw['architectures'];
    if (Array.isArray(archs) && archs.length > 0 && !archs.includes(DEPTH_CLASSES[type])) {
      throw new ConfigError(`${origin}: architectures ${JSON.stringify(archs)} is not a depth-estimation model; a "${type}" checkpoint for depth is a ${DEPTH_CLASSES[type]}`);
    }
    return type;
  }
  const cls = typeof raw['_class_name'] === 'string' ? ` (a diffusers ${raw['_class_name']})` : Array.isArray(raw['architectures']) ? ` (${raw['architectures'].join(', ')})` : '';
  throw new ConfigError(
    `${origin}: not a depth-estimation model${cls}: model_type ${JSON.stringify(type ?? null)}; expected one of ${DEPTH_MODEL_TYPES.map((t) => `"${t}"`).join(', ')} (DPTForDepthEstimation, DepthAnythingForDepthEstimation)`,
  );
}
