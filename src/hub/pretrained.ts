/**
 * `resolvePretrained`: turn a local folder or a Hub id into a local folder holding what diffusers'
 * `from_pretrained` would read, downloading only those files into the shared cache.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { ConfigError } from '../errors.js';
import { RepoCache, isRepoId } from './cache.js';
import { downloadFile } from './download.js';
import { HubError, HubNotCachedError } from './errors.js';
import type { HubOptions } from './options.js';
import { selectModelFiles, selectPipelineFiles, type Selection } from './select.js';
import { DEFAULT_REVISION, resolveHubSettings, type HubSettings } from './settings.js';
import { downloadAll, listRepo, type RepoListing } from './snapshot.js';

export interface PretrainedHubOptions extends HubOptions {
  /** Folder of the model inside the repo (`files: 'model'`), e.g. `controlnet`. */
  subfolder?: string;
  /** Weights variant, e.g. `fp16` → `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
  /**
   * `pipeline`: model_index.json and the component folders it lists; `model`: one `config.json`
   * and its weights. Default: `model` with a subfolder or when the repo has no model_index.json.
   */
  files?: 'pipeline' | 'model';
  /** Pipeline components to fetch (e.g. skip `safety_checker`); default all that model_index.json lists. */
  components?: string[];
  /** Pipeline components not to fetch (ones the caller passes in instead), whatever `components` says. */
  skipComponents?: readonly string[];
  /** Files downloaded at once; default 4. */
  concurrency?: number;
}

/**
 * A local folder holding the model or pipeline: `idOrPath` itself when it is a folder, else the
 * cached snapshot of the Hub repo after downloading what is missing. For a model with a subfolder
 * the result is that subfolder, whether local or from the Hub.
 */
export async function resolvePretrained(idOrPath: string, options: PretrainedHubOptions = {}): Promise<string> {
  const sub = options.files !== 'pipeline' && options.subfolder ? options.subfolder : '';
  if (isDirectory(idOrPath)) return sub ? join(idOrPath, sub) : idOrPath;
  if (!isRepoId(idOrPath)) {
    throw new HubError(`${idOrPath}: neither a local folder nor a Hub repo id ("org/name")`, { repoId: idOrPath });
  }
  const repoId = idOrPath;
  const settings = resolveHubSettings(options);
  const revision = options.revision ?? DEFAULT_REVISION;
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const listing = await listRepo(repoId, revision, options, settings);
  const cache = new RepoCache(settings.cacheDir, repoId);
  const snapshot = cache.snapshotDir(listing.commit);
  const origin = listing.fromCache ? `the cached snapshot ${snapshot}` : 'the repo';
  const atCommit = { ...options, revision: listing.commit };
  const mode = options.files ?? (options.subfolder || !listing.files.includes('model_index.json') ? 'model' : 'pipeline');

  let selection: Selection;
  if (mode === 'pipeline') {
    const indexPath = await downloadFile(repoId, 'model_index.json', atCommit, settings);
    const listed = pipelineComponents(indexPath);
    const components = (options.components ? listed.filter((c) => options.components!.includes(c)) : listed).filter(
      (c) => !options.skipComponents?.includes(c),
    );
    selection = selectPipelineFiles(listing.files, components, options.variant, repoId, origin);
  } else {
    selection = selectModelFiles(listing.files, options.subfolder ?? '', options.variant, repoId, origin);
  }
  for (const w of selection.warnings) warn(w);

  if (!listing.fromCache) await cache.writeRef(revision, listing.commit);
  await fetchOrCheck(repoId, selection.files, listing, atCommit, settings, snapshot);
  // Sharded weights: every shard an index names, even one the file-name patterns missed.
  const shards = selection.files
    .filter((f) => /\.safetensors\.(?:[^./]+\.)?index(?:\.[^./]+)?\.json$/.test(f))
    .flatMap((index) => shardsOf(join(snapshot, ...index.split('/')), posix.dirname(index)))
    .filter((f) => !selection.files.includes(f));
  await fetchOrCheck(repoId, [...new Set(shards)], listing, atCommit, settings, snapshot);
  return sub ? join(snapshot, ...sub.split('/')) : snapshot;
}

/** Download the files, or (listing from the cache) check that they are all there. */
async function fetchOrCheck(
  repoId: string,
  files: string[],
  listing: RepoListing,
  options: PretrainedHubOptions,
  settings: HubSettings,
  snapshot: string,
): Promise<void> {
  if (!listing.fromCache) return downloadAll(repoId, files, listing.commit, options, settings);
  const missing = files.filter((f) => !existsSync(join(snapshot, ...f.split('/'))));
  if (missing.length) {
    throw new HubNotCachedError(`${repoId}: ${missing.join(', ')} not in the cached snapshot ${snapshot}, and the Hub cannot be asked`, { repoId });
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** Component folders model_index.json lists: keys whose value is a non-null `[library, class]` pair. */
export function pipelineComponents(indexPath: string): string[] {
  const index = readJson(indexPath);
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw new ConfigError(`${indexPath}: not a JSON object`);
  return Object.entries(index)
    .filter(([k, v]) => !k.startsWith('_') && Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string')
    .map(([k]) => k);
}

/** Repo paths of the shards a `*.safetensors.index*.json` names in its `weight_map`. */
function shardsOf(indexPath: string, folder: string): string[] {
  const map = (readJson(indexPath) as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) throw new ConfigError(`${indexPath}: no weight_map`);
  return [...new Set(Object.values(map))]
    .filter((v): v is string => typeof v === 'string' && v.endsWith('.safetensors') && !v.includes('..'))
    .map((name) => (folder === '.' ? name : `${folder}/${name}`));
}
