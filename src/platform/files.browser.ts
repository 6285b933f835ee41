/**
 * The browser build's `files.ts`: a path is a URL (absolute, or relative to the page), read over
 * HTTP from any static host or the Hugging Face Hub's `resolve/<revision>/…` addresses (which send
 * CORS headers). Every file is downloaded once, whole, into Cache Storage (`FILE_CACHE`), and every
 * later read — a safetensors header, a config, onnxruntime's external data — is served from there,
 * so a second visit loads offline. A 404 is cached too (diffusers folders are probed for optional
 * files: index.json shards, variants), so probing works offline as well.
 *
 * A download is stored only when it completes: the body is counted on its way into the cache and a
 * short body (connection dropped, server stopped) errors the stream, which makes `cache.put` reject
 * and store nothing; the caller gets a `DownloadError` naming the URL and how far it got. Without
 * Cache Storage (an insecure context), files are fetched on every read, byte ranges with `Range`.
 */
import { ControlNetXSError } from '../errors.js';
import { browserGlobals, type BrowserCache } from './browser-globals.js';

/** The Cache Storage bucket holding downloaded model files (bump the suffix if the stored form changes). */
export const FILE_CACHE = 'controlnet-xs-files-v1';

/** A file could not be downloaded (network, HTTP status, or a body shorter than announced); nothing was cached. */
export class DownloadError extends ControlNetXSError {}

/** `base` with `parts` appended as URL path segments. */
export function joinPath(base: string, ...parts: string[]): string {
  const tail = parts.map((p) => p.replace(/^\/+|\/+$/g, '')).filter((p) => p.length > 0);
  return [base.replace(/\/+$/, ''), ...tail].join('/');
}

/** `path` as an absolute URL (relative ones resolve against the page). */
export function absoluteUrl(path: string): string {
  try {
    return new URL(path, browserGlobals().location?.href).href;
  } catch (e) {
    throw new DownloadError(`${path}: not a URL (${(e as Error).message})`, { cause: e });
  }
}

export async function fileExists(path: string): Promise<boolean> {
  return (await cachedResponse(absoluteUrl(path))) !== null;
}

/** A URL names no listable folder: its files answer for it (a missing config.json is then the error). */
export async function folderExists(_path: string): Promise<boolean> {
  return true;
}

export async function readTextFile(path: string): Promise<string> {
  return (await fileBlob(path)).text();
}

export async function statFile(path: string): Promise<{ realPath: string; size: number }> {
  const url = absoluteUrl(path);
  return { realPath: url, size: (await fileBlob(url)).size };
}

export async function readFileRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  const blob = await fileBlob(path);
  return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
}

/**
 * The whole file as one byte array: what onnxruntime-web's `externalData` takes. The array is the
 * caller's only copy; drop it once the session is open.
 */
export async function readWholeFile(path: string): Promise<Uint8Array> {
  return new Uint8Array(await (await fileBlob(path)).arrayBuffer());
}

/** The file's body (disk-backed when it comes from Cache Storage); a missing file is a DownloadError. */
async function fileBlob(path: string): Promise<Blob> {
  const url = absoluteUrl(path);
  const res = await cachedResponse(url);
  if (res === null) throw new DownloadError(`${url}: not found (HTTP 404)`);
  return res.blob();
}

/** The file's response from the cache, downloading it first when absent; null for a 404. */
async function cachedResponse(url: string): Promise<Response | null> {
  const storage = browserGlobals().caches;
  if (storage === undefined) return fetchOk(url);
  const cache = await storage.open(FILE_CACHE);
  const hit = await cache.match(url);
  if (hit !== undefined) return hit.status === 404 ? null : hit;
  const res = await fetchOk(url);
  if (res === null) {
    await cache.put(url, new Response(null, { status: 404 }));
    return null;
  }
  await storeWhole(cache, url, res);
  const stored = await cache.match(url);
  if (stored === undefined) throw new DownloadError(`${url}: downloaded but the browser did not keep it in Cache Storage (quota?)`);
  return stored;
}

/** A successful response, or null for 404; anything else is a DownloadError. */
async function fetchOk(url: string): Promise<Response | null> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new DownloadError(`${url}: cannot fetch (${(e as Error).message}); offline, or the server sends no CORS headers?`, { cause: e });
  }
  if (res.status === 404) return null;
  if (!res.ok) throw new DownloadError(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res;
}

/** Stream `res` into the cache, counting bytes; a body shorter than its Content-Length stores nothing. */
async function storeWhole(cache: BrowserCache, url: string, res: Response): Promise<void> {
  const announced = Number(res.headers.get('content-length') ?? NaN);
  let received = 0;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      received += chunk.byteLength;
      controller.enqueue(chunk);
    },
    flush(controller) {
      // More than announced is a compressed transfer (Content-Length counts the encoded bytes); less is a cut.
      if (Number.isFinite(announced) && received < announced) controller.error(new Error(`body ended after ${received} of ${announced} bytes`));
    },
  });
  const body = res.body === null ? null : res.body.pipeThrough(counter);
  try {
    await cache.put(url, new Response(body, { status: 200, headers: res.headers }));
  } catch (e) {
    await cache.delete(url).catch(() => false);
    const total = Number.isFinite(announced) ? ` of ${announced}` : '';
    throw new DownloadError(`${url}: download failed after ${received}${total} bytes (${(e as Error).message}); nothing was cached`, { cause: e });
  }
}
