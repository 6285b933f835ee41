/**
 * Finding a model folder's config.json and safetensors weights (single file, variant, or shards
 * listed in `*.safetensors.index.json`), as diffusers' and transformers' `from_pretrained` do.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parsePythonJson } from '../util/json.js';
import { ConfigError, MissingWeightsError, WeightLoadError } from '../errors.js';
import { loadSafetensors } from '../weights/safetensors.js';
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
  if (existsSync(dir) || !/^[\w.-]+\/[\w.-]+$/.test(dir)) return modelFolder(dir, o.subfolder);
  return modelFolder(await resolvePretrained(dir, { ...hubOptionsFrom(o), files: 'model', ...(o.subfolder ? { subfolder: o.subfolder } : {}) }));
}

export function modelFolder(dir: string, subfolder?: string): string {
  const folder = subfolder ? join(dir, subfolder) : dir;
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    throw new ConfigError(`${folder}: not a model folder (it does not exist or is not a directory)`);
  }
  return folder;
}

export function readConfigJson(folder: string): Record<string, unknown> {
  const path = join(folder, 'config.json');
  if (!existsSync(path)) throw new ConfigError(`${path}: missing config.json`);
  let raw: unknown;
  try {
    raw = parsePythonJson(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${path}: not a JSON object`);
  return raw as Record<string, unknown>;
}

/**
 * Open the weights of a folder: `<base>[.variant].safetensors`, or the shards named by
 * `<base>[.variant].safetensors.index.json`. Only headers are read.
 */
export async function openWeights(folder: string, baseName: string, variant?: string): Promise<WeightSource> {
  const stem = variant ? `${baseName}.${variant}` : baseName;
  const single = join(folder, `${stem}.safetensors`);
  // Sharded variants are indexed as `<base>.safetensors.index.<variant>.json` (diffusers and transformers).
  const indexNames = variant
    ? [`${baseName}.safetensors.index.${variant}.json`, `${stem}.safetensors.index.json`]
    : [`${baseName}.safetensors.index.json`];
  const index = indexNames.map((n) => join(folder, n)).find((p) => existsSync(p)) ?? join(folder, indexNames[0]!);
  if (existsSync(single)) return WeightSource.fromFiles([await loadSafetensors(single)], single);
  if (existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    } catch (e) {
      throw new WeightLoadError(`${index}: not a valid shard index (${(e as Error).message})`, { cause: e });
    }
    const shards = [...new Set(Object.values(map))].sort();
    const files = await Promise.all(shards.map((s) => loadSafetensors(join(folder, s))));
    const source = WeightSource.fromFiles(files, index);
    const listed = new Set(Object.keys(map));
    const stray = source.keys().filter((k) => !listed.has(k));
    if (stray.length) throw new WeightLoadError(`${index}: shards hold keys the index does not list: ${stray.slice(0, 5).join(', ')}`);
    return source;
  }
  throw new MissingWeightsError(
    `${folder}: no weights found (looked for ${stem}.safetensors and ${stem}.safetensors.index.json${variant ? `; is variant "${variant}" published?` : ''})`,
  );
}
