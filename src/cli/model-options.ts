/**
 * The options that say which model to load, shared by `cnxs serve` and `cnxs worker`: the same flags and
 * checks as `cnxs generate` (model, adapter, device, variant, revision, offline, graph cache, safety
 * checker, single-file configs) plus `--preview-vae` for live previews. Parsing only checks values; nothing is resolved or loaded.
 */
import { DEVICES, type Device } from '../pipelines/resolve.js';
import type { PipelineRunnerOptions } from '../server/runner.js';
import { DTYPE_OPTION, parseDtype } from './dtype-option.js';
import { defaultGraphCacheDir } from './generate.js';
import type { OptionSpec, OptionValues } from './options.js';
import { UsageError, didYouMean } from './usage.js';

export const MODEL_OPTIONS: readonly OptionSpec[] = [
  { name: 'model', short: 'm', value: 'ID|DIR|FILE', help: 'base pipeline (required): a diffusers folder, a Hub id, or a .safetensors/.ckpt single file; SDXL picks the SDXL pipeline' },
  { name: 'config', value: 'ID|DIR', help: 'configs for a single-file --model (default: the bundled SD 1.5 / 2.1 / XL ones its keys point to)' },
  { name: 'controlnet', value: 'ID|DIR', help: 'ControlNet-XS adapter (default: the canny adapter for the model\'s family, as cnxs generate)' },
  { name: 'device', value: DEVICES.join('|'), help: 'execution provider (default cpu; an unavailable device falls back to the CPU with one notice)' },
  DTYPE_OPTION,
  { name: 'variant', value: 'NAME', help: 'weights variant, e.g. fp16 (falls back to the default weights where an adapter has none)' },
  { name: 'revision', value: 'REV', help: 'branch, tag or commit of the base model on the Hub' },
  { name: 'offline', help: 'use only the local Hugging Face cache' },
  { name: 'graph-cache', value: 'DIR|off', help: 'optimized-graph cache for fast warm loads (default ~/.cache/controlnet-xs/graphs)' },
  { name: 'preview-vae', value: 'ID|DIR', help: 'TAESD (AutoencoderTiny) for live previews, e.g. madebyollin/taesd (default: a cheap latent-to-RGB approximation)' },
  { name: 'no-safety-checker', help: "skip the model's safety checker (SD 1.x's NSFW filter, which returns flagged images black)" },
];

/** What loading a model takes, as `createPipelineRunner` reads it (absent fields: the library's defaults). */
export type ModelOptions = Omit<PipelineRunnerOptions, 'warn' | 'maxPixels'>;

/**
 * The model options from parsed values (`command` names the command in errors). `env` supplies the
 * default graph-cache folder (`$XDG_CACHE_HOME`), as for `cnxs generate`.
 */
export function parseModelOptions(v: OptionValues, command: string, env: Readonly<Record<string, string | undefined>>): ModelOptions {
  const model = v.string('model');
  if (model === undefined || model === '') throw new UsageError(`${command} needs --model <dir|file|hub id>`);
  const device = v.string('device');
  if (device !== undefined && !DEVICES.includes(device as Device)) {
    throw new UsageError(`--device must be one of ${DEVICES.join(', ')}, got "${device}"${didYouMean(device, DEVICES)}`);
  }
  const dtype = parseDtype(v.string('dtype'), device);
  const graphCache = v.string('graph-cache');
  const text = (name: string): string | undefined => {
    const s = v.string(name);
    if (s === '') throw new UsageError(`--${name} must not be empty`);
    return s;
  };
  const controlnet = text('controlnet');
  const config = text('config');
  const variant = text('variant');
  const revision = text('revision');
  const previewVae = text('preview-vae');
  const graphCacheDir = graphCache === 'off' ? undefined : (graphCache || defaultGraphCacheDir(env));
  return {
    model,
    ...(controlnet !== undefined ? { controlnet } : {}),
    ...(config !== undefined ? { config } : {}),
    ...(device !== undefined ? { device: device as Device } : {}),
    ...(dtype !== undefined ? { dtype } : {}),
    ...(variant !== undefined ? { variant } : {}),
    ...(revision !== undefined ? { revision } : {}),
    ...(v.flag('offline') ? { offline: true } : {}),
    ...(graphCacheDir !== undefined ? { graphCacheDir } : {}),
    ...(previewVae !== undefined ? { previewVae } : {}),
    ...(v.flag('no-safety-checker') ? { safetyChecker: false } : {}),
  };
}
