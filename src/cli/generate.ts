/**
 * `cnxs generate`: prompt + control image → PNG(s), with the SD or SDXL ControlNet-XS pipeline picked
 * from the model's model_index.json. Every option is checked before anything is resolved or loaded;
 * progress on stderr (TTY only), a summary on stdout (`--json` for machines), A1111-style `parameters`
 * metadata in every PNG (each image with its own seed), atomic writes.
 */
import { constants, existsSync, statSync } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { checkModelSettings } from '../generate/checks.js';
import { DEFAULT_CANNY, loadControlImage } from '../generate/control.js';
import { SettingError, type SettingNames } from '../generate/errors.js';
import { loadGenerationPipeline } from '../generate/load.js';
import { a1111Parameters as parametersText, checkParameters, type ParameterInfo, type ParameterSettings } from '../generate/parameters.js';
import { writePng } from '../generate/png.js';
import { namedScheduler, samplerLabel } from '../generate/scheduler.js';
import { imageSeeds } from '../generate/seeds.js';
import { DEFAULT_MAX_PIXELS, MAX_NUM_IMAGES, MAX_STEPS } from '../generate/settings.js';
import { chooseSize as chooseGenerationSize, type SizeSettings } from '../generate/size.js';
import { generateImages } from '../generate/run.js';
import type { ImageSize, SizeRules } from '../pipelines/image-size.js';
import { DEFAULT_CONTROLNETS } from '../pipelines/load.js';
import { DEVICES, type Device } from '../pipelines/resolve.js';
import { SCHEDULER_ALIASES, findSchedulerAlias } from '../schedulers/aliases.js';
import { DEFAULT_DEPTH_MODEL, depthControlFromPhoto } from './depth-model.js';
import { DTYPE_OPTION, parseDtype } from './dtype-option.js';
import type { ComputeDtype } from '../models/compute-dtype.js';
import { extractPromptLoras, parseLoraOption, type LoraOption } from './lora-options.js';
import { OptionValues, optionsHelp, parseOptions, type OptionSpec } from './options.js';
import { ProgressBar } from './progress.js';
import { UsageError, didYouMean, float, integer, offlineWording, seed as parseSeed } from './usage.js';

export const DEFAULT_MODEL = 'stabilityai/stable-diffusion-2-1-base';
export { DEFAULT_MAX_PIXELS };
/** A1111's clip-skip slider range: 1 is the last layer (no skip), 2 the penultimate, … */
const MAX_CLIP_SKIP = 12;

