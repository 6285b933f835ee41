/**
 * Where a single file's configs come from. A single file holds weights only; diffusers takes every
 * config (UNet, VAE, text encoders, tokenizers, scheduler) from a diffusers folder — the `config`
 * override, or by default the Hub repo of the model type it detects. This port ships those default
 * folders inside the package (`configs/`: SD 1.5, SD 2.1-base, SD 2.1 768-v, SDXL base 1.0, each in
 * diffusers' folder layout; the one CLIP BPE vocabulary they share in `configs/clip-bpe/`), so a
 * single file loads offline, and answers the Hub ids of those repos from them too.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../errors.js';
import { snapshotDownload, type HubOptions } from '../../hub/index.js';
import { describeInspection } from './detect.js';
import { UnknownArchitectureError } from './errors.js';
import type { SingleFile } from './open.js';

/** The default config folders shipped with the package. */
export type BundledConfig = 'sd15' | 'sd21-base' | 'sd21-v' | 'sdxl-base';

/** The package's config folders (next to this module in src/ and in dist/: the build copies them). */
export const BUNDLED_CONFIG_ROOT = fileURLToPath(new URL('./configs/', import.meta.url));

/** The shared CLIP BPE files (vocab.json, merges.txt) of every bundled tokenizer. */
export const BUNDLED_BPE_DIR = join(BUNDLED_CONFIG_ROOT, 'clip-bpe');

/** What each bundled folder is: the Hub repo its configs are copied from. */
export const BUNDLED_CONFIGS: Readonly<Record<BundledConfig, { readonly repo: string; readonly title: string }>> = {
  sd15: { repo: 'stable-diffusion-v1-5/stable-diffusion-v1-5', title: 'Stable Diffusion 1.5' },
  'sd21-base': { repo: 'stabilityai/stable-diffusion-2-1-base', title: 'Stable Diffusion 2.1-base (512, epsilon)' },
  'sd21-v': { repo: 'stabilityai/stable-diffusion-2-1', title: 'Stable Diffusion 2.1 (768, v-prediction)' },
  'sdxl-base': { repo: 'stabilityai/stable-diffusion-xl-base-1.0', title: 'Stable Diffusion XL base 1.0' },
};

/** Hub ids answered from the bundled folders (the repos above, and the SD 1.5 repo's former home). */
export const BUNDLED_HUB_IDS: Readonly<Record<string, BundledConfig>> = {
  'stable-diffusion-v1-5/stable-diffusion-v1-5': 'sd15',
  'runwayml/stable-diffusion-v1-5': 'sd15',
  'stabilityai/stable-diffusion-2-1-base': 'sd21-base',
  'stabilityai/stable-diffusion-2-1': 'sd21-v',
  'stabilityai/stable-diffusion-xl-base-1.0': 'sdxl-base',
};

/**
 * The global step LDM's SD 2.0-base (512-base-ema.ckpt) was saved at: diffusers' one heuristic for
 * "epsilon, not v-prediction" in an SD 2.x file, and only a torch checkpoint carries it.
 */
const SD2_EPSILON_GLOBAL_STEP = 875000;

/**
 * The bundled folder for a detected file: diffusers' default repo for its model type (v1 → SD 1.5,
 * xl_base → SDXL base, v2 → SD 2.1 768 v-prediction), except that an SD 2.x torch checkpoint saved at
 * global step 875000 gets 2.1-base (epsilon), as diffusers' scheduler heuristic says. Null for types
 * with no bundled configs.
 */
export function bundledConfigFor(file: Pick<SingleFile, 'inspection' | 'globalStep'>): BundledConfig | null {
  switch (file.inspection.modelType) {
    case 'v1':
      return 'sd15';
    case 'xl_base':
      return 'sdxl-base';
    case 'v2':
      return file.globalStep === SD2_EPSILON_GLOBAL_STEP ? 'sd21-base' : 'sd21-v';
    default:
      return null;
  }
}

/** A config folder in diffusers' layout, and how to name it in messages. */
export interface ConfigFolder {
  readonly dir: string;
  readonly origin: string;
  /** Set when the folder is one of the package's own. */
  readonly bundled: BundledConfig | null;
}

export function bundledFolder(name: BundledConfig): ConfigFolder {
  return { dir: join(BUNDLED_CONFIG_ROOT, name), origin: `the bundled ${BUNDLED_CONFIGS[name].title} configs`, bundled: name };
}

export interface ConfigOverrideOptions extends HubOptions {
  /**
   * The configs to use instead of the defaults: a diffusers folder (a pipeline folder, or for a
   * single model a folder holding its `config.json`) or a Hub repo id, whose configs only are
   * downloaded. The Hub ids of the bundled defaults are answered offline from the package.
   */
  config?: string;
}

/** Only configs: the JSON and text files of a repo (tokenizer vocabularies included), never weights. */
const CONFIG_PATTERNS = ['*.json', '*.txt'];

/**
 * The config folder a single file loads with: `config` if given (bundled Hub id, local folder or
 * Hub repo), else the bundled default for its model type — or an UnknownArchitectureError naming
 * what was recognised when there is none.
 */
export async function resolveConfigFolder(file: SingleFile, options: ConfigOverrideOptions): Promise<ConfigFolder> {
  const { config } = options;
  if (config === undefined) {
    const bundled = bundledConfigFor(file);
    if (bundled === null) {
      throw new UnknownArchitectureError(
        `${file.path}: no default configs for this file (${describeInspection(file.inspection)}); controlnet-xs ships them for ` +
          'diffusers\' model types v1 (SD 1.x), v2 (SD 2.x) and xl_base (SDXL base). Pass `config` (a diffusers folder or Hub id) whose configs describe it.',
      );
    }
    return bundledFolder(bundled);
  }
  const named = BUNDLED_HUB_IDS[config];
  if (named !== undefined) return bundledFolder(named);
  if (existsSync(config)) {
    if (!statSync(config).isDirectory()) throw new ConfigError(`config ${config}: not a folder (a diffusers folder or Hub repo id is expected)`);
    return { dir: config, origin: config, bundled: null };
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(config)) throw new ConfigError(`config ${config}: neither a folder nor a Hub repo id ("org/name")`);
  const dir = await snapshotDownload(config, { ...options, allowPatterns: CONFIG_PATTERNS });
  return { dir, origin: `${config} (Hub)`, bundled: null };
}

/**
 * The folder of one component's config.json in a config folder: `subfolder` when given, else the
 * component's own folder (`unet/`, …), else the folder itself when it holds a config.json (a
 * single model's folder: diffusers needs `subfolder` there, this port does not).
 */
export function componentConfigDir(folder: ConfigFolder, component: string, subfolder?: string): string {
  if (subfolder !== undefined) return join(folder.dir, subfolder);
  const own = join(folder.dir, component);
  if (existsSync(join(own, 'config.json'))) return own;
  if (existsSync(join(folder.dir, 'config.json'))) return folder.dir;
  throw new ConfigError(`${folder.origin}: no ${component}/config.json (nor a config.json of its own) to configure the single file's ${component}`);
}
