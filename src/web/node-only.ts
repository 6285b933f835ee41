/**
 * What the browser build puts in place of a Node-only import (`node:*`, sharp, onnxruntime-node)
 * in code the bundle reaches but the browser cannot run (the Hub disk cache, single files, torch
 * pickles, LoRA / textual-inversion files, the graph cache, saving images): each imported binding is
 * a stand-in that throws `BrowserUnsupportedError` naming the feature's module when it is used.
 * `scripts/build-web.mjs` generates the stand-in modules, one per importer.
 */
import { ControlNetXSError } from '../errors.js';

/** A Node-only feature was used in the browser build. */
export class BrowserUnsupportedError extends ControlNetXSError {}

/**
 * A binding `name` of module `specifier` as imported by `importer`: throws when called, constructed
 * or read from. With `deferred` (Node's path and url helpers, which some modules call at import to
 * compute a constant folder), a call returns a value that throws only when that value is used.
 */
export function nodeOnly(specifier: string, name: string, importer: string, deferred = false): unknown {
  const fail = (): never => {
    throw new BrowserUnsupportedError(
      `${importer} needs ${specifier} (${name}), which the browser build does not have: this feature works in Node only (load models by URL, images from URLs, Blobs, ImageData or canvases)`,
    );
  };
  return new Proxy(fail, {
    apply: deferred ? () => nodeOnly(specifier, `the result of ${name}()`, importer) : fail,
    construct: fail,
    get: (_t, key) => {
      // `then` stays undefined so an awaited module namespace is not mistaken for a promise.
      if (key === 'then') return undefined;
      if (key === Symbol.toPrimitive) return fail;
      if (typeof key === 'symbol') return undefined;
      return nodeOnly(specifier, `${name}.${key}`, importer, deferred);
    },
  });
}
