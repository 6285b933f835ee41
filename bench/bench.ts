/**
 * Benchmark on real SD 2.1-base dimensions with random weights (no download): loads (each in a fresh process), UNet +
 * ControlNet-XS step at batch 2 (classifier-free guidance) for 32² and 64² latents with control on
 * and off, text encoder, VAE decode at 512 px next to TAESD's (AutoencoderTiny, the live-preview
 * decoder), a whole 20-step 512 px generation, and peak RSS. Prints a table and one JSON line.
 * `--decode-only` measures just the two decodes. `--dtype float16` runs every model in half precision (GPU
 * providers only); on CUDA the table adds the peak device memory (nvidia-smi). `--model DIR` benchmarks a
 * pipeline folder instead of the random SD 2.1 checkpoint (e.g. test/fixtures/tiny-sd-cnxs on llvmpipe).
 *
 *   npm run bench -- [--sizes 32,64] [--repeats 2] [--steps 20] [--skip-full] [--decode-only] [--out bench/out/sd21-random]
 *                    [--attention fused|plain] [--threads N] [--device cpu|webgpu|cuda] [--dtype float32|float16]
 *                    [--model DIR] [--offload]
 *
 * On a GPU machine, the README's GPU table: npm run bench -- --device cuda --dtype float16 (or --device webgpu).
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RGBImage } from '../src/image/rgb-image.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { Generator, randn } from '../src/random/index.js';
import type { RuntimeOptions } from '../src/runtime/session.js';
import { existsSync } from 'node:fs';
import { sampleDeviceMemory } from './device-memory.js';
import { ensureRandomCheckpoint } from './random-checkpoint.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '32,64' },
    repeats: { type: 'string', default: '2' },
    steps: { type: 'string', default: '20' },
    'skip-full': { type: 'boolean', default: false },
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'out', 'sd21-random') },
    attention: { type: 'string' }, // default: the execution provider's (traceDefaultsFor)
    threads: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    model: { type: 'string' }, // a pipeline folder instead of the random SD 2.1 checkpoint
    'full-only': { type: 'boolean', default: false },
    'decode-only': { type: 'boolean', default: false },
    'load-only': { type: 'string' }, // child mode: 'unet', 'pipeline' (both without the graph cache) or 'warm'
    offload: { type: 'boolean', default: false },
  },
});

const peakRssGB = () => (process.resourceUsage().maxRSS * 1024) / 1e9;
const now = () => performance.now() / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: { what: string; seconds: number }[] = [];
const record = (what: string, seconds: number) => {
  rows.push({ what, seconds });
  console.error(`${what}: ${seconds.toFixed(2)} s (peak RSS so far ${peakRssGB().toFixed(2)} GB)`);
};
async function time(what: string, repeats: number, fn: () => Promise<unknown>): Promise<void> {
  await fn(); // warm-up: the first run grows onnxruntime's arenas
  const t: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = now();
    await fn();
    t.push(now() - t0);
  }
  record(what, median(t));
}

const dir = values.model ?? ensureRandomCheckpoint(values.out);
if (values.dtype !== 'float32' && values.dtype !== 'float16') throw new Error(`--dtype must be float32 or float16, got ${values.dtype}`);
const dtype: 'float32' | 'float16' = values.dtype === 'float16' ? 'float16' : 'float32';
const runtime: RuntimeOptions = {
  ...(values.threads ? { intraOpNumThreads: Number(values.threads) } : {}),
  ...(values.device !== 'cpu' ? { executionProviders: [values.device, 'cpu'] } : {}),
};
const load = { runtime, dtype, ...(values.attention ? { trace: { attention: values.attention as 'fused' | 'plain' } } : {}), warn: () => {} };

async function loadPipeline(graphCacheDir?: string, o: { prepare: boolean } = { prepare: true }): Promise<StableDiffusionControlNetXSPipeline> {
  const p = await StableDiffusionControlNetXSPipeline.fromPretrained(dir, { ...load, runtime: { ...runtime, ...(graphCacheDir ? { graphCacheDir } : {}) } });
  if (o.prepare) await Promise.all([p.unet.prepare(), p.textEncoder.prepare(), p.vae.prepare('decoder')]);
  return p;
}
async function release(p: StableDiffusionControlNetXSPipeline): Promise<void> {
  await Promise.all([p.unet.release(), p.textEncoder.release(), p.vae.release()]);
}

const control = new RGBImage(512, 512, new Uint8Array(512 * 512 * 3).map((_, i) => (i * 7) & 255));
const fullRun = (p: StableDiffusionControlNetXSPipeline) =>
  p.run({ prompt: 'a photo of a bird', image: control, numInferenceSteps: Number(values.steps), generator: new Generator().manualSeed(0), outputType: 'np' });

/** The VAE's decode of 512 px and, next to it, TAESD's (random weights in the real TAESD config) of the same latents. */
async function timeDecoders(vae: AutoencoderKL | AutoencoderTiny, repeats: number): Promise<void> {
  const latents = randn([1, 4, 64, 64], { generator: new Generator().manualSeed(2) });
  await time('VAE decode 512×512', repeats, () => vae.decode(latents));
  if (!existsSync(join(dir, 'taesd'))) return; // a --model folder without one
  const taesd = await AutoencoderTiny.fromPretrained(join(dir, 'taesd'), load);
  await time('TAESD (AutoencoderTiny) decode 512×512', repeats, () => taesd.decode(latents));
  await taesd.release();
}

