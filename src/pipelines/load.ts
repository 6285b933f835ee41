/**
 * `loadControlNetXSPipeline`: a base model and a ControlNet-XS adapter → the right pipeline, picked
 * from the base model's `model_index.json` (SDXL classes → the SDXL pipeline), with the published
 * canny adapter for that family when none is named.
 */
import { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import { loadAdapter, readModelIndex } from './components.js';
import { resolveModelDir, resolvePipelineDir, type PipelineLoadOptions } from './resolve.js';
import { StableDiffusionControlNetXSPipeline } from './stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from './stable-diffusion-xl-controlnet-xs.js';

export type PipelineKind = 'sd' | 'sdxl';

/** The published ControlNet-XS canny adapters, by base-model family. */
export const DEFAULT_CONTROLNETS: Readonly<Record<PipelineKind, string>> = Object.freeze({
  sd: 'UmerHA/Testing-ConrolNetXS-SD2.1-canny',
  sdxl: 'UmerHA/Testing-ConrolNetXS-SDXL-canny',
});

export interface LoadControlNetXSPipelineOptions extends PipelineLoadOptions {
  /** The adapter: loaded already, or a Hub id / folder; default `DEFAULT_CONTROLNETS[kind]`. */
  controlnet?: ControlNetXSAdapter | string;
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
  const { controlnet: given, ...load } = options;
  const dir = await resolvePipelineDir(model, load);
  const kind = pipelineKind(dir);
  const controlnetId = given instanceof ControlNetXSAdapter ? null : (given ?? DEFAULT_CONTROLNETS[kind]);
  const controlnet = given instanceof ControlNetXSAdapter ? given : await resolveAdapter(controlnetId!, load);
  const pipeline =
    kind === 'sdxl'
      ? await StableDiffusionXLControlNetXSPipeline.fromPretrained(dir, { ...load, controlnet })
      : await StableDiffusionControlNetXSPipeline.fromPretrained(dir, { ...load, controlnet });
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
