/**
 * Loading pipeline components from a diffusers pipeline folder: `model_index.json` names each
 * component's library and class; each lives in the subfolder of the same name.
 */
import { existsSync } from 'node:fs';
import { fileExists, joinPath } from '../platform/files.js';
import { loadJsonObject, readJsonObject } from '../util/json.js';
import { ConfigError, InputError, MissingWeightsError } from '../errors.js';
import { AutoencoderKL } from '../models/autoencoder-kl.js';
import { AutoencoderTiny } from '../models/autoencoder-tiny.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text-model.js';
import { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import type { ModelRuntimeOptions } from '../models/traced-model.js';
import { UNet2DConditionModel } from '../models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import { schedulerFromConfig, type Scheduler } from '../schedulers/index.js';
import { CLIPTokenizer } from '../tokenizer/index.js';

export type ModelIndex = Record<string, unknown> & { _class_name?: string };

/** A local pipeline folder's `model_index.json`, read now (`loadModelIndex` reads through the platform's file seam). */
export function readModelIndex(dir: string): ModelIndex {
  const path = joinPath(dir, 'model_index.json');
  if (!existsSync(path)) throw new ConfigError(`${dir}: not a diffusers pipeline folder (no model_index.json)`);
  return readJsonObject(path);
}

/** A pipeline folder's `model_index.json`: a local file in Node, a URL in the browser. */
export async function loadModelIndex(dir: string): Promise<ModelIndex> {
  const path = joinPath(dir, 'model_index.json');
  if (!(await fileExists(path))) throw new ConfigError(`${dir}: not a diffusers pipeline folder (no model_index.json)`);
  return loadJsonObject(path);
}

/** The [library, class] a component is declared with, or null when absent / null. */
export function componentClass(index: ModelIndex, name: string): string | null {
  const v = index[name];
  if (!Array.isArray(v) || v.length !== 2 || v[1] === null) return null;
  return String(v[1]);
}

export interface ComponentLoadOptions extends ModelRuntimeOptions {
  variant?: string;
  warn: (message: string) => void;
}

/** Try the variant first; a component published without it falls back to its plain weights (with a warning). */
export async function withVariant<T>(name: string, opts: ComponentLoadOptions, load: (variant: string | undefined) => Promise<T>): Promise<T> {
  if (!opts.variant) return load(undefined);
  try {
    return await load(opts.variant);
  } catch (e) {
    if (!(e instanceof MissingWeightsError)) throw e;
    opts.warn(`${name}: no "${opts.variant}" variant weights; loading the default ones`);
    return load(undefined);
  }
}

/**
 * What a pipeline's `vae` may be. diffusers' pipelines only read `config.block_out_channels` (the
 * scale factor), `config.scaling_factor` and `decode`, which TAESD has too (scaling factor 1.0: it
 * decodes the diffusion latents as they are), so a tiny autoencoder is a drop-in fast decoder.
 */
export type PipelineVae = AutoencoderKL | AutoencoderTiny;

/** `vae/` as the class model_index.json names: AutoencoderKL (also when unnamed) or AutoencoderTiny. */
export async function loadVae(dir: string, opts: ComponentLoadOptions): Promise<PipelineVae> {
  const cls = (await fileExists(joinPath(dir, 'model_index.json'))) ? componentClass(await loadModelIndex(dir), 'vae') : null;
  const model = { subfolder: 'vae', warn: opts.warn, ...runtime(opts) };
  if (cls === 'AutoencoderTiny') return withVariant('vae', opts, (variant) => AutoencoderTiny.fromPretrained(dir, { ...model, ...(variant ? { variant } : {}) }));
  if (cls !== null && cls !== 'AutoencoderKL') throw new ConfigError(`${dir}/model_index.json: vae class "${cls}" is not supported (AutoencoderKL or AutoencoderTiny)`);
  return withVariant('vae', opts, (variant) => AutoencoderKL.fromPretrained(dir, { ...model, ...(variant ? { variant } : {}) }));
}

export async function loadTextEncoder(dir: string, subfolder: string, opts: ComponentLoadOptions): Promise<CLIPTextModel> {
  return withVariant(subfolder, opts, (variant) => CLIPTextModel.fromPretrained(dir, { subfolder, warn: opts.warn, ...runtime(opts), ...(variant ? { variant } : {}) }));
}

export async function loadTextEncoderWithProjection(dir: string, subfolder: string, opts: ComponentLoadOptions): Promise<CLIPTextModelWithProjection> {
  return withVariant(subfolder, opts, (variant) =>
    CLIPTextModelWithProjection.fromPretrained(dir, { subfolder, warn: opts.warn, ...runtime(opts), ...(variant ? { variant } : {}) }),
  );
}

export async function loadTokenizer(dir: string, subfolder: string): Promise<CLIPTokenizer> {
  return CLIPTokenizer.fromPretrained(dir, { subfolder });
}

/** `unet/` holds a plain UNet (fused with the adapter by the pipeline) or a saved fused model. */
export async function loadUnet(dir: string, index: ModelIndex, opts: ComponentLoadOptions): Promise<UNet2DConditionModel | UNetControlNetXSModel> {
  const cls = componentClass(index, 'unet');
  if (cls === 'UNetControlNetXSModel') {
    return withVariant('unet', opts, (variant) => UNetControlNetXSModel.fromPretrained(dir, { subfolder: 'unet', warn: opts.warn, ...runtime(opts), ...(variant ? { variant } : {}) }));
  }
  if (cls !== null && cls !== 'UNet2DConditionModel') throw new ConfigError(`${dir}/model_index.json: unet class "${cls}" is not supported`);
  return withVariant('unet', opts, (variant) => UNet2DConditionModel.fromPretrained(dir, { subfolder: 'unet', warn: opts.warn, ...runtime(opts), ...(variant ? { variant } : {}) }));
}

/** The adapter in a pipeline folder's `controlnet/`, or (subfolder null) an adapter folder of its own. */
export async function loadAdapter(dir: string, opts: ComponentLoadOptions, subfolder: string | null = 'controlnet'): Promise<ControlNetXSAdapter> {
  return withVariant(subfolder ?? 'controlnet', opts, (variant) =>
    ControlNetXSAdapter.fromPretrained(dir, { ...(subfolder ? { subfolder } : {}), warn: opts.warn, ...(variant ? { variant } : {}) }),
  );
}

export async function loadScheduler(dir: string): Promise<Scheduler> {
  const path = joinPath(dir, 'scheduler', 'scheduler_config.json');
  if (!(await fileExists(path))) throw new ConfigError(`${path}: missing scheduler config`);
  return schedulerFromConfig((await loadJsonObject(path)) as Parameters<typeof schedulerFromConfig>[0]);
}

function runtime(opts: ModelRuntimeOptions): ModelRuntimeOptions {
  return { ...(opts.runtime ? { runtime: opts.runtime } : {}), ...(opts.trace ? { trace: opts.trace } : {}), ...(opts.dtype ? { dtype: opts.dtype } : {}) };
}

/** The pipelines' UNet: a fused model as given, or a plain UNet fused with the adapter (diffusers' __init__). */
export function fusedUnet(unet: UNet2DConditionModel | UNetControlNetXSModel, controlnet: ControlNetXSAdapter | null, kind: 'sd' | 'sdxl'): UNetControlNetXSModel {
  let fused: UNetControlNetXSModel;
  if (unet instanceof UNet2DConditionModel) {
    if (!controlnet) throw new InputError('a plain UNet2DConditionModel needs a `controlnet` (ControlNetXSAdapter) to fuse with');
    fused = UNetControlNetXSModel.fuse(unet, controlnet, unet.runtimeSettings);
  } else {
    fused = unet;
  }
  const isXL = fused.config.additionEmbedType === 'text_time';
  if (kind === 'sd' && isXL) throw new InputError('this UNet is an SDXL UNet (addition_embed_type "text_time"): use StableDiffusionXLControlNetXSPipeline');
  if (kind === 'sdxl' && !isXL) throw new InputError('this UNet has no SDXL text_time embedding: use StableDiffusionControlNetXSPipeline for SD 1.x/2.x');
  return fused;
}