if (values['decode-only']) {
  await timeDecoders(await AutoencoderKL.fromPretrained(join(dir, 'vae'), load), Number(values.repeats));
  console.log('\n| measurement | value |\n|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(3)} s |`);
  console.log(JSON.stringify({ date: new Date().toISOString(), rows, peakRssGB: peakRssGB() }));
  process.exit(0);
}

const graphs = join(values.out, '..', 'graphs');
if (values['load-only']) {
  // A process of its own: the first load in a process pays for all its fresh memory (see docs/onnxruntime-measurements.md).
  const t = now();
  if (values['load-only'] === 'unet') {
    const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'unet'), load);
    await UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(join(dir, 'controlnet'), load), unet.runtimeSettings).prepare();
  } else {
    await loadPipeline(values['load-only'] === 'warm' ? graphs : undefined);
  }
  console.log(JSON.stringify({ seconds: now() - t }));
  process.exit(0);
}

/** Run this script again in a child process with `flags`, and parse the JSON line it prints last. */
function child<T>(flags: string[]): T {
  const args = process.argv.slice(2).filter((a) => a !== '--skip-full');
  const out = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args, ...flags], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.stdout.trim().split('\n').pop()!) as T;
}

if (values['full-only']) {
  // A process of its own, so its peak RSS is the generation's (warm load + 20 steps + decode).
  // with offload, sessions open when first used (and close after their stage)
  const device = await sampleDeviceMemory(values.device);
  const p = await loadPipeline(graphs, { prepare: !values.offload });
  p.offload.enabled = values.offload;
  const t = now();
  await fullRun(p);
  const seconds = now() - t;
  console.log(JSON.stringify({ seconds, peakRssGB: peakRssGB(), peakDeviceGB: await device.stop() }));
  process.exit(0);
}

// Loads: cold (no graph cache, each in a fresh process), then a run that fills a fresh graph cache, then a warm load from it.
const loadTime = (what: string) => child<{ seconds: number }>(['--load-only', what]).seconds;
record('load UNet + adapter, cold (files → ready session, own process)', loadTime('unet'));
record('load pipeline, cold (files → ready sessions, own process)', loadTime('pipeline'));
rmSync(graphs, { recursive: true, force: true });
const t0 = now();
await release(await loadPipeline(graphs));
record('load pipeline, cold, saving the graph cache', now() - t0);
record('load pipeline, warm (graph cache, own process)', loadTime('warm'));
const pipe = await loadPipeline(graphs);

const ranOn = await pipe.unet.executionProvider();
if (ranOn !== values.device) console.error(`asked for ${values.device}, running on ${ranOn}`);
const repeats = Number(values.repeats);
const ids = pipe.tokenizer.call(['a photo of a bird', ''], { padding: 'max_length', maxLength: 77, truncation: true }).inputIds;
await time('text encoder, 2 prompts', repeats, () => pipe.textEncoder.forward(ids));
const { lastHiddenState: context } = await pipe.textEncoder.forward(ids);

for (const size of values.sizes.split(',').map(Number)) {
  const g = new Generator().manualSeed(1);
  const args = {
    sample: randn([2, 4, size, size], { generator: g }),
    timestep: 500,
    encoderHiddenStates: context,
    controlnetCond: randn([2, 3, size * pipe.vaeScaleFactor, size * pipe.vaeScaleFactor], { generator: g }),
  };
  for (const applyControl of [true, false]) {
    await time(`UNet+CNXS step b2 ${size}×${size} control ${applyControl ? 'on' : 'off'}`, repeats, () => pipe.unet.forward({ ...args, applyControl }));
  }
}
await timeDecoders(pipe.vae, repeats);

const peak = peakRssGB();
await release(pipe);
let full: { seconds: number; peakRssGB: number; peakDeviceGB: number | null } | null = null;
if (!values['skip-full']) {
  full = child<{ seconds: number; peakRssGB: number; peakDeviceGB: number | null }>(['--full-only']);
  record(`full generation 512×512, ${values.steps} steps, CFG (own process${values.offload ? ', model offload' : ''})`, full.seconds);
}

console.log('\n| measurement | value |\n|---|---|');
for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(2)} s |`);
console.log(`| peak RSS, this benchmark process (three loads, every measurement) | ${peak.toFixed(2)} GB |`);
if (full) console.log(`| peak RSS, full 512 px generation (own process, warm load${values.offload ? ', model offload' : ''}) | ${full.peakRssGB.toFixed(2)} GB |`);
if (full) console.log(`| peak device memory, full 512 px generation (own process) | ${full.peakDeviceGB === null ? 'not measurable on this device' : `${full.peakDeviceGB.toFixed(2)} GB`} |`);
console.log(
  JSON.stringify({ date: new Date().toISOString(), device: ranOn, dtype, trace: pipe.unet.traceOptions([ranOn]), rows, peakRssGB: peak, fullGenerationPeakRssGB: full?.peakRssGB ?? null, fullGenerationPeakDeviceGB: full?.peakDeviceGB ?? null }),
);
