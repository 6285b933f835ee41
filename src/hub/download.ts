/**
 * `hubDownload`: one file of a Hub repo into the shared cache, as huggingface_hub's
 * `hf_hub_download` (HEAD for commit/ETag/size, GET into `blobs/<etag>`, relative symlink in
 * `snapshots/<commit>/`, `refs/<revision>`), answering from the cache when offline or unreachable.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { RepoCache, assertRepoFilename, assertRepoId, isCommitHash } from './cache.js';
import { HubEntryNotFoundError, HubError, HubNotCachedError, describeFile } from './errors.js';
import {
  allowsCacheFallback,
  fetchFileMetadata,
  hubHeaders,
  isNetworkError,
  networkReason,
  resolveUrl,
  throwIfAborted,
  type FileMetadata,
} from './http.js';
import { withFileLock } from './lock.js';
import type { HubOptions } from './options.js';
import { DEFAULT_REVISION, resolveHubSettings, type HubSettings } from './settings.js';
import { downloadBlob } from './transfer.js';

/** Pause before resuming a cut download within the same call, as huggingface_hub's `http_get`. */
const RETRY_DELAY_MS = 1000;

/**
 * Download `filename` of `repoId` (or find it in the cache) and return the path of its snapshot
 * file, `<cache>/models--org--name/snapshots/<commit>/<filename>`.
 */
export async function hubDownload(repoId: string, filename: string, options: HubOptions = {}): Promise<string> {
  return downloadFile(repoId, filename, options, resolveHubSettings(options));
}

/** A revision that is safe as a path under `refs/`. */
export function assertRevision(revision: string, repoId: string): void {
  if (revision === '' || revision.startsWith('/') || revision.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new HubError(`${repoId}: "${revision}" is not a valid revision`, { repoId, revision });
  }
}

/** Why the Hub must not be asked, as the end of a sentence. */
export function offlineReason(settings: HubSettings): string {
  return settings.offline === 'localFilesOnly' ? 'localFilesOnly is set' : 'offline mode is on (HF_HUB_OFFLINE)';
}

/**
 * The error to throw when the Hub could not answer and the cache has nothing: a named "not cached"
 * error for a lost connection, else the Hub's own error (repo not found, auth, HTTP status).
 */
export function notCachedError(e: unknown, what: string, settings: HubSettings): unknown {
  if (isNetworkError(e)) {
    return new HubNotCachedError(`${what}: cannot reach ${settings.endpoint} (${networkReason(e)}) and it is not in the cache ${settings.cacheDir}`, {
      cause: e,
    });
  }
  return e;
}

/** `hubDownload` with settings already resolved. */
export async function downloadFile(repoId: string, filename: string, options: HubOptions, settings: HubSettings): Promise<string> {
  assertRepoId(repoId);
  assertRepoFilename(filename, repoId);
  const revision = options.revision ?? DEFAULT_REVISION;
  assertRevision(revision, repoId);
  const cache = new RepoCache(settings.cacheDir, repoId);
  const what = describeFile(repoId, filename, revision);
  const details = { repoId, filename, revision };

  // A commit hash never moves: a cached file needs no network at all.
  if (isCommitHash(revision)) {
    const hit = cache.cachedFile(revision, filename);
    if (hit) return hit;
  }
  if (settings.offline) {
    const hit = cache.cachedFile(revision, filename);
    if (hit) return hit;
    throw new HubNotCachedError(`${what} is not in the cache ${settings.cacheDir} and ${offlineReason(settings)}`, details);
  }

  const ctx = { repoId, revision, filename, endpoint: settings.endpoint };
  const fetchImpl = options.fetch ?? fetch;
  const headers = hubHeaders(settings);
  const url = resolveUrl(settings.endpoint, repoId, revision, filename);
  let meta: FileMetadata;
  try {
    meta = await fetchFileMetadata(url, headers, ctx, { fetch: fetchImpl, timeoutMs: settings.metadataTimeoutMs, signal: options.signal });
  } catch (e) {
    throwIfAborted(options.signal);
    if (e instanceof HubEntryNotFoundError && e.commit && isCommitHash(e.commit)) {
      await cache.markMissing(e.commit, filename);
      await cache.writeRef(revision, e.commit).catch(() => {});
    }
    if (!allowsCacheFallback(e)) throw e;
    const hit = cache.cachedFile(revision, filename);
    if (hit) return hit;
    throw notCachedError(e, what, settings);
  }

  const blob = cache.blobPath(meta.etag);
  const pointer = cache.pointerPath(meta.commit, filename);
  if (existsSync(pointer)) {
    await cache.writeRef(revision, meta.commit).catch(() => {}); // a read-only cache still answers
    return pointer;
  }
  await cache.writeRef(revision, meta.commit);
  if (!existsSync(blob)) {
    await withFileLock(
      cache.lockPath(meta.etag),
      async () => {
        if (existsSync(blob)) return; // another download finished it meanwhile
        await mkdir(dirname(blob), { recursive: true });
        // A CDN on another host gets a signed URL: the token stays with the Hub.
        const sameHost = new URL(meta.location).host === new URL(url).host;
        const { authorization: _token, ...anonymous } = headers;
        await downloadBlob({
          url: meta.location,
          headers: sameHost ? headers : anonymous,
          blobPath: blob,
          expectedSize: meta.size,
          ctx: { ...ctx, revision },
          fetch: fetchImpl,
          idleTimeoutMs: settings.downloadTimeoutMs,
          retries: options.retries ?? 5,
          retryDelayMs: RETRY_DELAY_MS,
          onProgress: options.onProgress,
          signal: options.signal,
        });
      },
      { signal: options.signal },
    );
  }
  await cache.linkPointer(blob, pointer);
  return pointer;
}
