/** Where a pipeline's files are: a local folder as is, or a Hub repo resolved into the Python-compatible cache. */
import { resolvePretrained } from '../hub/index.js';
import { hubOptionsFrom } from '../models/loading.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { TraceOptions } from '../graph/builder.js';
import type { ModelRuntimeOptions } from '../models/traced-model.js';
import { checkComputeDtype, type ComputeDtype } from '../models/compute-dtype.js';

/** 'wasm' is the browser build's CPU (onnxruntime-web's WebAssembly backend); Node runs it on the CPU provider with a notice. */
export type Device = 'cpu' | 'cuda' | 'webgpu' | 'wasm';
/** The devices the Node command line offers. */
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu'];

export interface PipelineLoadOptions {
  /** Weights variant of every component, e.g. 'fp16'. */
  variant?: string;
  /**
   * Compute dtype of every component (diffusers' `torch_dtype`), default 'float32'; 'float16' on 'webgpu' or
   * 'cuda' only (a ConfigError on the CPU, before anything is downloaded). Weights stay float16 from a
   * float16 checkpoint (`variant: 'fp16'`) or are cast once when each session opens.
   */
  dtype?: ComputeDtype;
  /** Shorthand for the execution provider: 'cpu' (default), 'cuda', 'webgpu'; in the browser 'wasm' or 'webgpu'. */
  device?: Device;
  revision?: string;
  cacheDir?: string;
  localFilesOnly?: boolean;
  token?: string | false;
  signal?: AbortSignal;
  endpoint?: string;
  onDownloadProgress?: (p: { file: string; loaded: number; total: number | null }) => void;
  runtime?: RuntimeOptions;
  trace?: Partial<TraceOptions>;
  warn?: (message: string) => void;
}

/**
 * A pipeline folder: local as is, or a Hub repo downloaded (only the files it needs) into the cache;
 * `skip` names component folders not to download (components the caller passes in instead).
 */
export async function resolvePipelineDir(idOrDir: string, options: PipelineLoadOptions, skip: readonly string[] = []): Promise<string> {
  checkComputeDtype('pipeline', options.dtype, modelOptions(options).runtime?.executionProviders ?? ['cpu']); // before any download
  return resolvePretrained(idOrDir, { ...hubOptionsFrom(options), files: 'pipeline', ...(skip.length ? { skipComponents: skip } : {}) });
}

/** A single model folder (config.json + weights), local or from the Hub. */
export async function resolveModelDir(idOrDir: string, options: PipelineLoadOptions & { subfolder?: string }): Promise<string> {
  return resolvePretrained(idOrDir, { ...hubOptionsFrom(options), files: 'model', ...(options.subfolder ? { subfolder: options.subfolder } : {}) });
}

/** Model-level options of a pipeline load. */
export function modelOptions(o: PipelineLoadOptions): ModelRuntimeOptions & { variant?: string } {
  const providers = o.device && o.device !== 'cpu' ? { executionProviders: [o.device, 'cpu'] } : {};
  const runtime = { ...providers, ...o.runtime, ...(o.warn && !o.runtime?.warn ? { warn: o.warn } : {}) };
  return {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(Object.keys(runtime).length ? { runtime } : {}),
    ...(o.trace ? { trace: o.trace } : {}),
    ...(o.dtype ? { dtype: o.dtype } : {}),
  };
}
