/**
 * The components of a pipeline from one original (LDM / SGM) single file, as diffusers'
 * `from_single_file`: the UNet, VAE and text encoders from the file, every config (and the
 * tokenizers and scheduler) from the config folder — `config`, or the package's bundled default for
 * the detected model type. Single files never hold a ControlNet-XS adapter: it is passed, or comes
 * from a config folder that has one.
 *
 * Everything that can be refused is refused before a config is read or a tensor mapped: a file of
 * the other pipeline's kind, a component the file lacks and no option supplies, no adapter.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text-model.js';
import type { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import { UNET_SPEC, VAE_SPEC, assertRecognised, bindSingleFile, clipSpec, componentFrom, type ComponentSpec } from '../models/single-file/component.js';
import { BUNDLED_BPE_DIR, resolveConfigFolder, type ConfigFolder } from '../models/single-file/configs.js';
import { describeInspection, type ComponentName } from '../models/single-file/detect.js';
import { SingleFileComponentError, SingleFileError } from '../models/single-file/errors.js';
import { openSingleFile, type SingleFile } from '../models/single-file/open.js';
import type { Scheduler } from '../schedulers/index.js';
import { CLIPTokenizer } from '../tokenizer/index.js';
import { parsePythonJson } from '../util/json.js';
import type { WeightSource } from '../weights/source.js';
import { componentClass, loadAdapter, loadScheduler, readModelIndex, type PipelineVae } from './components.js';
import { modelOptions, type PipelineLoadOptions } from './resolve.js';

export type SingleFileKind = 'sd' | 'sdxl';

export interface SingleFilePipelineOptions extends PipelineLoadOptions {
  /**
   * The configs (and tokenizers, scheduler) to load the file with: a diffusers pipeline folder or a
   * Hub repo id (only its config files are downloaded). Default: the bundled configs of the model
   * type detected from the file's keys (SD 1.5, SD 2.1 768-v, SDXL base; see `models/single-file`),
   * which also answer those repos' Hub ids offline (`stabilityai/stable-diffusion-2-1-base` for an
   * SD 2.1-base file, whose keys cannot tell it from 2.1 768-v).
   */
  config?: string;
  /** The adapter; default: the config folder's `controlnet/`, when it has one. */
  controlnet?: ControlNetXSAdapter;
  /** Components to use instead of the file's or the config's (a file without text encoders, another VAE, …). */
  vae?: PipelineVae;
  textEncoder?: CLIPTextModel;
  tokenizer?: CLIPTokenizer;
  scheduler?: Scheduler;
  /**
   * SD: warn that no safety checker runs (single files never hold one, as in diffusers). Default: the
   * config's `requires_safety_checker` (true for SD 1.5, false for SD 2.x, as their repos declare).
   */
  requiresSafetyChecker?: boolean;
}

export interface SingleFileXLPipelineOptions extends SingleFilePipelineOptions {
  textEncoder2?: CLIPTextModelWithProjection;
  tokenizer2?: CLIPTokenizer;
}

export interface SingleFileParts {
  vae: PipelineVae;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  unet: UNet2DConditionModel;
  controlnet: ControlNetXSAdapter;
  scheduler: Scheduler;
  /** SDXL only. */
  textEncoder2?: CLIPTextModelWithProjection;
  tokenizer2?: CLIPTokenizer;
  forceZerosForEmptyPrompt: boolean;
  /** The config folder's `requires_safety_checker` (diffusers' default true when it says nothing), or the option. */
  requiresSafetyChecker: boolean;
  /** Where the configs came from (a folder, a Hub id, or the bundled defaults' title). */
  configOrigin: string;
}

/** Which pipeline a single file is for: SDXL when it has a second text encoder or SDXL's micro-conditioning embedding. */
export function singleFileKind(file: SingleFile): SingleFileKind {
  const xl = file.inspection.components.some((c) => c.name === 'text_encoder_2') || file.source.get('model.diffusion_model.label_emb.0.0.weight') !== undefined;
  return xl ? 'sdxl' : 'sd';
}

const PIPELINE_CLASS: Record<SingleFileKind, string> = {
  sd: 'StableDiffusionControlNetXSPipeline',
  sdxl: 'StableDiffusionXLControlNetXSPipeline',
};

