/**
 * One model out of a single file: its config (from the config folder), its keys converted to
 * diffusers' (convert.ts, with what the config says about the layout) and, around `bindStrict`, the
 * error that says the config does not fit the file.
 */
import { join } from 'node:path';
import { ConfigError, WeightLoadError } from '../../errors.js';
import { readJsonObject } from '../../util/json.js';
import type { Warn } from '../../util/config.js';
import type { WeightSource } from '../../weights/source.js';
import { parseAutoencoderKLConfig, type AutoencoderKLConfig } from '../autoencoder-kl-config.js';
import { parseCLIPTextConfig, type CLIPTextConfig } from '../clip-text-config.js';
import { parseUNet2DConditionConfig, type UNet2DConditionConfig } from '../unet-2d-condition-config.js';
import { componentConfigDir, resolveConfigFolder, type ConfigFolder, type ConfigOverrideOptions } from './configs.js';
import { convertComponent } from './convert.js';
import { describeInspection, type ComponentName, type ComponentPlace } from './detect.js';
import { SingleFileComponentError, SingleFileConfigMismatchError, SingleFileError, UnknownArchitectureError } from './errors.js';
import type { KeyContext } from './keys.js';
import { openSingleFile, type SingleFile } from './open.js';

/** How one model class reads its config and what the key tables need from it. */
export interface ComponentSpec<C> {
  readonly parse: (raw: Record<string, unknown>, origin: string, warn: Warn) => C;
  readonly context: (config: C, place: ComponentPlace, origin: string) => KeyContext;
}

export const UNET_SPEC: ComponentSpec<UNet2DConditionConfig> = {
  parse: parseUNet2DConditionConfig,
  context: (c, _place, origin) => {
    const per = Array.isArray(c.layersPerBlock) ? c.layersPerBlock : [c.layersPerBlock];
    const L = per[0];
    // LDM numbers input/output blocks with one layers-per-block for the whole UNet (num_res_blocks).
    if (L === undefined || per.some((x) => x !== L)) {
      throw new ConfigError(`${origin}: layers_per_block ${JSON.stringify(c.layersPerBlock)} differs per block, which an LDM single file cannot hold`);
    }
    return { layersPerBlock: L };
  },
};

export const VAE_SPEC: ComponentSpec<AutoencoderKLConfig> = {
  parse: parseAutoencoderKLConfig,
  context: (c) => ({ blocks: c.blockOutChannels.length }),
};

export function clipSpec(withProjection: boolean): ComponentSpec<CLIPTextConfig> {
  return {
    parse: parseCLIPTextConfig,
    context: (c, place) => ({ numHiddenLayers: c.numHiddenLayers, withProjection, extraBlock: place.extraBlock === true }),
  };
}

export interface SingleFileComponentOptions extends ConfigOverrideOptions {
  /** The component's folder inside `config` (diffusers needs it for a component; here the default is the component's name). */
  subfolder?: string;
  /** Receives non-fatal notices (unknown config keys); default `console.warn`. */
  warn?: Warn;
}

export interface LoadedComponent<C> {
  readonly config: C;
  readonly source: WeightSource;
  readonly file: SingleFile;
  readonly folder: ConfigFolder;
}

/** The component's place in the file, or a SingleFileComponentError naming what the file holds. */
export function componentPlace(file: SingleFile, name: ComponentName, asked = name): ComponentPlace {
  assertRecognised(file);
  const place = file.inspection.components.find((c) => c.name === name);
  if (place === undefined) {
    throw new SingleFileComponentError(`${file.path}: holds no ${asked} weights (${describeInspection(file.inspection)})`);
  }
  return place;
}

/** An UnknownArchitectureError when no Stable Diffusion component is in the file at all. */
export function assertRecognised(file: SingleFile): void {
  if (file.inspection.components.length > 0) return;
  throw new UnknownArchitectureError(
    `${file.path}: not a Stable Diffusion single file: none of its ${file.source.keys().length} keys sits where an SD 1.x/2.x/XL UNet, VAE or text encoder does (${describeInspection(file.inspection)})`,
  );
}

/** Read and parse one component's config.json from a config folder. */
export function readComponentConfig<C>(folder: ConfigFolder, component: string, spec: ComponentSpec<C>, warn: Warn, subfolder?: string): C {
  const dir = componentConfigDir(folder, component, subfolder);
  const path = join(dir, 'config.json');
  return spec.parse(readJsonObject(path), folder.bundled ? `${folder.origin} (${component})` : path, warn);
}

/** Config + converted weights of `name` from an opened file and a config folder (nothing bound yet). */
export function componentFrom<C>(
  file: SingleFile,
  folder: ConfigFolder,
  name: ComponentName,
  spec: ComponentSpec<C>,
  warn: Warn,
  subfolder?: string,
): LoadedComponent<C> {
  const place = componentPlace(file, name);
  const config = readComponentConfig(folder, name, spec, warn, subfolder);
  const ctx = spec.context(config, place, folder.origin);
  const { source } = convertComponent(file.source, place, file.inspection.components, ctx);
  return { config, source, file, folder };
}

/** Open `path`, find the config folder, and return the component's config and converted weights. */
export async function loadComponent<C>(
  path: string,
  which: ComponentName | ((file: SingleFile) => ComponentName),
  spec: ComponentSpec<C>,
  options: SingleFileComponentOptions,
): Promise<LoadedComponent<C> & { name: ComponentName }> {
  const file = await openSingleFile(path);
  const name = typeof which === 'string' ? which : which(file);
  componentPlace(file, name); // before any config work: a file without this component fails here
  const folder = await resolveConfigFolder(file, options);
  return { ...componentFrom(file, folder, name, spec, options.warn ?? console.warn, options.subfolder), name };
}

/**
 * Bind through `build` (a model's `fromSource`), turning "weights do not match the model" into the
 * error that says which config did not fit the file — the likely cause with a single file.
 */
export function bindSingleFile<T>(loaded: Pick<LoadedComponent<unknown>, 'file' | 'folder'>, name: ComponentName, build: () => T): T {
  try {
    return build();
  } catch (e) {
    if (!(e instanceof WeightLoadError) || e instanceof SingleFileError) throw e;
    throw new SingleFileConfigMismatchError(
      `${loaded.file.path}: the ${name} config from ${loaded.folder.origin} does not fit the file's ${name} tensors ` +
        `(pass \`config\` naming the configs this file was made with)\n${e.message}`,
      { cause: e },
    );
  }
}

/** A model class's `fromSingleFile`: load the component and bind it through the class's `fromSource`. */
export async function modelFromSingleFile<C, M>(
  path: string,
  which: ComponentName | ((file: SingleFile) => ComponentName),
  spec: ComponentSpec<C>,
  options: SingleFileComponentOptions,
  build: (config: C, source: WeightSource) => M,
): Promise<M> {
  const loaded = await loadComponent(path, which, spec, options);
  return bindSingleFile(loaded, loaded.name, () => build(loaded.config, loaded.source));
}
