/**
 * Streaming one blob to `blobs/<etag>.incomplete` and renaming it into place. A partial file left
 * by a cut connection (in this call or an earlier one) is resumed with `Range: bytes=<n>-`.
 */
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { HubError, HubProtocolError, type HubErrorDetails } from './errors.js';
import { discardBody, httpError, isNetworkError, networkReason, throwIfAborted, type RequestContext } from './http.js';
import { delay } from './lock.js';
import type { HubProgress } from './options.js';

export interface BlobDownload {
  /** Where to GET the bytes (redirects are followed). */
  url: string;
  headers: Record<string, string>;
  blobPath: string;
  expectedSize: number;
  ctx: RequestContext & { filename: string };
  fetch: typeof fetch;
  /** ms without data after which the connection counts as cut. */
  idleTimeoutMs: number;
  /** Resumes allowed in a row without new data. */
  retries: number;
  retryDelayMs: number;
  // `| undefined`: downloadFile passes the caller's HubOptions fields straight through.
  onProgress?: ((progress: HubProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

/** HTTP answers worth retrying, as a connection cut is. */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** A GET that ended without the whole blob but can be tried again (the partial file is consistent). */
class Interrupted extends Error {}

function isTransient(e: unknown): boolean {
  if (e instanceof Interrupted || isNetworkError(e)) return true;
  return e instanceof HubError && e.status !== undefined && TRANSIENT_STATUS.has(e.status);
}

function reasonOf(e: unknown): string {
  if (e instanceof Interrupted) return e.message;
  return e instanceof HubError ? `HTTP ${e.status}` : networkReason(e);
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Download the blob, resuming any `.incomplete` file, and rename it into place once whole. */
export async function downloadBlob(d: BlobDownload): Promise<void> {
  const partial = `${d.blobPath}.incomplete`;
  const details: HubErrorDetails = { repoId: d.ctx.repoId, filename: d.ctx.filename, revision: d.ctx.revision };
  const what = `${d.ctx.repoId} file "${d.ctx.filename}" at revision "${d.ctx.revision}"`;
  let retriesLeft = d.retries;
  for (;;) {
    const have = await sizeOf(partial);
    if (have > d.expectedSize) {
      await rm(partial, { force: true }); // not this blob: start over
      continue;
    }
    if (have === d.expectedSize) break;
    let received = 0;
    try {
      await fetchInto(d, partial, have, (n) => (received += n));
      const now = await sizeOf(partial);
      if (now === d.expectedSize) break;
      if (now > d.expectedSize) {
        await rm(partial, { force: true });
        throw new HubProtocolError(`${what}: received ${now} bytes but the Hub announced ${d.expectedSize}; call again to download it afresh`, details);
      }
      throw new Interrupted('the connection closed early');
    } catch (e) {
      throwIfAborted(d.signal);
      if (!isTransient(e)) throw e;
      if (received > 0) retriesLeft = d.retries;
      if (retriesLeft <= 0) {
        const at = await sizeOf(partial);
        throw new HubError(`${what}: download cut at byte ${at} of ${d.expectedSize} (${reasonOf(e)}); call again to resume`, { ...details, cause: e });
      }
      retriesLeft--;
      await delay(d.retryDelayMs, d.signal);
    }
  }
  if (d.expectedSize === 0) await writeFile(partial, ''); // nothing to GET, as huggingface_hub
  await rename(partial, d.blobPath);
}

/** One GET, appended to the partial file from byte `have`; `onData` hears each chunk's length. */
async function fetchInto(d: BlobDownload, partial: string, have: number, onData: (n: number) => void): Promise<void> {
  const idle = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new DOMException(`no data for ${d.idleTimeoutMs} ms`, 'TimeoutError')), d.idleTimeoutMs);
  };
  const signal = d.signal ? AbortSignal.any([d.signal, idle.signal]) : idle.signal;
  const headers: Record<string, string> = { ...d.headers, 'accept-encoding': 'identity' };
  if (have > 0) headers.range = `bytes=${have}-`;
  arm();
  try {
    const res = await d.fetch(d.url, { headers, signal });
    if (!res.ok) await discardBody(res);
    if (res.status === 416 && have > 0) {
      await rm(partial, { force: true }); // the partial file does not fit this blob: start over
      throw new Interrupted(`the server refused Range bytes=${have}-`);
    }
    if (!res.ok) throw httpError(res, d.ctx);
    let offset = have;
    if (res.status === 206) {
      const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      if (!start || Number(start[1]) !== have) {
        await discardBody(res);
        await rm(partial, { force: true });
        throw new Interrupted(`asked for bytes=${have}-, got Content-Range "${res.headers.get('content-range')}"`);
      }
    } else {
      offset = 0; // a 200 to a Range request: the server sends the whole file
    }
    const file = await open(partial, offset === 0 ? 'w' : 'a');
    try {
      d.onProgress?.({ file: d.ctx.filename, loaded: offset, total: d.expectedSize });
      if (res.body) {
        for await (const chunk of res.body) {
          arm();
          await file.write(chunk);
          offset += chunk.length;
          onData(chunk.length);
          d.onProgress?.({ file: d.ctx.filename, loaded: offset, total: d.expectedSize });
        }
      }
    } finally {
      await file.close();
    }
  } finally {
    clearTimeout(timer);
  }
}