const GENERATE_OPTIONS: readonly OptionSpec[] = [
  { name: 'prompt', short: 'p', value: 'TEXT', help: 'what to draw (required)' },
  { name: 'control', short: 'c', value: 'IMAGE', help: 'control image: PNG, JPEG, WebP, … (required)' },
  { name: 'canny', help: 'run Canny edges (100, 200) on --control first' },
  { name: 'depth', help: 'turn --control (a photo) into its depth map first, as cnxs depth does (default adapter: the depth one)' },
  { name: 'depth-model', value: 'ID|DIR', help: `depth model for --depth (default ${DEFAULT_DEPTH_MODEL})` },
  { name: 'model', short: 'm', value: 'ID|DIR|FILE', help: `base pipeline (default ${DEFAULT_MODEL}); SDXL repos pick the SDXL pipeline; a .safetensors/.ckpt single file works too` },
  { name: 'config', value: 'ID|DIR', help: 'configs for a single-file --model (default: the bundled SD 1.5 / 2.1 / XL ones its keys point to)' },
  { name: 'controlnet', value: 'ID|DIR', help: `ControlNet-XS adapter (default ${DEFAULT_CONTROLNETS.sd}, or ${DEFAULT_CONTROLNETS.sdxl} for SDXL; -depth instead of -canny with --depth)` },
  { name: 'negative-prompt', short: 'n', value: 'TEXT', help: 'what not to draw' },
  { name: 'lora', value: 'FILE[:SCALE]', help: 'LoRA .safetensors (or Hub id) with its weight (default 1); repeatable' },
  { name: 'lora-dir', value: 'DIR', help: 'folder for A1111\'s <lora:NAME:SCALE> in --prompt (NAME.safetensors)' },
  { name: 'embedding', value: 'FILE[:TOKEN]', help: 'textual inversion embedding (file, folder or Hub id; repeatable); TOKEN overrides the file\'s token' },
  { name: 'steps', short: 's', value: 'N', help: `denoising steps, 1 … ${MAX_STEPS} (default 30)` },
  { name: 'guidance-scale', short: 'g', value: 'G', help: 'classifier-free guidance, A1111\'s "CFG scale" (default 7.5; ≤ 1 turns it off)' },
  { name: 'embed-guidance-scale', help: 'LCM-distilled UNets: give --guidance-scale to the UNet as its guidance embedding, no CFG (off: diffusers\' behaviour)' },
  { name: 'control-scale', value: 'S', help: 'strength of the control (default 1.0)' },
  { name: 'control-start', value: 'F', help: 'fraction of the steps where control starts (default 0)' },
  { name: 'control-end', value: 'F', help: 'fraction of the steps where control ends (default 1)' },
  { name: 'scheduler', value: 'NAME', help: 'sampler (default: the model\'s); names below, A1111 labels and diffusers class names work too' },
  { name: 'seed', value: 'N', help: 'seed 0 … 2^64−1 (default random); image k of --num-images gets seed + k, as in A1111' },
  { name: 'width', short: 'W', value: 'PX', help: 'image width (default: the model\'s resolution fitted to the control image\'s aspect ratio)' },
  { name: 'height', short: 'H', value: 'PX', help: 'image height (same default); sizes are rounded to the multiple the model needs' },
  { name: 'max-pixels', value: 'N', help: `refuse sizes above N pixels (default ${DEFAULT_MAX_PIXELS} = 2048×2048)` },
  { name: 'num-images', value: 'N', help: 'images to generate (default 1): out-0.png, out-1.png, …' },
  { name: 'clip-skip', value: 'N', help: `A1111's clip skip, 1 … ${MAX_CLIP_SKIP}: 1 uses the text encoder's last layer, 2 the penultimate, …` },
  { name: 'variant', value: 'NAME', help: 'weights variant, e.g. fp16 (falls back to the default weights where an adapter has none)' },
  { name: 'revision', value: 'REV', help: 'branch, tag or commit of the base model on the Hub' },
  { name: 'offline', help: 'use only the local Hugging Face cache' },
  { name: 'no-safety-checker', help: "skip the model's safety checker (SD 1.x's NSFW filter, which writes flagged images black); not downloaded either" },
  { name: 'graph-cache', value: 'DIR|off', help: 'optimized-graph cache for fast warm loads (default ~/.cache/controlnet-xs/graphs)' },
  { name: 'device', value: DEVICES.join('|'), help: 'execution provider (default cpu; an unavailable device falls back to the CPU with one notice)' },
  DTYPE_OPTION,
  { name: 'out', short: 'o', value: 'FILE.png', help: 'output (default out.png; several images: out-0.png, out-1.png, …)' },
  { name: 'json', help: 'print a machine-readable summary' },
  { name: 'help', short: 'h', help: 'show this help' },
];

export const GENERATE_USAGE = `usage: cnxs generate --prompt "…" --control edges.png [options]

${optionsHelp(GENERATE_OPTIONS)}

schedulers: ${Object.entries(SCHEDULER_ALIASES)
  .map(([k, a]) => `${k} (${a.label})`)
  .join(', ')}`;

