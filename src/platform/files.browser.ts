/**
 * The browser build's `files.ts`: a path is a URL (absolute, or relative to the page), read over
 * HTTP from any static host or the Hugging Face Hub's `resolve/<revision>/…` addresses (which send
 * CORS headers). A file read whole — a config, a tokenizer file, onnxruntime's external data — is
 * downloaded once into Cache Storage (`FILE_CACHE`) and every later read is served from there, so a
 * second visit loads offline. A 404 is cached too (diffusers folders are probed for optional files:
 * index.json shards, variants), so probing works offline as well.
 *
 * What loading a model asks before its session opens — whether a file exists, its size, a
 * safetensors header — is answered from the cache when the file is there and otherwise by a `Range`
 * request for those bytes only: a model is checked against the browser's limits (runtime/
 * onnxruntime.browser.ts) from its headers, before its weights are downloaded. A server that ignores
 * `Range` (or hides the file's size from the page) gets the whole file downloaded and cached instead.
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
  const url = absoluteUrl(path);
  const hit = await cacheHit(url);
  if (hit !== undefined) return hit.status !== 404;
  return (await fetchPart(url, 0, 1)) !== null;
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
  const hit = await cacheHit(url);
  if (hit === undefined) {
    const part = await fetchPart(url, 0, 1);
    if (part === null) throw notFound(url);
    if (part.size !== null) return { realPath: url, size: part.size };
  }
  return { realPath: url, size: (await fileBlob(url)).size };
}

export async function readFileRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  const url = absoluteUrl(path);
  if (length <= 0) return new Uint8Array(0);
  if ((await cacheHit(url)) === undefined) {
    const part = await fetchPart(url, offset, length);
    if (part === null) throw notFound(url);
    return part.bytes;
  }
  const blob = await fileBlob(url);
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
  if (res === null) throw notFound(url);
  return res.blob();
}

function notFound(url: string): DownloadError {
  return new DownloadError(`${url}: not found (HTTP 404)`);
}

/** The cached response for `url` (a 404 marker included); undefined when absent or without Cache Storage. */
async function cacheHit(url: string): Promise<Response | undefined> {
  const storage = browserGlobals().caches;
  if (storage === undefined) return undefined;
  return (await storage.open(FILE_CACHE)).match(url);
}

/** The file's response from the cache, downloading it first when absent; null for a 404. */
async function cachedResponse(url: string): Promise<Response | null> {
  const storage = browserGlobals().caches;
  if (storage === undefined) return fetchOk(url);
  const cache = await storage.open(FILE_CACHE);
  const hit = await cache.match(url);
  if (hit !== undefined) return hit.status === 404 ? null : hit;
  const res = await fetchOk(url);
  if (res === null) return rememberMissing(url);
  return storeAndMatch(cache, url, res);
}

/** A 404 kept in the cache (so optional files are probed offline too); null. */
async function rememberMissing(url: string): Promise<null> {
  const storage = browserGlobals().caches;
  if (storage !== undefined) await (await storage.open(FILE_CACHE)).put(url, new Response(null, { status: 404 }));
  return null;
}

/** `res` (a whole file) stored in the cache, and the stored response read back. */
async function storeAndMatch(cache: BrowserCache, url: string, res: Response): Promise<Response> {
  await storeWhole(cache, url, res);
  const stored = await cache.match(url);
  if (stored === undefined) throw new DownloadError(`${url}: downloaded but the browser did not keep it in Cache Storage (quota?)`);
  return stored;
}

/**
 * Bytes [offset, offset + length) of a file not in the cache, by a `Range` request, with the file's
 * size when the answer shows it (`Content-Range`, which a cross-origin server must expose); null for a
 * 404 (cached as such). A server answering 200 (no ranges) sends the whole file, and one refusing the
 * request (a cross-origin `Range` can need a CORS preflight that plain GETs do not) gets a plain GET:
 * the whole file is cached, and the part cut from it.
 */
async function fetchPart(url: string, offset: number, length: number): Promise<{ bytes: Uint8Array; size: number | null } | null> {
  let res: Response | null;
  try {
    res = await fetchOk(url, `bytes=${offset}-${offset + length - 1}`);
  } catch (e) {
    if (!(e instanceof DownloadError)) throw e;
    res = await cachedResponse(url);
    return res === null ? null : cutFrom(await res.blob(), offset, length);
  }
  if (res === null) return rememberMissing(url);
  // "bytes 0-7/1234", or "bytes */1234" with 416 (a range past the end)
  const range = /^bytes (?:(\d+)-\d+|\*)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  const size = range ? Number(range[2]) : null;
  if (res.status === 416) {
    await res.body?.cancel();
    return { bytes: new Uint8Array(0), size };
  }
  if (res.status === 206) {
    if (range?.[1] !== undefined && Number(range[1]) !== offset) {
      await res.body?.cancel();
      throw new DownloadError(`${url}: asked for bytes from ${offset}, the server sent ${res.headers.get('content-range')}`);
    }
    return { bytes: new Uint8Array(await res.arrayBuffer()).subarray(0, length), size };
  }
  const storage = browserGlobals().caches;
  const whole = storage === undefined ? res : await storeAndMatch(await storage.open(FILE_CACHE), url, res);
  return cutFrom(await whole.blob(), offset, length);
}

async function cutFrom(blob: Blob, offset: number, length: number): Promise<{ bytes: Uint8Array; size: number }> {
  return { bytes: new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()), size: blob.size };
}

/** A successful response (to a `Range` request: 206, 200 or 416), or null for 404; anything else is a DownloadError. */
async function fetchOk(url: string, range?: string): Promise<Response | null> {
  let res: Response;
  try {
    res = await fetch(url, range === undefined ? {} : { headers: { Range: range } });
  } catch (e) {
    throw new DownloadError(`${url}: cannot fetch (${(e as Error).message}); offline, or the server sends no CORS headers?`, { cause: e });
  }
  if (res.status === 404) return null;
  // 416: a range past the end of the file, which the caller asked for
  if (!res.ok && !(range !== undefined && res.status === 416)) throw new DownloadError(`${url}: HTTP ${res.status} ${res.statusText}`);
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
