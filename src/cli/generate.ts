/**
 * `cnxs generate`: prompt + control image → PNG(s), with the SD or SDXL ControlNet-XS pipeline picked
 * from the model's model_index.json. Progress on stderr (TTY only), a summary on stdout (`--json`
 * for machines), A1111-style `parameters` metadata in every PNG, atomic writes.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';
import type { RGBImage } from '../image/rgb-image.js';
import { MissingWeightsError } from '../errors.js';
import { ControlNetXSAdapter } from '../models/controlnet-xs-adapter.js';
import { readModelIndex } from '../pipelines/components.js';
import { DEVICES, resolveModelDir, resolvePipelineDir, type Device, type PipelineLoadOptions } from '../pipelines/resolve.js';
import { StableDiffusionControlNetXSPipeline } from '../pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../pipelines/stable-diffusion-xl-controlnet-xs.js';
import { Generator } from '../random/index.js';
import { schedulerAlias } from '../schedulers/aliases.js';
import { schedulerClass } from '../schedulers/index.js';
import { ProgressBar } from './progress.js';
import { UsageError, float, integer } from './usage.js';

export const DEFAULT_MODEL = 'stabilityai/stable-diffusion-2-1-base';
export const DEFAULT_CONTROLNET = 'UmerHA/Testing-ConrolNetXS-SD2.1-canny';
export const DEFAULT_CONTROLNET_XL = 'UmerHA/Testing-ConrolNetXS-SDXL-canny';

export const GENERATE_USAGE = `cnxs generate --prompt "…" --control edges.png [options]
  --model ID|DIR          base pipeline (default ${DEFAULT_MODEL}); SDXL repos pick the SDXL pipeline
  --controlnet ID|DIR     ControlNet-XS adapter (default ${DEFAULT_CONTROLNET}, or the SDXL one)
  --canny                 run Canny (100, 200) on --control first
  --negative-prompt TEXT  --steps N (30)  --guidance-scale G (7.5)  --control-scale S (1.0)
  --control-start F (0)   --control-end F (1)  --scheduler NAME (the model's)  --seed N (random)
  --width W --height H    --num-images N (1)  --clip-skip N  --variant fp16  --revision REV
  --offline               use only the local Hugging Face cache
  --graph-cache DIR|off   optimized-graph cache for fast warm loads (default ~/.cache/controlnet-xs/graphs)
  --device cpu|cuda|webgpu  execution provider (default cpu; falls back to the CPU with a warning)
  --out out.png           (several images: out-0.png, out-1.png, …)  --json  machine-readable summary`;

interface GenerateOptions {
  prompt: string;
  control: string;
  model: string;
  controlnet: string | undefined;
  canny: boolean;
  negativePrompt: string | undefined;
  steps: number;
  guidanceScale: number;
  controlScale: number;
  controlStart: number;
  controlEnd: number;
  scheduler: string | undefined;
  seed: number;
  width: number | undefined;
  height: number | undefined;
  numImages: number;
  clipSkip: number | undefined;
  variant: string | undefined;
  revision: string | undefined;
  offline: boolean;
  graphCache: string | null;
  device: Device;
  out: string;
  json: boolean;
}

export function parseGenerateArgs(argv: string[]): GenerateOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prompt: { type: 'string', short: 'p' },
      control: { type: 'string', short: 'c' },
      model: { type: 'string' },
      controlnet: { type: 'string' },
      canny: { type: 'boolean' },
      'negative-prompt': { type: 'string' },
      steps: { type: 'string' },
      'guidance-scale': { type: 'string' },
      'control-scale': { type: 'string' },
      'control-start': { type: 'string' },
      'control-end': { type: 'string' },
      scheduler: { type: 'string' },
      seed: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      'num-images': { type: 'string' },
      'clip-skip': { type: 'string' },
      variant: { type: 'string' },
      revision: { type: 'string' },
      offline: { type: 'boolean' },
      'graph-cache': { type: 'string' },
      device: { type: 'string' },
      out: { type: 'string', short: 'o' },
      json: { type: 'boolean' },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.prompt === undefined) throw new UsageError('generate needs --prompt');
  if (values.control === undefined) throw new UsageError('generate needs --control <image>');
  const out = values.out ?? 'out.png';
  if (extname(out).toLowerCase() !== '.png') throw new UsageError(`--out must be a .png file, got "${out}"`);
  const dim = (name: string, v: string | undefined) => (v === undefined ? undefined : integer(name, v, { min: 8 }));
  const device = values.device ?? 'cpu';
  if (!DEVICES.includes(device as Device)) throw new UsageError(`--device must be one of ${DEVICES.join(', ')}, got "${device}"`);
  const clip = values['clip-skip'];
  const seed = values.seed;
  return {
    prompt: values.prompt,
    control: values.control,
    model: values.model ?? DEFAULT_MODEL,
    controlnet: values.controlnet,
    canny: values.canny ?? false,
    negativePrompt: values['negative-prompt'],
    steps: integer('steps', values.steps ?? '30', { min: 1 }),
    guidanceScale: float('guidance-scale', values['guidance-scale'] ?? '7.5'),
    controlScale: float('control-scale', values['control-scale'] ?? '1.0'),
    controlStart: float('control-start', values['control-start'] ?? '0', { min: 0, max: 1 }),
    controlEnd: float('control-end', values['control-end'] ?? '1', { min: 0, max: 1 }),
    scheduler: values.scheduler,
    seed: seed === undefined ? Math.floor(Math.random() * 2 ** 32) : integer('seed', seed, { min: 0 }),
    width: dim('width', values.width),
    height: dim('height', values.height),
    numImages: integer('num-images', values['num-images'] ?? '1', { min: 1 }),
    clipSkip: clip === undefined ? undefined : integer('clip-skip', clip, { min: 0 }),
    variant: values.variant,
    revision: values.revision,
    offline: values.offline ?? false,
    graphCache: values['graph-cache'] === 'off' ? null : values['graph-cache'] ?? defaultGraphCacheDir(process.env),
    device: device as Device,
    out,
    json: values.json ?? false,
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

export async function generate(o: GenerateOptions, io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WriteStream }): Promise<void> {
  // Fail before any download when the output cannot be written.
  const outDir = dirname(resolve(o.out));
  try {
    if (!(await stat(outDir)).isDirectory()) throw new Error('not a directory');
    await access(outDir, constants.W_OK);
  } catch {
    throw new UsageError(`cannot write to ${o.out}: folder ${outDir} does not exist or is not writable`);
  }
  const bar = new ProgressBar(io.stderr, Boolean(io.stderr.isTTY));
  let control: RGBImage = await loadImage(o.control);
  if (o.canny) control = canny(control, { low: 100, high: 200 });

  const load: PipelineLoadOptions = {
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.revision ? { revision: o.revision } : {}),
    ...(o.offline ? { localFilesOnly: true } : {}),
    ...(o.graphCache ? { runtime: { graphCacheDir: o.graphCache } } : {}),
    ...(o.device !== 'cpu' ? { device: o.device } : {}),
    onDownloadProgress: (p) => bar.update(`downloading ${p.file}`, p.loaded, p.total),
    warn: (m) => {
      bar.done();
      io.stderr.write(`cnxs: warning: ${m}\n`);
    },
  };
  const t0 = performance.now();
  const modelDir = await resolvePipelineDir(o.model, load);
  const className = String(readModelIndex(modelDir)['_class_name'] ?? '');
  const isXL = className.includes('XL');
  const controlnetId = o.controlnet ?? (isXL ? DEFAULT_CONTROLNET_XL : DEFAULT_CONTROLNET);
  const { revision: _modelRevision, ...adapterLoad } = load;
  const adapterDir = await resolveModelDir(controlnetId, adapterLoad);
  const controlnet = await ControlNetXSAdapter.fromPretrained(adapterDir, { ...(o.variant ? { variant: o.variant } : {}), warn: load.warn! }).catch(async (e: unknown) => {
    // published adapters often have no fp16 variant: fall back like diffusers does
    if (!o.variant || !(e instanceof MissingWeightsError)) throw e;
    return ControlNetXSAdapter.fromPretrained(adapterDir, { warn: load.warn! });
  });
  const pipe = isXL
    ? await StableDiffusionXLControlNetXSPipeline.fromPretrained(modelDir, { ...load, controlnet })
    : await StableDiffusionControlNetXSPipeline.fromPretrained(modelDir, { ...load, controlnet });
  bar.done();
  pipe.enableModelCpuOffload(); // one generation per process: each session closes after its stage (lower peak memory)
  let sampler = String(pipe.scheduler.config._class_name).replace(/Scheduler$/, '');
  if (o.scheduler) {
    const alias = schedulerAlias(o.scheduler);
    pipe.scheduler = schedulerClass(alias.className).fromConfig({ ...pipe.scheduler.config, ...alias.overrides });
    sampler = alias.label;
  }
  const loadSeconds = (performance.now() - t0) / 1000;

  const t1 = performance.now();
  const common = {
    prompt: o.prompt,
    image: control,
    numInferenceSteps: o.steps,
    guidanceScale: o.guidanceScale,
    numImagesPerPrompt: o.numImages,
    generator: new Generator().manualSeed(o.seed),
    controlnetConditioningScale: o.controlScale,
    controlGuidanceStart: o.controlStart,
    controlGuidanceEnd: o.controlEnd,
    outputType: 'pil' as const,
    onProgress: (p: { step: number; total: number }) => bar.update('denoising', p.step, p.total),
    ...(o.negativePrompt !== undefined ? { negativePrompt: o.negativePrompt } : {}),
    ...(o.width !== undefined ? { width: o.width } : {}),
    ...(o.height !== undefined ? { height: o.height } : {}),
    ...(o.clipSkip !== undefined ? { clipSkip: o.clipSkip } : {}),
  };
  const { images } = pipe instanceof StableDiffusionXLControlNetXSPipeline ? await pipe.run(common) : await pipe.run(common);
  bar.done();
  const seconds = (performance.now() - t1) / 1000;
  const list = images as RGBImage[];
  const paths = outputPaths(o.out, list.length);
  const parameters = a1111Parameters(o, { sampler, width: list[0]!.width, height: list[0]!.height, model: o.model, controlnet: controlnetId });
  for (const [i, img] of list.entries()) await img.save(paths[i]!, { pngText: { parameters } });

  const summary = { images: paths, seed: o.seed, steps: o.steps, sampler, width: list[0]!.width, height: list[0]!.height, model: o.model, controlnet: controlnetId, pipeline: pipe.constructor.name, loadSeconds, seconds };
  if (o.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  else io.stdout.write(`${paths.map((p) => `wrote ${p}`).join('\n')}\n${summary.width}×${summary.height}, ${o.steps} steps (${sampler}), seed ${o.seed}, ${seconds.toFixed(1)} s\n`);
}

/** The `parameters` text A1111 writes into its PNGs. */
export function a1111Parameters(o: GenerateOptions, info: { sampler: string; width: number; height: number; model: string; controlnet: string }): string {
  const lines = [o.prompt];
  if (o.negativePrompt) lines.push(`Negative prompt: ${o.negativePrompt}`);
  const fields = [
    `Steps: ${o.steps}`,
    `Sampler: ${info.sampler}`,
    `CFG scale: ${o.guidanceScale}`,
    `Seed: ${o.seed}`,
    `Size: ${info.width}x${info.height}`,
    `Model: ${info.model}`,
    `ControlNet-XS: ${info.controlnet}`,
    `Control scale: ${o.controlScale}`,
  ];
  if (o.controlStart !== 0 || o.controlEnd !== 1) fields.push(`Control window: ${o.controlStart}-${o.controlEnd}`);
  if (o.clipSkip !== undefined) fields.push(`Clip skip: ${o.clipSkip}`);
  lines.push(fields.join(', '));
  return lines.join('\n');
}
