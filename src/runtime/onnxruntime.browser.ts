/**
 * The browser build's `onnxruntime.ts`: onnxruntime-web (WebAssembly, and WebGPU through its JSEP
 * build), loaded on the first session. Its `.wasm` and glue `.mjs` files lie next to the bundle
 * (the build copies them), so they are looked up in the bundle's own folder.
 *
 * Weights: onnxruntime-web cannot open files, so each file the model's initializers point into is
 * handed over whole through the session's `externalData` (from Cache Storage). onnxruntime copies
 * what it needs into wasm memory (wasm) or GPU buffers (WebGPU) while the session opens and drops
 * its reference afterwards; the copy made here is held by nothing else, so the peak is one file-size
 * array per weights file during the open, never a second copy of the whole model.
 *
 * Before a session reads any weight, the runtime seam asks the checks
 * `browserRuntimeChecks()` returns (`BrowserRuntimeChecks`): whether the page has WebGPU (so a browser
 * without it is a reported fallback to wasm, not onnxruntime-web's own error), and whether the
 * model fits the browser's limits, from the safetensors headers alone (loading reads nothing else).
 */
import { ControlNetXSError } from '../errors.js';
import { OnnxDataType, type GraphProto, type ModelProto, type TensorProto } from '../graph/onnx-proto.js';
import { browserGlobals } from '../platform/browser-globals.js';
import { readWholeFile, statFile } from '../platform/files.browser.js';
import type { BrowserRuntimeChecks, Onnxruntime, WeightFiles } from './onnxruntime.js';

export type { BrowserRuntimeChecks, Onnxruntime, WeightFiles } from './onnxruntime.js';

/** A model the browser cannot hold: a weights file over one ArrayBuffer, or more weights than wasm memory takes. */
export class BrowserLimitError extends ControlNetXSError {}

/** The most bytes one weights file may have: it reaches onnxruntime-web as one ArrayBuffer (2 GiB − 1 in Chromium). */
export const MAX_WEIGHTS_FILE_BYTES = 2 ** 31 - 1;

/**
 * The weights one session may put in wasm memory: wasm32 addresses 4 GiB, and 1 GiB of it is left
 * for what is not weights — onnxruntime's code and arena, a 512 px UNet step's activations (batch 2
 * under guidance), the pipeline's other sessions, which share the one memory.
 */
export const WASM_WEIGHTS_BUDGET = 3 * 2 ** 30;

/** onnxruntime-web, with its files in the bundle's folder; one wasm thread unless the page is cross-origin isolated. */
export async function loadOnnxruntime(): Promise<Onnxruntime> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.wasmPaths = new URL('.', import.meta.url).href;
  // Threads need SharedArrayBuffer, which browsers only give cross-origin isolated pages (COOP + COEP headers).
  if (browserGlobals().crossOriginIsolated !== true) ort.env.wasm.numThreads = 1;
  if (ort.env.logLevel === 'warning') ort.env.logLevel = 'error';
  // onnxruntime-web implements onnxruntime-common's API, which the Node typings describe too.
  return ort as unknown as Onnxruntime;
}

/** What the seam settles before a session reads any weight: the page's WebGPU and the browser's limits. */
export function browserRuntimeChecks(): BrowserRuntimeChecks | null {
  return { webgpu: probeWebGpu, checkWeights };
}

/** No native library folder in a browser. */
export function onnxruntimeBinaryDir(): string | null {
  return null;
}

/** onnxruntime-web's backends ('cpu' is its name for wasm too); whether the page has WebGPU is `browserChecks.webgpu()`. */
export function supportedBackends(_ort: Onnxruntime): string[] {
  return ['wasm', 'cpu', 'webgpu'];
}

/**
 * The model with its external-data locations (the files' URLs) renamed to short names, and those
 * files' bytes under those names: onnxruntime-web looks external data up by that name in what the
 * session was given.
 */
export async function weightFiles(model: ModelProto): Promise<WeightFiles> {
  const names = new Map<string, string>();
  const renamed = renameLocations(model.graph, names);
  const externalData = await Promise.all([...names].map(async ([url, path]) => ({ path, data: await readWholeFile(url) })));
  return { model: { ...model, graph: renamed }, extraSession: {}, externalData };
}

function renameLocations(graph: GraphProto, names: Map<string, string>): GraphProto {
  const initializers = graph.initializers.map((t): TensorProto => {
    if (t.external === undefined) return t;
    let name = names.get(t.external.location);
    if (name === undefined) {
      name = `weights-${names.size}.bin`;
      names.set(t.external.location, name);
    }
    return { ...t, external: { ...t.external, location: name } };
  });
  const nodes = graph.nodes.map((n) => {
    if (n.attributes === undefined) return n;
    const attributes = Object.fromEntries(
      Object.entries(n.attributes).map(([k, v]) => [k, typeof v === 'object' && v !== null && 'graph' in v ? { graph: renameLocations(v.graph, names) } : v]),
    );
    return { ...n, attributes };
  });
  return { ...graph, initializers, nodes };
}

