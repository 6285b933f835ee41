/**
 * Finding a model folder's config.json and weights (safetensors, or torch `.bin` files in folders
 * without them; single file, variant, or shards listed in an index), as diffusers' and
 * transformers' `from_pretrained` do.
 */
import { fileExists, folderExists, joinPath, readTextFile } from '../platform/files.js';
import { loadJsonObject, readJsonObject } from '../util/json.js';
import { ConfigError, MissingWeightsError, WeightLoadError } from '../errors.js';
import { loadSafetensors, type SafetensorsFile } from '../weights/safetensors.js';
import { loadTorchCheckpoint, type TorchCheckpoint } from '../weights/torch-archive.js';
import { WeightSource } from '../weights/source.js';
import { resolvePretrained, type PretrainedHubOptions } from '../hub/index.js';

export interface PretrainedOptions {
  subfolder?: string;
  /** Weights variant, e.g. 'fp16' → `diffusion_pytorch_model.fp16.safetensors`. */
  variant?: string;
  /** Receives non-fatal notices (unknown config keys); default `console.warn`. */
  warn?: (message: string) => void;
  /** For Hub ids ("org/name"): branch, tag or commit; default `main`. */
  revision?: string;
  /** Hugging Face cache root (default as Python: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Use only the local cache (also on with HF_HUB_OFFLINE=1). */
  localFilesOnly?: boolean;
  token?: string | false;
  endpoint?: string;
  onDownloadProgress?: (p: { file: string; loaded: number; total: number | null }) => void;
}

/** The Hub-related part of loading options, in the hub layer's terms. */
export function hubOptionsFrom(o: PretrainedOptions & { signal?: AbortSignal }): PretrainedHubOptions {
  return {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.revision ? { revision: o.revision } : {}),
    ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
    ...(o.localFilesOnly ? { localFilesOnly: true } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.onDownloadProgress ? { onProgress: o.onDownloadProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.warn ? { warn: o.warn } : {}),
  };
}

/** A local model folder (plus subfolder), or a Hub repo id resolved into the Python-compatible cache. */
export async function resolveModelFolder(dir: string, o: PretrainedOptions): Promise<string> {
  if ((await folderExists(dir)) || (await fileExists(dir)) || !/^[\w.-]+\/[\w.-]+$/.test(dir)) return modelFolder(dir, o.subfolder);
  return modelFolder(await resolvePretrained(dir, { ...hubOptionsFrom(o), files: 'model', ...(o.subfolder ? { subfolder: o.subfolder } : {}) }));
}

export async function modelFolder(dir: string, subfolder?: string): Promise<string> {
  const folder = subfolder ? joinPath(dir, subfolder) : dir;
  if (!(await folderExists(folder))) {
    throw new ConfigError(`${folder}: not a model folder (it does not exist or is not a directory)`);
  }
  return folder;
}

/** A folder's config.json, read now (local folders only; `loadConfigJson` reads through the platform's file seam). */
export function readConfigJson(folder: string): Record<string, unknown> {
  return readJsonObject(joinPath(folder, 'config.json'));
}

/** A folder's config.json: a local file in Node, a URL in the browser. */
export async function loadConfigJson(folder: string): Promise<Record<string, unknown>> {
  const path = joinPath(folder, 'config.json');
  if (!(await fileExists(path))) throw new ConfigError(`${path}: missing config.json`);
  return loadJsonObject(path);
}

/**
 * Open the weights of a folder: `<base>[.variant].safetensors`, or the shards named by
 * `<base>[.variant].safetensors.index.json`; in folders without safetensors (older diffusers and
 * transformers saves), the torch files `<base>[.variant].bin` or their `.bin.index.json` shards, as
 * `from_pretrained` falls back to them (`model` → transformers' `pytorch_model.bin`). Torch files are
 * read by a pickle reader that only accepts tensor data (a `SecurityError` otherwise). Only headers
 * and pickles are read.
 */
export async function openWeights(folder: string, baseName: string, variant?: string): Promise<WeightSource> {
  const safetensors = await openFormat(folder, baseName, variant, 'safetensors', loadSafetensors);
  if (safetensors) return safetensors;
  const binBase = baseName === 'model' ? 'pytorch_model' : baseName;
  const bin = await openFormat(folder, binBase, variant, 'bin', loadTorchCheckpoint);
  if (bin) return bin;
  const stem = variant ? `${baseName}.${variant}` : baseName;
  const binStem = variant ? `${binBase}.${variant}` : binBase;
  throw new MissingWeightsError(
    `${folder}: no weights found (looked for ${stem}.safetensors, ${stem}.safetensors.index.json, ${binStem}.bin and ${binStem}.bin.index.json${variant ? `; is variant "${variant}" published?` : ''})`,
  );
}

/** One weights format of a folder: its single file, or the shards its index names; null when neither exists. */
async function openFormat(
  folder: string,
  baseName: string,
  variant: string | undefined,
  ext: 'safetensors' | 'bin',
  load: (path: string) => Promise<SafetensorsFile | TorchCheckpoint>,
): Promise<WeightSource | null> {
  const stem = variant ? `${baseName}.${variant}` : baseName;
  const single = joinPath(folder, `${stem}.${ext}`);
  // Sharded variants are indexed as `<base>.<ext>.index.<variant>.json` (diffusers and transformers).
  const indexNames = variant ? [`${baseName}.${ext}.index.${variant}.json`, `${stem}.${ext}.index.json`] : [`${baseName}.${ext}.index.json`];
  if (await fileExists(single)) return WeightSource.fromFiles([await load(single)], single);
  let index: string | undefined;
  for (const name of indexNames) if (index === undefined && (await fileExists(joinPath(folder, name)))) index = joinPath(folder, name);
  if (index === undefined) return null;
  let map: Record<string, string>;
  try {
    map = (JSON.parse(await readTextFile(index)) as { weight_map: Record<string, string> }).weight_map;
  } catch (e) {
    throw new WeightLoadError(`${index}: not a valid shard index (${(e as Error).message})`, { cause: e });
  }
  const shards = [...new Set(Object.values(map))].sort();
  const files = await Promise.all(shards.map((s) => load(joinPath(folder, s))));
  const source = WeightSource.fromFiles(files, index);
  const listed = new Set(Object.keys(map));
  const stray = source.keys().filter((k) => !listed.has(k));
  if (stray.length) throw new WeightLoadError(`${index}: shards hold keys the index does not list: ${stray.slice(0, 5).join(', ')}`);
  return source;
}