export interface GenerateOptions {
  prompt: string;
  control: string;
  model: string;
  controlnet: string | undefined;
  canny: boolean;
  /** Make the control image the depth map of the --control photo (`cnxs depth`), with `depthModel`. */
  depth: boolean;
  depthModel: string | undefined;
  negativePrompt: string | undefined;
  /** LoRAs to load, in order: `--lora FILE[:SCALE]`, then the prompt's `<lora:NAME:SCALE>` tags. */
  loras: readonly LoraOption[];
  /** The prompt the text encoder gets: `prompt` without its `<lora:…>` tags (A1111 strips them too). */
  pipelinePrompt: string;
  /** Textual inversion embeddings to load, in order (`--embedding FILE[:TOKEN]`). */
  embeddings: readonly EmbeddingOption[];
  steps: number;
  guidanceScale: number;
  /** The pipelines' `embedGuidanceScale` (LCM UNets). */
  embedGuidanceScale: boolean;
  controlScale: number;
  controlStart: number;
  controlEnd: number;
  /** The alias key (`euler-a`), resolved from any accepted spelling; undefined: the model's own. */
  scheduler: string | undefined;
  seed: bigint;
  width: number | undefined;
  height: number | undefined;
  maxPixels: number;
  numImages: number;
  /** A1111's numbering: 1 = last layer. */
  clipSkip: number | undefined;
  variant: string | undefined;
  /** Configs of a single-file model (a diffusers folder or Hub id). */
  config: string | undefined;
  revision: string | undefined;
  offline: boolean;
  /** Run the model's safety checker where it has one (off: --no-safety-checker). */
  safetyChecker: boolean;
  graphCache: string | null;
  device: Device;
  /** Compute dtype; absent: float32. */
  dtype: ComputeDtype | undefined;
  out: string;
  json: boolean;
}

/** One `--embedding`: where the embedding is, and the token to register it under (default: the file's own). */
export interface EmbeddingOption {
  source: string;
  token: string | undefined;
}

/**
 * `FILE[:TOKEN]`: the last `:` starts a token unless what follows it looks like a path (a Windows drive,
 * `C:\…`), so file names and Hub ids keep their own characters.
 */
export function parseEmbeddingOption(text: string): EmbeddingOption {
  const at = text.lastIndexOf(':');
  const tail = at < 0 ? '' : text.slice(at + 1);
  if (at < 0 || /[\\/]/.test(tail)) return { source: text, token: undefined };
  if (at === 0) throw new UsageError(`--embedding needs a file before ":${tail}"`);
  if (tail === '') throw new UsageError(`--embedding "${text}" ends in ":" without a token (FILE or FILE:TOKEN)`);
  return { source: text.slice(0, at), token: tail };
}

/** `cnxs generate --help` asked for the usage text instead of a generation. */
export const HELP = Symbol('help');