/** What a `GPUAdapter` shows of itself (the project has no DOM types). */
interface GpuAdapterLike {
  features: { has(feature: string): boolean };
  info?: { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean };
}

const NO_WEBGPU_HINT = "Use a browser with WebGPU enabled and a GPU it accepts, or device 'wasm' (the same pipeline, without this notice)";

/** The page's WebGPU adapter, as onnxruntime-web would get it (default options), or why there is none. */
async function probeWebGpu(): ReturnType<BrowserRuntimeChecks['webgpu']> {
  const gpu = browserGlobals().navigator?.gpu;
  if (gpu === undefined) return { missing: 'this browser has no WebGPU (navigator.gpu is missing)', hint: NO_WEBGPU_HINT };
  let adapter: unknown;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    return { missing: `no WebGPU adapter (requestAdapter() failed: ${(e as Error).message})`, hint: NO_WEBGPU_HINT };
  }
  if (typeof adapter !== 'object' || adapter === null || !('features' in adapter)) {
    return { missing: 'no WebGPU adapter (navigator.gpu.requestAdapter() gave none)', hint: NO_WEBGPU_HINT };
  }
  const a = adapter as GpuAdapterLike;
  const name = [a.info?.vendor, a.info?.architecture, a.info?.description].filter((p) => p !== undefined && p !== '').join(' ') || 'unnamed';
  return { adapter: a.info?.isFallbackAdapter === true ? `${name}, a fallback adapter` : name, features: a.features };
}

/** A weight's bytes in its file, as the model's initializers point at them. */
interface ExternalWeight {
  url: string;
  length: number;
  dataType: OnnxDataType;
  numel: number;
}

function externalWeights(graph: GraphProto, out: ExternalWeight[] = []): ExternalWeight[] {
  for (const t of graph.initializers) {
    if (t.external !== undefined) out.push({ url: t.external.location, length: t.external.length, dataType: t.dataType, numel: t.dims.reduce((a, d) => a * d, 1) });
  }
  for (const n of graph.nodes) {
    for (const v of Object.values(n.attributes ?? {})) if (typeof v === 'object' && v !== null && 'graph' in v) externalWeights(v.graph, out);
  }
  return out;
}

const gb = (bytes: number): string => (bytes / 1e9).toFixed(2);

/**
 * The browser's limits on `model`'s weights, from the sizes its safetensors headers gave (and each
 * file's size: cached, or one `Range` request), before any weight is downloaded: every weights file is
 * one ArrayBuffer; on wasm every weight lives in wasm32 memory, float16 ones twice (as stored, and
 * cast to float32 by weight preparation, both held while onnxruntime folds the casts).
 */
async function checkWeights(model: ModelProto, executionProviders: readonly string[], note?: string): Promise<void> {
  const weights = externalWeights(model.graph);
  const urls = [...new Set(weights.map((w) => w.url))];
  const sizes = await Promise.all(urls.map(async (url) => ({ url, size: (await statFile(url)).size })));
  for (const { url, size } of sizes) {
    if (size <= MAX_WEIGHTS_FILE_BYTES) continue;
    throw new BrowserLimitError(
      `${url} is ${gb(size)} GB; the browser hands onnxruntime-web at most 2 GB per file (one ArrayBuffer: ${MAX_WEIGHTS_FILE_BYTES} bytes): ` +
        `use a checkpoint sharded below 2 GB (<name>.safetensors.index.json and its shards, as save_pretrained(..., max_shard_size="1GB") writes)`,
    );
  }
  const device = executionProviders[0] ?? 'cpu';
  if (device !== 'wasm' && device !== 'cpu') return;
  const stored = weights.reduce((a, w) => a + w.length, 0);
  const cast = weights.reduce((a, w) => a + (w.dataType === OnnxDataType.FLOAT16 || w.dataType === OnnxDataType.BFLOAT16 ? w.numel * 4 : 0), 0);
  if (stored + cast <= WASM_WEIGHTS_BUDGET) return;
  const parts = cast > 0 ? ` (${gb(stored)} GB as stored + ${gb(cast)} GB cast to float32)` : '';
  throw new BrowserLimitError(
    `model ${model.graph.name} needs ${gb(stored + cast)} GB of weights in wasm memory${parts}${note ? `, ${note}` : ''}; ` +
      `wasm32 memory holds 4 GB at most, ${gb(WASM_WEIGHTS_BUDGET)} GB of it for weights: ` +
      `use device 'webgpu' (weights in GPU buffers), with dtype 'float16' for SD 2.1`,
  );
}
