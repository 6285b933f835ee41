/**
 * Where an adapter file (a LoRA, a textual-inversion embedding) comes from: its loaders take the Hub
 * settings under these names (`hubToken`, because `token` is the embedding's token) and a source that
 * is a file, a folder or a Hub repo id.
 */
import { MissingWeightsError } from '../errors.js';
import { isRepoId } from '../hub/cache.js';
import type { HubOptions } from '../hub/index.js';

/** The Hub settings an adapter loader accepts. */
export interface AdapterHubSettings {
  revision?: string | undefined;
  cacheDir?: string | undefined;
  localFilesOnly?: boolean | undefined;
  hubToken?: string | false | undefined;
  endpoint?: string | undefined;
  signal?: AbortSignal | undefined;
  warn?: ((message: string) => void) | undefined;
}

/** The hub module's options from an adapter loader's settings. */
export function adapterHubOptions(o: AdapterHubSettings): HubOptions {
  return {
    ...(o.revision !== undefined ? { revision: o.revision } : {}),
    ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
    ...(o.localFilesOnly ? { localFilesOnly: true } : {}),
    ...(o.hubToken !== undefined ? { token: o.hubToken } : {}),
    ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.warn ? { warn: o.warn } : {}),
  };
}

/** Refuse a source that is neither on disk nor a Hub repo id, naming it. */
export function requireRepoId(source: string): void {
  if (!isRepoId(source)) throw new MissingWeightsError(`${source}: neither a file, a folder nor a Hub repo id ("org/name")`);
}
