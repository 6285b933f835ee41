/**
 * `snapshotDownload`: many files of a repo at one commit, as huggingface_hub's `snapshot_download`
 * (file list from `/api/models/{repo}/revision/{revision}`, filtered by fnmatch patterns).
 */
import { existsSync } from 'node:fs';
import { RepoCache, assertRepoId } from './cache.js';
import { downloadFile, assertRevision, notCachedError, offlineReason } from './download.js';
import { HubNotCachedError, describeFile } from './errors.js';
import { filterRepoFiles } from './glob.js';
import { allowsCacheFallback, fetchRepoInfo, hubHeaders, throwIfAborted } from './http.js';
import type { HubOptions } from './options.js';
import { runPool } from './pool.js';
import { DEFAULT_REVISION, resolveHubSettings, type HubSettings } from './settings.js';

export interface SnapshotOptions extends HubOptions {
  /** fnmatch patterns (`*.json`, `unet/*`); only matching repo paths are downloaded. */
  allowPatterns?: string[];
  /** fnmatch patterns of repo paths never downloaded. */
  ignorePatterns?: string[];
  /** Files downloaded at once; default 4. */
  concurrency?: number;
}

/** A repo's files at one commit, from the Hub or (offline, unreachable) from the cached snapshot. */
export interface RepoListing {
  commit: string;
  files: string[];
  /** True when the Hub could not be asked and the list is what the cached snapshot holds. */
  fromCache: boolean;
}

/**
 * Download the files of `repoId` that the patterns allow and return the snapshot folder,
 * `<cache>/models--org--name/snapshots/<commit>`. Offline, the cached snapshot folder is returned.
 */
export async function snapshotDownload(repoId: string, options: SnapshotOptions = {}): Promise<string> {
  const settings = resolveHubSettings(options);
  const revision = options.revision ?? DEFAULT_REVISION;
  const cache = new RepoCache(settings.cacheDir, repoId);
  const listing = await listRepo(repoId, revision, options, settings);
  const files = filterRepoFiles(listing.files, options.allowPatterns, options.ignorePatterns);
  if (listing.fromCache) {
    if (options.allowPatterns && files.length === 0) {
      throw new HubNotCachedError(
        `${describeFile(repoId, undefined, revision)}: no cached file matches ${options.allowPatterns.join(', ')} in ${cache.snapshotDir(listing.commit)}`,
        { repoId, revision },
      );
    }
  } else {
    await cache.writeRef(revision, listing.commit);
    await downloadAll(repoId, files, listing.commit, options, settings);
  }
  return cache.snapshotDir(listing.commit);
}

/** List the repo at a revision; when the Hub cannot answer (and may be skipped), list the cached snapshot. */
export async function listRepo(repoId: string, revision: string, options: HubOptions, settings: HubSettings): Promise<RepoListing> {
  assertRepoId(repoId);
  assertRevision(revision, repoId);
  const cache = new RepoCache(settings.cacheDir, repoId);
  const what = describeFile(repoId, undefined, revision);
  const fromCache = (): RepoListing | null => {
    const commit = cache.localCommit(revision);
    if (commit === null || !existsSync(cache.snapshotDir(commit))) return null;
    return { commit, files: cache.listSnapshot(commit), fromCache: true };
  };
  if (settings.offline) {
    const local = fromCache();
    if (local) return local;
    throw new HubNotCachedError(`${what}: no cached snapshot in ${settings.cacheDir} and ${offlineReason(settings)}`, { repoId, revision });
  }
  try {
    const info = await fetchRepoInfo(hubHeaders(settings), { repoId, revision, endpoint: settings.endpoint }, {
      fetch: options.fetch ?? fetch,
      timeoutMs: settings.metadataTimeoutMs,
      signal: options.signal,
    });
    return { commit: info.sha, files: info.files, fromCache: false };
  } catch (e) {
    throwIfAborted(options.signal);
    if (!allowsCacheFallback(e)) throw e;
    const local = fromCache();
    if (local) return local;
    throw notCachedError(e, `${what} (no cached snapshot)`, settings);
  }
}

/** Download `files` at `commit`, a few at once (`options.concurrency`, default 4). */
export async function downloadAll(
  repoId: string,
  files: readonly string[],
  commit: string,
  options: HubOptions & { concurrency?: number },
  settings: HubSettings,
): Promise<void> {
  await runPool(
    files,
    options.concurrency ?? 4,
    async (file, signal) => {
      await downloadFile(repoId, file, { ...options, revision: commit, signal }, settings);
    },
    options.signal,
  );
}