/** The options, every value checked (no file is touched): a UsageError names the first problem. */
export function parseGenerateArgs(argv: readonly string[]): GenerateOptions | typeof HELP {
  const v = new OptionValues(parseOptions(argv, GENERATE_OPTIONS, 'generate'));
  if (v.flag('help')) return HELP;
  if (v.positionals.length) throw new UsageError(`generate: unexpected argument "${v.positionals[0]}" (options start with --)`);
  const prompt = v.string('prompt');
  const control = v.string('control');
  if (prompt === undefined) throw new UsageError('generate needs --prompt');
  if (control === undefined) throw new UsageError('generate needs --control <image>');
  if (v.flag('canny') && v.flag('depth')) throw new UsageError('--canny and --depth both make the control image from --control; give one');
  if (v.has('depth-model') && !v.flag('depth')) throw new UsageError('--depth-model needs --depth');
  if (v.string('depth-model') === '') throw new UsageError('--depth-model must not be empty');
  const out = v.string('out') ?? 'out.png';
  if (extname(out).toLowerCase() !== '.png') throw new UsageError(`--out must be a .png file, got "${out}"`);
  const device = v.string('device') ?? 'cpu';
  if (!DEVICES.includes(device as Device)) throw new UsageError(`--device must be one of ${DEVICES.join(', ')}, got "${device}"${didYouMean(device, DEVICES)}`);
  const dtype = parseDtype(v.string('dtype'), device);
  const scheduler = v.string('scheduler');
  const alias = scheduler === undefined ? undefined : findSchedulerAlias(scheduler);
  if (scheduler !== undefined && !alias) {
    throw new UsageError(`unknown --scheduler "${scheduler}"${didYouMean(scheduler, Object.keys(SCHEDULER_ALIASES))}; choose one of ${Object.keys(SCHEDULER_ALIASES).join(', ')}`);
  }
  const num = (name: string, fallback: string, range: { min?: number; max?: number } = {}) => float(name, v.string(name) ?? fallback, range);
  const whole = (name: string, range: { min?: number; max?: number }) => {
    const s = v.string(name);
    return s === undefined ? undefined : integer(name, s, range);
  };
  const controlStart = num('control-start', '0', { min: 0, max: 1 });
  const controlEnd = num('control-end', '1', { min: 0, max: 1 });
  if (!(controlStart < controlEnd)) throw new UsageError(`--control-start (${controlStart}) must be below --control-end (${controlEnd})`);
  const maxPixels = whole('max-pixels', { min: 1 }) ?? DEFAULT_MAX_PIXELS;
  const width = whole('width', { min: 8 });
  const height = whole('height', { min: 8 });
  // both sides given: refused now; one side given: checked once the other is derived (chooseSize), before any allocation
  if (width !== undefined && height !== undefined && width * height > maxPixels) {
    throw new UsageError(`--width ${width} --height ${height} is ${width * height} pixels, over --max-pixels ${maxPixels}`);
  }
  const seedText = v.string('seed');
  const numImages = whole('num-images', { min: 1, max: MAX_NUM_IMAGES }) ?? 1;
  const s = seedText === undefined ? BigInt(Math.floor(Math.random() * 2 ** 32)) : parseSeed('seed', seedText);
  if (s + BigInt(numImages - 1) > 2n ** 64n - 1n) throw new UsageError(`--seed ${s} + --num-images ${numImages} runs past 2^64−1`);
  const graphCache = v.string('graph-cache');
  const loraDir = v.string('lora-dir');
  if (loraDir !== undefined && !(existsSync(loraDir) && statSync(loraDir).isDirectory())) throw new UsageError(`--lora-dir ${loraDir}: no such folder`);
  const tagged = extractPromptLoras(prompt, loraDir);
  return {
    prompt,
    pipelinePrompt: tagged.prompt,
    loras: [...v.strings('lora').map(parseLoraOption), ...tagged.loras],
    control,
    model: v.string('model') ?? DEFAULT_MODEL,
    controlnet: v.string('controlnet'),
    canny: v.flag('canny'),
    depth: v.flag('depth'),
    depthModel: v.string('depth-model'),
    negativePrompt: v.string('negative-prompt'),
    embeddings: v.strings('embedding').map(parseEmbeddingOption),
    steps: whole('steps', { min: 1, max: MAX_STEPS }) ?? 30,
    guidanceScale: num('guidance-scale', '7.5'),
    embedGuidanceScale: v.flag('embed-guidance-scale'),
    controlScale: num('control-scale', '1.0'),
    controlStart,
    controlEnd,
    scheduler: alias?.key,
    seed: s,
    width,
    height,
    maxPixels,
    numImages,
    clipSkip: whole('clip-skip', { min: 1, max: MAX_CLIP_SKIP }),
    variant: v.string('variant'),
    config: v.string('config'),
    revision: v.string('revision'),
    offline: v.flag('offline'),
    safetyChecker: !v.flag('no-safety-checker'),
    graphCache: graphCache === 'off' ? null : (graphCache ?? defaultGraphCacheDir(process.env)),
    device: device as Device,
    dtype,
    out,
    json: v.flag('json'),
  };
}

