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
 */
import type { GraphProto, ModelProto, TensorProto } from '../graph/onnx-proto.js';
import { browserGlobals } from '../platform/browser-globals.js';
import { readWholeFile } from '../platform/files.browser.js';
import type { Onnxruntime, WeightFiles } from './onnxruntime.js';

export type { Onnxruntime, WeightFiles } from './onnxruntime.js';

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

/** No native library folder in a browser. */
export function onnxruntimeBinaryDir(): string | null {
  return null;
}

/** onnxruntime-web's backends ('cpu' is its name for wasm too); whether WebGPU has an adapter shows when a session starts. */
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
