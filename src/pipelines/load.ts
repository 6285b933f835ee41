/**
 * `loadControlNetXSPipeline`: a base model and a ControlNet-XS adapter → the right pipeline, picked
 * from the base model's `model_index.json` (SDXL classes → the SDXL pipeline), with the published
 * canny adapter for that family when none is named. A single file (original SD / SDXL checkpoint)
 * picks the pipeline from its keys instead.
 */
import { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import { isSingleFilePath, openSingleFile } from '../models/single-file/open.js';
import { loadAdapter, readModelIndex, type PipelineVae } from './components.js';
import { resolveModelDir, resolvePipelineDir, type PipelineLoadOptions } from './resolve.js';
import type { SafetyCheckerLoadOptions } from './safety-checker.js';
import { StableDiffusionControlNetXSPipeline } from './stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from './stable-diffusion-xl-controlnet-xs.js';
import { singleFileKind } from './single-file.js';

export type PipelineKind = 'sd' | 'sdxl';

/** The published ControlNet-XS canny adapters, by base-model family. */
export const DEFAULT_CONTROLNETS: Readonly<Record<PipelineKind, string>> = Object.freeze({
  sd: 'UmerHA/Testing-ConrolNetXS-SD2.1-canny',
  sdxl: 'UmerHA/Testing-ConrolNetXS-SDXL-canny',
});

/** The published depth adapters (the other kind the paper's authors released), for depth-map control images. */
export const DEFAULT_DEPTH_CONTROLNETS: Readonly<Record<PipelineKind, string>> = Object.freeze({
  sd: 'UmerHA/Testing-ConrolNetXS-SD2.1-depth',
  sdxl: 'UmerHA/Testing-ConrolNetXS-SDXL-depth',
});

/** What the control image shows: picks the default adapter when none is given. */
export type ControlType = 'canny' | 'depth';

function defaultControlnet(kind: PipelineKind, type: ControlType | undefined): string {
  return (type === 'depth' ? DEFAULT_DEPTH_CONTROLNETS : DEFAULT_CONTROLNETS)[kind];
}

export interface LoadControlNetXSPipelineOptions extends PipelineLoadOptions, SafetyCheckerLoadOptions {
  /** The adapter: loaded already, or a Hub id / folder; default `DEFAULT_CONTROLNETS[kind]`. */
  controlnet?: ControlNetXSAdapter | string;
  /** Without `controlnet`: 'canny' (default) takes `DEFAULT_CONTROLNETS[kind]`, 'depth' `DEFAULT_DEPTH_CONTROLNETS[kind]`. */
  controlType?: ControlType;
  /**
   * When `model` is a single file (`.safetensors` / `.ckpt` in the original layout): the configs to
   * load it with, a diffusers folder or Hub id; default the bundled ones of its detected model type.
   */
  config?: string;
  /** A VAE to use instead of the model's, e.g. TAESD's `AutoencoderTiny` for fast decoding. */
  vae?: PipelineVae;
}

export interface LoadedControlNetXSPipeline {
  pipeline: StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline;
  kind: PipelineKind;
  /** The adapter's Hub id or folder as given or defaulted (null when an adapter object was passed). */
  controlnet: string | null;
}

/** Which pipeline a diffusers folder is for, from its `model_index.json` `_class_name`. */
export function pipelineKind(dir: string): PipelineKind {
  return String(readModelIndex(dir)['_class_name'] ?? '').includes('XL') ? 'sdxl' : 'sd';
}

/** Resolve (download if needed) and load the base model and adapter into the matching pipeline. */
export async function loadControlNetXSPipeline(model: string, options: LoadControlNetXSPipelineOptions = {}): Promise<LoadedControlNetXSPipeline> {
  if (isSingleFilePath(model) || SINGLE_FILE_NAME.test(model)) return loadSingleFilePipeline(model, options);
  const { controlnet: given, controlType, safetyChecker, featureExtractor, requiresSafetyChecker, config: _config, ...load } = options;
  // the SD pipeline's safety options (SDXL has no checker); a checker passed in (or null) is not downloaded
  const safety = {
    ...(safetyChecker !== undefined ? { safetyChecker } : {}),
    ...(featureExtractor !== undefined ? { featureExtractor } : {}),
    ...(requiresSafetyChecker !== undefined ? { requiresSafetyChecker } : {}),
  };
  const dir = await resolvePipelineDir(model, load, safetyChecker === undefined ? [] : ['safety_checker']);
  const kind = pipelineKind(dir);
  const controlnetId = given instanceof ControlNetXSAdapter ? null : (given ?? defaultControlnet(kind, controlType));
  const controlnet = given instanceof ControlNetXSAdapter ? given : await resolveAdapter(controlnetId!, load);
  const pipeline =
    kind === 'sdxl'
      ? await StableDiffusionXLControlNetXSPipeline.fromPretrained(dir, { ...load, controlnet })
      : await StableDiffusionControlNetXSPipeline.fromPretrained(dir, { ...load, ...safety, controlnet });
  return { pipeline, kind, controlnet: controlnetId };
}

/** Names of single-file checkpoints: taken as a file (a missing one is then an error naming it), never as a Hub id. */
const SINGLE_FILE_NAME = /\.(safetensors|ckpt|pt|pth|bin)$/i;

/**
 * A single file: the pipeline of its detected kind (SDXL when it has SDXL's second text encoder),
 * through `fromSingleFile`. Like diffusers' from_single_file, no safety checker is loaded.
 */
async function loadSingleFilePipeline(path: string, options: LoadControlNetXSPipelineOptions): Promise<LoadedControlNetXSPipeline> {
  const { controlnet: given, controlType, safetyChecker: _s, featureExtractor: _f, requiresSafetyChecker: _r, config, ...load } = options;
  const kind = singleFileKind(await openSingleFile(path));
  const controlnetId = given instanceof ControlNetXSAdapter ? null : (given ?? defaultControlnet(kind, controlType));
  const controlnet = given instanceof ControlNetXSAdapter ? given : await resolveAdapter(controlnetId!, load); // bounds: set when not an adapter
  const fileOptions = { ...load, controlnet, ...(config !== undefined ? { config } : {}) };
  const pipeline =
    kind === 'sdxl' ? await StableDiffusionXLControlNetXSPipeline.fromSingleFile(path, fileOptions) : await StableDiffusionControlNetXSPipeline.fromSingleFile(path, fileOptions);
  return { pipeline, kind, controlnet: controlnetId };
}

/**
 * An adapter folder or Hub id, in `load`'s variant where it has one (the published adapters have no
 * fp16 files: the default weights then, with a notice). The base model's revision names a commit of
 * the base repo, so it is not passed on.
 */
async function resolveAdapter(idOrDir: string, load: PipelineLoadOptions): Promise<ControlNetXSAdapter> {
  const { revision: _baseRevision, ...adapterLoad } = load;
  const dir = await resolveModelDir(idOrDir, adapterLoad);
  return loadAdapter(dir, { ...(load.variant ? { variant: load.variant } : {}), warn: load.warn ?? console.warn }, null);
}