/** `$XDG_CACHE_HOME/controlnet-xs/graphs`, or `~/.cache/controlnet-xs/graphs`. */
export function defaultGraphCacheDir(env: Readonly<Record<string, string | undefined>>): string {
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'controlnet-xs', 'graphs');
}

/** The paths images will be written to: `out` alone, or out-0, out-1, … for several. */
export function outputPaths(out: string, n: number): string[] {
  if (n === 1) return [out];
  const ext = extname(out);
  return Array.from({ length: n }, (_, i) => `${out.slice(0, out.length - ext.length)}-${i}${ext}`);
}

/** Is `path` an existing file (a single-file checkpoint) rather than a folder or Hub id? */
async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}

/** Fail before any download when an output cannot be written: its folder must exist and be writable, the file not be a folder. */
async function checkOutputs(paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const dir = dirname(resolve(path));
    try {
      if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
      await access(dir, constants.W_OK);
    } catch {
      throw new UsageError(`cannot write to ${path}: folder ${dir} does not exist or is not writable`);
    }
    const existing = await stat(path).catch(() => null);
    if (existing?.isDirectory()) throw new UsageError(`cannot write to ${path}: it is a folder (--out names the .png file to write)`);
  }
}

/** How the CLI spells a setting: `maxPixels` → `--max-pixels`. */
const optionName: SettingNames = (setting) => `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A SettingError from the shared generation code, in CLI words (a UsageError: exit 2). */
function inCliWords<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SettingError) throw new UsageError(e.reword(optionName), { cause: e });
    throw e;
  }
}

/**
 * The size to generate: `--width/--height` as given, or derived from the control image's aspect
 * ratio and the model's resolution; rounded to the model's multiple (with a notice when that
 * changes a given size) and held to `--max-pixels`.
 */
export function chooseSize(o: SizeSettings, control: ImageSize, rules: SizeRules, note: (m: string) => void): ImageSize {
  return inCliWords(() => chooseGenerationSize(o, control, rules, note));
}

export interface GenerateIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

export async function generate(o: GenerateOptions, io: GenerateIO): Promise<void> {
  // 1. Everything that can be checked without the model: outputs, metadata text, the control image.
  const paths = outputPaths(o.out, o.numImages);
  await checkOutputs(paths);
  if (o.config !== undefined && !(await isFile(o.model))) {
    throw new UsageError(`--config applies to a single-file --model (.safetensors / .ckpt); ${o.model} is not a file`);
  }
  const seeds = imageSeeds(o.seed, o.numImages);
  checkParameters(parameterSettings(o));
  const bar = new ProgressBar(io.stderr, Boolean(io.stderr.isTTY));
  const notice = (kind: 'warning' | 'note') => (m: string) => {
    bar.done();
    io.stderr.write(`cnxs: ${kind}: ${m}\n`);
  };
  const photo = await loadControlImage(o.control, o.canny ? { canny: DEFAULT_CANNY } : {});
  const depthModel = { model: o.depthModel ?? DEFAULT_DEPTH_MODEL, offline: o.offline, device: o.device, graphCacheDir: o.graphCache, warn: notice('warning') };
  const control = o.depth ? await depthControlFromPhoto(photo, depthModel).catch(offlineWording) : photo;

  // 2. The pipeline (downloads on first use).
  const t0 = performance.now();
  const { pipeline: pipe, controlnetName } = await loadGenerationPipeline({
    model: o.model,
    controlnet: o.controlnet,
    controlType: o.depth ? 'depth' : 'canny',
    config: o.config,
    variant: o.variant,
    revision: o.revision,
    offline: o.offline,
    graphCacheDir: o.graphCache,
    device: o.device,
    dtype: o.dtype,
    safetyChecker: o.safetyChecker,
    warn: notice('warning'),
    onDownloadProgress: (p) => bar.update(`downloading ${p.file}`, p.loaded, p.total),
  }).catch(offlineWording);
  bar.done();
  pipe.enableModelCpuOffload(); // one generation per process: each session closes after its stage (lower peak memory)
  if (o.scheduler) pipe.scheduler = namedScheduler(pipe.scheduler, o.scheduler);
  const sampler = samplerLabel(pipe.scheduler);
  // 3. What only the model's configs can say, still before any generation work.
  inCliWords(() => checkModelSettings(pipe, o, o.model));
  const { width, height } = chooseSize(o, control, pipe.sizeRules, notice('note'));
  // Textual inversion: each file into the tokenizer(s) and text encoder(s); SDXL {clip_l, clip_g} files into both.
  for (const e of o.embeddings) {
    await pipe.loadTextualInversion(e.source, {
      ...(e.token !== undefined ? { token: e.token } : {}),
      ...(o.offline ? { localFilesOnly: true } : {}),
      warn: notice('warning'),
    });
  }
  // LoRAs: each its own adapter, weighted by its scale (A1111's multiplier).
  if (o.loras.length) {
    const names: string[] = [];
    for (const [i, l] of o.loras.entries()) {
      names.push(await pipe.loadLoraWeights(l.source, { adapterName: `lora_${i}`, ...(o.offline ? { localFilesOnly: true } : {}), warn: notice('warning') }));
    }
    pipe.setAdapters(names, o.loras.map((l) => l.scale));
  }
  const loadSeconds = (performance.now() - t0) / 1000;

  // 4. Generate: one generator per image (seed + k), so every image reproduces from the seed in its file.
  const t1 = performance.now();
  const { images, nsfwContentDetected } = await generateImages(pipe, o, {
    control,
    size: { width, height },
    seeds,
    onStep: (s) => bar.update('denoising', s.index + 1, s.total),
  });
  bar.done();
  const flagged = paths.filter((_, i) => nsfwContentDetected?.[i] === true);
  if (flagged.length) {
    notice('warning')(`the safety checker flagged ${flagged.join(', ')} as potential NSFW content: written black, as diffusers returns them (--no-safety-checker skips the checker)`);
  }
  const seconds = (performance.now() - t1) / 1000;
  // where the UNet actually ran (the device asked for, or the CPU after a fallback)
  const device = await pipe.unet.executionProvider();
  for (const [i, img] of images.entries()) {
    await writePng(paths[i]!, img, a1111Parameters(o, { sampler, seed: seeds[i]!, width, height, controlnet: controlnetName }));
  }

  const summary = {
    images: paths,
    seed: jsonSeed(o.seed),
    seeds: seeds.map(jsonSeed),
    steps: o.steps,
    sampler,
    width,
    height,
    model: o.model,
    controlnet: controlnetName,
    pipeline: pipe.constructor.name,
    device,
    /** Per image whether the safety checker flagged it (and wrote it black); null: no checker ran. */
    nsfwContentDetected,
    loadSeconds,
    seconds,
  };
  if (o.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  else io.stdout.write(`${paths.map((p, i) => `wrote ${p} (seed ${seeds[i]})`).join('\n')}\n${width}×${height}, ${o.steps} step${o.steps === 1 ? '' : 's'} (${sampler}), ${seconds.toFixed(1)} s on ${device}\n`);
}

/** A seed as JSON: a number while exact, else its decimal string. */
function jsonSeed(s: bigint): number | string {
  return s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s.toString();
}

/** The settings the `parameters` text records: `--lora` files are named in it (prompt tags stay in the prompt). */
function parameterSettings(o: GenerateOptions): ParameterSettings {
  return { ...o, loraFiles: o.loras.filter((l) => l.from.startsWith('--lora')) };
}

/** The `parameters` text A1111 writes into its PNGs (every field one that `cnxs generate` reads back). */
export function a1111Parameters(o: GenerateOptions, info: ParameterInfo): string {
  return parametersText(parameterSettings(o), info);
}

