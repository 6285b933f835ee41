/**
 * Loading the pipeline a generation runs on, as `cnxs generate` and the server both do: SD or SDXL
 * from the model, one graph cache and one device-fallback line for all its models (so an unwritable
 * cache or a missing GPU is one warning, not one per model).
 */
import { loadControlNetXSPipeline, type ControlType, type LoadedControlNetXSPipeline } from '../pipelines/load.js';
import type { ComputeDtype } from '../models/compute-dtype.js';
import type { Device, PipelineLoadOptions } from '../pipelines/resolve.js';
import { NSFW_WARNING } from '../pipelines/safety-checker.js';
import { formatDeviceFallback, type DeviceFallback } from '../runtime/device-fallback.js';
import { GraphCache } from '../runtime/graph-cache.js';

export interface GenerationPipelineOptions {
  /** Base model: Hub id, diffusers folder, or single file. */
  model: string;
  /** ControlNet-XS adapter (Hub id or folder); default the published canny adapter of the model's family. */
  controlnet?: string | undefined;
  /** Without `controlnet`: which published adapter to default to (canny, or depth for depth-map control images). */
  controlType?: ControlType | undefined;
  /** Configs for a single-file model. */
  config?: string | undefined;
  variant?: string | undefined;
  revision?: string | undefined;
  /** Only the local Hugging Face cache. */
  offline?: boolean;
  /** Optimized-graph cache folder; null or absent: none. */
  graphCacheDir?: string | null | undefined;
  device?: Device | undefined;
  /** Compute dtype of every model (diffusers' `torch_dtype`); float16 on GPU providers only. */
  dtype?: ComputeDtype | undefined;
  /** Run the model's safety checker where it has one (default true). */
  safetyChecker?: boolean;
  /** Warnings (device fallback, library notices), one line each. */
  warn: (message: string) => void;
  onDownloadProgress?: PipelineLoadOptions['onDownloadProgress'];
}

export interface GenerationPipeline extends LoadedControlNetXSPipeline {
  /** The adapter's name for the `parameters` text: the id or folder loaded. */
  controlnetName: string;
}

export async function loadGenerationPipeline(o: GenerationPipelineOptions): Promise<GenerationPipeline> {
  const fallbacks = new Set<string>();
  const onDeviceFallback = (f: DeviceFallback) => {
    const line = formatDeviceFallback({ ...f, model: '' });
    if (!fallbacks.has(line)) o.warn(line);
    fallbacks.add(line);
  };
  const loaded = await loadControlNetXSPipeline(o.model, {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.revision ? { revision: o.revision } : {}),
    ...(o.offline ? { localFilesOnly: true } : {}),
    runtime: { onDeviceFallback, ...(o.graphCacheDir ? { graphCache: new GraphCache(o.graphCacheDir) } : {}) },
    ...(o.device && o.device !== 'cpu' ? { device: o.device } : {}),
    ...(o.dtype ? { dtype: o.dtype } : {}),
    ...(o.onDownloadProgress ? { onDownloadProgress: o.onDownloadProgress } : {}),
    // diffusers' flagged-image warning names no image: the front end says which, from nsfwContentDetected
    warn: (m) => {
      if (m !== NSFW_WARNING) o.warn(m);
    },
    ...(o.controlnet ? { controlnet: o.controlnet } : {}),
    ...(o.controlType ? { controlType: o.controlType } : {}),
    ...(o.config ? { config: o.config } : {}),
    ...(o.safetyChecker === false ? { safetyChecker: null } : {}),
  });
  return { ...loaded, controlnetName: loaded.controlnet ?? o.controlnet ?? '' };
}
