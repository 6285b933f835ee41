/**
 * Which repo files a diffusers `from_pretrained` needs, from the repo's file list: diffusers'
 * `variant_compatible_siblings` restricted to safetensors (no `.bin`/`.ckpt`/`.onnx`/`.msgpack`).
 */
import { posix } from 'node:path';
import { HubError } from './errors.js';

/** Weight file stems diffusers and transformers write (`diffusion_pytorch_model`, `model`, …). */
const PREFIX = '(?:diffusion_pytorch_model|model|pytorch_model|weights)';
const SHARD = '\\d{5}-of-\\d{5}';
/** Files that hold weights in some format: what makes a folder a model folder for diffusers. */
const WEIGHT_EXTENSIONS = ['.bin', '.safetensors', '.onnx', '.pb', '.msgpack', '.ckpt', '.h5', '.pt', '.pth'];
/** Never downloaded: pickles, ONNX and Flax weights. */
const FORBIDDEN = /\.(?:bin|ckpt|onnx|pb|msgpack|h5|pt|pth|pkl)$/;

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/** The safetensors weight and index files of one folder for a variant (or none), by file name. */
export function weightFilesFor(names: readonly string[], variant?: string): string[] {
  if (variant === undefined) {
    const file = new RegExp(`^${PREFIX}(?:-${SHARD})?\\.safetensors$`);
    const index = new RegExp(`^${PREFIX}\\.safetensors\\.index\\.json$`);
    return names.filter((n) => file.test(n) || index.test(n));
  }
  const v = escapeRegExp(variant);
  // diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002.safetensors, *.safetensors.index.fp16.json
  const file = new RegExp(`^${PREFIX}\\.(?:${v}|${v}-${SHARD})\\.safetensors$`);
  const index = new RegExp(`^${PREFIX}\\.safetensors\\.index\\.${v}\\.json$`);
  const picked = names.filter((n) => file.test(n) || index.test(n));
  if (picked.some((n) => file.test(n))) return picked;
  // Legacy layout: model-00001-of-00002.fp16.safetensors with model.safetensors.fp16.index.json
  const legacyFile = new RegExp(`^.*-${SHARD}\\.${v}\\.safetensors$`);
  const legacyIndex = new RegExp(`^${PREFIX}\\.safetensors\\.${v}\\.index\\.json$`);
  return names.filter((n) => legacyFile.test(n) || legacyIndex.test(n));
}

/** Files of the repo directly inside `folder` ('' for the root), by name. */
function namesIn(files: readonly string[], folder: string): string[] {
  return files.filter((f) => posix.dirname(f) === (folder || '.')).map((f) => posix.basename(f));
}

function join(folder: string, name: string): string {
  return folder ? `${folder}/${name}` : name;
}

export interface Selection {
  files: string[];
  /** Non-fatal notices (a component without the variant falls back to its default weights). */
  warnings: string[];
}

/**
 * The files of one model folder: `config.json` and its safetensors weights (variant when asked;
 * diffusers' ModelMixin has no fallback there, so a missing variant is an error).
 */
export function selectModelFiles(
  files: readonly string[],
  folder: string,
  variant: string | undefined,
  repoId: string,
  origin = 'the repo',
): Selection {
  const names = namesIn(files, folder);
  const where = folder ? `${repoId}/${folder}` : repoId;
  if (!names.includes('config.json')) {
    throw new HubError(`${where}: no config.json in ${origin}${folder ? ` (is "${folder}" the right subfolder?)` : ''}`, { repoId });
  }
  const weights = weightFilesFor(names, variant);
  if (!weights.some((n) => n.endsWith('.safetensors'))) throw noWeights(where, names, variant, repoId, origin);
  return { files: [join(folder, 'config.json'), ...weights.map((n) => join(folder, n))], warnings: [] };
}

function noWeights(where: string, names: string[], variant: string | undefined, repoId: string, origin: string): HubError {
  const other = names.filter((n) => WEIGHT_EXTENSIONS.some((e) => n.endsWith(e)));
  const found = other.length ? `; it has ${other.join(', ')}` : '';
  const kind = variant === undefined ? 'safetensors weights' : `"${variant}" safetensors weights`;
  return new HubError(`${where}: no ${kind} in ${origin}${found}`, { repoId });
}

/**
 * The files of a pipeline: `model_index.json`; for each component folder with weights, its
 * `config.json` and safetensors weights (the variant where the component has it, else its default
 * weights with a warning, as diffusers); every other file of the other component folders
 * (scheduler, tokenizer, feature extractor), pickles and ONNX excepted.
 */
export function selectPipelineFiles(
  files: readonly string[],
  components: readonly string[],
  variant: string | undefined,
  repoId: string,
  origin = 'the repo',
): Selection {
  const out = ['model_index.json'];
  const warnings: string[] = [];
  const fellBack: string[] = [];
  let anyVariant = false;
  for (const component of components) {
    const names = namesIn(files, component);
    const nested = files.filter((f) => f.startsWith(`${component}/`));
    if (nested.length === 0) {
      warnings.push(`${repoId}: model_index.json lists "${component}" but ${origin} has no ${component}/ folder`);
      continue;
    }
    const isModel = names.some((n) => WEIGHT_EXTENSIONS.some((e) => n.endsWith(e)));
    if (!isModel) {
      out.push(...nested.filter((f) => !FORBIDDEN.test(f)));
      continue;
    }
    let weights = variant === undefined ? [] : weightFilesFor(names, variant);
    if (weights.some((n) => n.endsWith('.safetensors'))) anyVariant = true;
    else {
      if (variant !== undefined) fellBack.push(component);
      weights = weightFilesFor(names);
    }
    if (!weights.some((n) => n.endsWith('.safetensors'))) throw noWeights(`${repoId}/${component}`, names, undefined, repoId, origin);
    if (names.includes('config.json')) out.push(`${component}/config.json`);
    out.push(...weights.map((n) => `${component}/${n}`));
  }
  if (variant !== undefined && !anyVariant) {
    throw new HubError(`${repoId}: no component in ${origin} has "${variant}" weights; leave variant unset to load the default weights`, { repoId });
  }
  if (fellBack.length) {
    warnings.push(`${repoId}: no "${variant}" weights for ${fellBack.join(', ')}; loading their default weights (a mixture of ${variant} and non-${variant} files)`);
  }
  return { files: [...new Set(out)], warnings };
}
