/**
 * The one place that loads onnxruntime-node: on first use, not at import, because two things must be
 * settled before onnxruntime creates its process-wide environment (which the first session does),
 * and importing this library should load no native code. Measured in docs/onnxruntime-measurements.md.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { EXTERNAL_DATA_FOLDER } from '../graph/builder.js';
import type { ModelProto } from '../graph/onnx-proto.js';

export type Onnxruntime = typeof Ort;

/**
 * How a session finds the weights its initializers point at (external data): the model to serialise
 * (the browser renames the locations), session config entries, and the files' bytes where
 * onnxruntime cannot read them itself (onnxruntime-web's `externalData`).
 */
export interface WeightFiles {
  model: ModelProto;
  extraSession: Record<string, string>;
  externalData?: { path: string; data: Uint8Array }[];
}

/**
 * onnxruntime-node, ready for sessions: its usage telemetry off unless the user asked for it, and its
 * environment's log quiet. Node caches the import, so every call returns the same module.
 */
export async function loadOnnxruntime(): Promise<Onnxruntime> {
  // onnxruntime's native library records usage events (Microsoft's 1DS SDK, in SQLite) into
  // $XDG_CACHE_HOME or ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db, or into a
  // ":memory:.ses" file in the current folder when that cache is read-only, unless ORT_DISABLE_TELEMETRY
  // is set ("1", "true", "yes") when the first session starts; it reads it once per process. A value the
  // user set is kept: ORT_DISABLE_TELEMETRY=0 opts back in.
  if (!process.env.ORT_DISABLE_TELEMETRY) process.env.ORT_DISABLE_TELEMETRY = '1';
  const ort = await import('onnxruntime-node');
  // The environment's logger (its level is fixed by the first session, for the process) prints what happens
  // outside a session in red on stderr: a provider whose libraries are missing (`cuda`) logs its loader error
  // at level "error" and then throws it, which the runtime seam reports in one line. Sessions set their own
  // level (RuntimeOptions.logSeverityLevel). A level other than onnxruntime's default "warning" was set by the
  // user and is kept.
  if (ort.env.logLevel === 'warning') ort.env.logLevel = 'fatal';
  return ort;
}

/** The folder holding onnxruntime-node's native libraries for this platform (where the CUDA install puts its own). */
export function onnxruntimeBinaryDir(): string | null {
  try {
    const main = createRequire(import.meta.url).resolve('onnxruntime-node');
    return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return null;
  }
}

/** The execution providers this onnxruntime build has. */
export function supportedBackends(ort: Onnxruntime): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

/** onnxruntime-node reads the weights from disk itself: locations are absolute paths under `/`. */
export async function weightFiles(model: ModelProto): Promise<WeightFiles> {
  return { model, extraSession: { model_external_initializers_file_folder_path: EXTERNAL_DATA_FOLDER } };
}

/**
 * What the browser build's binding (`onnxruntime.browser.ts`) checks what must be settled before a session reads any weight; onnxruntime-node has none.
 */
export interface BrowserRuntimeChecks {
  /** The page's WebGPU: why it cannot run here (no `navigator.gpu`, no adapter) and a hint, or the adapter's name and features. */
  webgpu(): Promise<{ missing: string; hint: string } | { adapter: string; features: { has(feature: string): boolean } }>;
  /**
   * Refuses a model whose weights the browser cannot hand onnxruntime-web on `executionProviders` (a
   * file over one ArrayBuffer, more than wasm memory holds), naming the file or model, its size and
   * the limit; `note` says why the model is there when it was not asked for (a fallback).
   */
  checkWeights(model: ModelProto, executionProviders: readonly string[], note?: string): Promise<void>;
}

/** onnxruntime-node settles all of that itself: no checks. */
export function browserRuntimeChecks(): BrowserRuntimeChecks | null {
  return null;
}