/** Load everything a ControlNet-XS pipeline of `kind` needs from the single file at `path`. */
export async function loadSingleFileParts(path: string, kind: SingleFileKind, options: SingleFileXLPipelineOptions): Promise<SingleFileParts> {
  const warn = options.warn ?? console.warn;
  const file = await openSingleFile(path);
  const fileKind = singleFileKind(file);
  const has = (name: ComponentName): boolean => file.inspection.components.some((c) => c.name === name);
  assertRecognised(file);
  if (!has('unet')) {
    throw new SingleFileComponentError(`${path}: holds no UNet, so it cannot be a pipeline (${describeInspection(file.inspection)}); load its parts with the model classes' fromSingleFile`);
  }
  if (file.inspection.stray.length) {
    const n = file.inspection.stray.length;
    throw new SingleFileError(
      `${path}: ${n} key(s) belong to no component this pipeline loads and are no known extra: ${file.inspection.stray.slice(0, 12).join(', ')}${n > 12 ? ', …' : ''} (${describeInspection(file.inspection)})`,
    );
  }
  if (fileKind !== kind) {
    throw new InputError(`${path}: is ${fileKind === 'sdxl' ? 'an SDXL' : 'an SD 1.x/2.x'} single file: use ${PIPELINE_CLASS[fileKind]}.fromSingleFile`);
  }
  const given: Record<ComponentName, boolean> = {
    unet: false,
    vae: options.vae !== undefined,
    text_encoder: options.textEncoder !== undefined,
    text_encoder_2: kind === 'sd' || options.textEncoder2 !== undefined,
  };
  const missing = (Object.keys(given) as ComponentName[]).filter((n) => !given[n] && !has(n));
  if (missing.length) {
    throw new SingleFileComponentError(
      `${path}: holds no weights for ${missing.join(', ')} (${describeInspection(file.inspection)}); pass ${missing.map(optionName).join(', ')} to ${PIPELINE_CLASS[kind]}.fromSingleFile`,
    );
  }

  const folder = await resolveConfigFolder(file, { ...hubOptions(options), ...(options.config !== undefined ? { config: options.config } : {}) });
  const index = folderIndex(folder);
  const adapterHere = options.controlnet === undefined && index !== null && componentClass(index, 'controlnet') !== null && hasWeights(join(folder.dir, 'controlnet'));
  if (options.controlnet === undefined && !adapterHere) {
    throw new InputError(`${path}: single files hold no ControlNet-XS adapter and none comes with ${folder.origin}: pass \`controlnet\` (a ControlNetXSAdapter)`);
  }

  const runtime = modelOptions(options);
  const models = { ...(runtime.runtime ? { runtime: runtime.runtime } : {}), ...(runtime.trace ? { trace: runtime.trace } : {}) };
  const part = <C, M>(name: ComponentName, spec: ComponentSpec<C>, build: (c: C, s: WeightSource) => M): M => {
    const loaded = componentFrom(file, folder, name, spec, warn);
    return bindSingleFile(loaded, name, () => build(loaded.config, loaded.source));
  };
  const unet = part('unet', UNET_SPEC, (c, s) => UNet2DConditionModel.fromSource(c, s, models));
  const vae = options.vae ?? part('vae', VAE_SPEC, (c, s) => AutoencoderKL.fromSource(c, s, models));
  const textEncoder = options.textEncoder ?? part('text_encoder', clipSpec(false), (c, s) => CLIPTextModel.fromSource(c, s, models));
  const textEncoder2 = kind === 'sdxl' ? (options.textEncoder2 ?? part('text_encoder_2', clipSpec(true), (c, s) => CLIPTextModelWithProjection.fromSource(c, s, models))) : undefined;
  const [tokenizer, tokenizer2] = await Promise.all([
    options.tokenizer ?? loadConfigTokenizer(folder, 'tokenizer'),
    kind === 'sdxl' ? (options.tokenizer2 ?? loadConfigTokenizer(folder, 'tokenizer_2')) : undefined,
  ]);
  const scheduler = options.scheduler ?? (await loadScheduler(folder.dir));
  const controlnet =
    options.controlnet ??
    (await loadAdapter(folder.dir, { ...(options.variant ? { variant: options.variant } : {}), warn }));
  return {
    unet,
    vae,
    textEncoder,
    tokenizer,
    scheduler,
    controlnet,
    ...(textEncoder2 ? { textEncoder2 } : {}),
    ...(tokenizer2 ? { tokenizer2 } : {}),
    forceZerosForEmptyPrompt: index?.['force_zeros_for_empty_prompt'] !== false,
    requiresSafetyChecker: options.requiresSafetyChecker ?? index?.['requires_safety_checker'] !== false,
    configOrigin: folder.origin,
  };
}

/** Does a component folder hold weights (a Hub config download has its config.json only)? */
function hasWeights(dir: string): boolean {
  return existsSync(dir) && readdirSync(dir).some((f) => /\.(safetensors|bin)$/.test(f));
}

function optionName(n: ComponentName): string {
  return { unet: 'unet', vae: 'vae', text_encoder: 'textEncoder', text_encoder_2: 'textEncoder2' }[n];
}

function hubOptions(o: PipelineLoadOptions): Omit<PipelineLoadOptions, 'variant' | 'dtype' | 'device' | 'runtime' | 'trace' | 'onDownloadProgress'> {
  const { variant: _v, dtype: _d, device: _dev, runtime: _r, trace: _t, onDownloadProgress: _p, ...hub } = o;
  return hub;
}

/** The config folder's model_index.json, when it has one (a component folder or a bare config set may not). */
function folderIndex(folder: ConfigFolder): ReturnType<typeof readModelIndex> | null {
  return existsSync(join(folder.dir, 'model_index.json')) ? readModelIndex(folder.dir) : null;
}

/**
 * A tokenizer from the config folder. The bundled folders keep only each tokenizer's own settings
 * (pad token, special tokens) and share one copy of the CLIP BPE vocabulary and merges.
 */
export async function loadConfigTokenizer(folder: ConfigFolder, subfolder: string): Promise<CLIPTokenizer> {
  if (folder.bundled === null) return CLIPTokenizer.fromPretrained(folder.dir, { subfolder });
  const dir = join(folder.dir, subfolder);
  const json = (path: string): Record<string, unknown> => {
    try {
      return parsePythonJson(readFileSync(path, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${path}: cannot read the bundled tokenizer file (${(e as Error).message})`, { cause: e });
    }
  };
  const [vocab, merges] = [json(join(BUNDLED_BPE_DIR, 'vocab.json')) as Record<string, number>, await readFile(join(BUNDLED_BPE_DIR, 'merges.txt'), 'utf8')];
  return new CLIPTokenizer({
    vocab,
    merges,
    tokenizerConfig: json(join(dir, 'tokenizer_config.json')),
    specialTokensMap: json(join(dir, 'special_tokens_map.json')),
    source: dir,
  });
}
