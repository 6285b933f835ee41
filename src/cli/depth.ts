/**
 * `cnxs depth photo.png --out depth.png`: transformers' depth-estimation pipeline as a command (the
 * 8-bit depth, PIL mode L, at the photo's size), and the depth-model loading `cnxs generate --depth`
 * shares. Everything the command line names is checked before a model is loaded; the PNG is written
 * whole or not at all.
 */
import { stat, access, constants } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { checkDepthInputSize } from '../image/dpt-image-processor.js';
import { loadImage } from '../image/load.js';
import type { RGBImage } from '../image/rgb-image.js';
import { DEVICES, type Device } from '../pipelines/resolve.js';
import { DEFAULT_DEPTH_MODEL, loadDepthPipeline } from './depth-model.js';
import { defaultGraphCacheDir } from './generate.js';
import { OptionValues, optionsHelp, parseOptions, type OptionSpec } from './options.js';
import { UsageError, didYouMean, offlineWording } from './usage.js';

const DEPTH_OPTIONS: readonly OptionSpec[] = [
  { name: 'out', short: 'o', value: 'FILE.png', help: 'where to write the depth map, 8-bit gray (required; .png, .jpg or .webp)' },
  { name: 'model', short: 'm', value: 'ID|DIR', help: `depth model: a Hub id or a folder with config.json, preprocessor_config.json and weights (default ${DEFAULT_DEPTH_MODEL})` },
  { name: 'revision', value: 'REV', help: 'branch, tag or commit of the model on the Hub' },
  { name: 'offline', help: 'use only the local Hugging Face cache' },
  { name: 'device', value: DEVICES.join('|'), help: 'execution provider (default cpu; an unavailable device falls back to the CPU with one notice)' },
  { name: 'graph-cache', value: 'DIR|off', help: 'optimized-graph cache for fast warm loads (default ~/.cache/controlnet-xs/graphs)' },
  { name: 'help', short: 'h', help: 'show this help' },
];

export const DEPTH_USAGE = `usage: cnxs depth <photo> --out <depth.png> [options]
depth map of a photo, as transformers' pipeline("depth-estimation") makes it (the control images
ControlNet-XS depth adapters expect; nearer is brighter)

${optionsHelp(DEPTH_OPTIONS)}`;

/** A `--device` value, checked. */
export function parseDevice(v: string | undefined, option = 'device'): Device | undefined {
  if (v !== undefined && !DEVICES.includes(v as Device)) throw new UsageError(`--${option} must be one of ${DEVICES.join(', ')}, got "${v}"${didYouMean(v, DEVICES)}`);
  return v as Device | undefined;
}

const OUTPUT_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp'];

/** `--out`: a known image extension, not a folder, in a folder that exists and can be written. */
export async function checkOutputFile(out: string, option = 'out'): Promise<void> {
  const existing = await stat(out).catch(() => null);
  if (existing?.isDirectory()) throw new UsageError(`--${option} ${out} is a folder; give a file name`);
  const ext = extname(out).toLowerCase();
  if (!OUTPUT_EXTENSIONS.includes(ext)) throw new UsageError(`--${option} ${out}: cannot tell the image format from "${ext}" (use ${OUTPUT_EXTENSIONS.join(', ')})`);
  const folder = dirname(out);
  const parent = await stat(folder).catch(() => null);
  if (!parent?.isDirectory()) throw new UsageError(`--${option} ${out}: the folder ${folder} does not exist`);
  try {
    await access(folder, constants.W_OK);
  } catch {
    throw new UsageError(`--${option} ${out}: the folder ${folder} cannot be written`);
  }
}

/** The photo, decoded and checked against the processor's size limit, before any model loads. */
export async function loadDepthInput(path: string): Promise<RGBImage> {
  const image = await loadImage(path);
  checkDepthInputSize(image.width, image.height, path);
  return image;
}

export async function depthCommand(args: readonly string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }): Promise<void> {
  const v = new OptionValues(parseOptions(args, DEPTH_OPTIONS, 'depth'));
  if (v.flag('help')) {
    io.stdout.write(`${DEPTH_USAGE}\n`);
    return;
  }
  const input = v.positionals[0];
  if (!input || v.positionals.length > 1) throw new UsageError('depth takes exactly one input image');
  const out = v.string('out');
  if (!out) throw new UsageError('depth needs --out <file.png>');
  for (const name of ['model', 'revision', 'graph-cache']) {
    if (v.string(name) === '') throw new UsageError(`--${name} must not be empty`);
  }
  const device = parseDevice(v.string('device'));
  const graphCache = v.string('graph-cache');
  await checkOutputFile(out);
  const image = await loadDepthInput(input);

  const started = performance.now();
  const pipe = await loadDepthPipeline({
    model: v.string('model') ?? DEFAULT_DEPTH_MODEL,
    revision: v.string('revision'),
    offline: v.flag('offline'),
    device,
    graphCacheDir: graphCache === 'off' ? null : (graphCache ?? defaultGraphCacheDir(process.env)),
    warn: (m) => io.stderr.write(`${m}\n`),
  }).catch(offlineWording);
  try {
    const { depth } = await pipe.run(image);
    await depth.save(out);
  } finally {
    await pipe.release();
  }
  const seconds = (performance.now() - started) / 1000;
  io.stdout.write(`wrote ${out} (${image.width}×${image.height}, ${seconds.toFixed(1)} s)\n`);
}
