/**
 * Benchmark on real SD 2.1-base and SDXL-base dimensions with random weights (no download). Per pipeline, in a
 * process of its own: loads (each in a fresh process), UNet + ControlNet-XS step at batch 2 (classifier-free
 * guidance) with control on and off, the text encoder(s), VAE decode next to TAESD's (AutoencoderTiny, the
 * live-preview decoder), a whole 20-step generation at the pipeline's native size (512 px / 1024 px) in a process of
 * its own, and peak RSS; on CUDA the peak device memory (nvidia-smi). Each pipeline prints its table; the end prints
 * one summary row per pipeline (the README's GPU table) and one JSON line.
 *
 * The random checkpoints are written once into bench/out/ (git-ignored): `sd21-random` in bench/configs (the
 * published SD2.1-canny adapter's settings), `sdxl-random` in the bundled SDXL-base configs with an adapter
 * derived as diffusers' `ControlNetXSAdapter.from_unet(unet, size_ratio=0.1, …)` derives the published SDXL canny
 * adapter (bench/random-sdxl-checkpoint.ts says what is assumed). 15 GB on disk for SDXL.
 *
 *   npm run bench -- [--pipeline sd21|sdxl|both] [--sizes 64,128] [--repeats 2] [--steps 20] [--skip-full]
 *                    [--full-size PX] [--skip-loads] [--decode-only] [--out DIR] [--attention fused|plain]
 *                    [--threads N] [--device cpu|webgpu|cuda] [--dtype float32|float16]
 *                    [--optimization disabled|basic|extended|all] [--model DIR] [--offload] [--diffusers]
 *
 * `--sizes` are the step's latent sizes (default 32,64 for SD 2.1, 64,128 for SDXL; the summary reports the last);
 * the decodes run at the last one. `--skip-loads` skips the cold/warm load timings and the graph cache.
 * `--model DIR` benchmarks a pipeline folder (SD or SDXL, from its model_index.json) instead of a random
 * checkpoint. `--diffusers` also runs diffusers' own pipeline on the same checkpoint (bench/diffusers_bench.py:
 * torch fp16 on CUDA when `--dtype float16`) where `python3 -c "import diffusers, torch"` works, else says skipped.
 *
 * On a GPU machine, the README's GPU table: npm run bench -- --device cuda --dtype float16 [--diffusers]
 * (or --device webgpu). A smoke run of both paths on a small CPU machine (about a minute, 14 GB peak RSS for SDXL):
 *   npm run bench -- --sizes 8 --steps 1 --skip-full --skip-loads --repeats 1 --optimization basic
 * With --device webgpu --dtype float16 use --sizes 16: at 8² SD 2.1's fused UNet returns NaN on WebGPU fp16 (its
 * adapter's deepest GroupNorm groups, one channel each at 1×1, hold a single element; fp32 and 16² are finite).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RGBImage } from '../src/image/rgb-image.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';
import { catBatch } from '../src/pipelines/batch.js';
import { pipelineKind } from '../src/pipelines/load.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { Generator, randn } from '../src/random/index.js';
import type { RuntimeOptions } from '../src/runtime/session.js';
import type { Tensor } from '../src/tensor.js';
import { deviceName, sampleDeviceMemory, type DeviceMemorySampler } from './device-memory.js';
import { ensureRandomCheckpoint } from './random-checkpoint.js';
import { ensureRandomSdxlCheckpoint, SDXL_CHECKPOINT_ASSUMPTIONS } from './random-sdxl-checkpoint.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    pipeline: { type: 'string', default: 'both' },
    sizes: { type: 'string' }, // default: the pipeline's (PIPELINES)
    repeats: { type: 'string', default: '2' },
    steps: { type: 'string', default: '20' },
    'skip-full': { type: 'boolean', default: false },
    'full-size': { type: 'string' }, // pixels; default: the pipeline's native size
    'skip-loads': { type: 'boolean', default: false },
    out: { type: 'string' }, // default: bench/out/<pipeline>-random
    attention: { type: 'string' }, // default: the execution provider's (traceDefaultsFor)
    threads: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    optimization: { type: 'string' }, // onnxruntime's graph optimization level; default 'all'
    model: { type: 'string' }, // a pipeline folder instead of a random checkpoint
    diffusers: { type: 'boolean', default: false },
    'full-only': { type: 'boolean', default: false },
    'decode-only': { type: 'boolean', default: false },
    'load-only': { type: 'string' }, // child mode: 'unet', 'pipeline' (both without the graph cache) or 'warm'
    offload: { type: 'boolean', default: false },
  },
});

type PipelineName = 'sd21' | 'sdxl';
/** What differs between the two benchmarked pipelines. */
const PIPELINES: Readonly<Record<PipelineName, { label: string; pixels: number; sizes: string; latentMultiple: number; checkpoint: string; ensure: (out: string) => string; assumes: string }>> = {
  sd21: {
    label: 'SD 2.1 + adapter',
    pixels: 512,
    sizes: '32,64',
    latentMultiple: 8,
    checkpoint: 'sd21-random',
    ensure: ensureRandomCheckpoint,
    assumes: 'SD 2.1-base configs (bench/configs) with the published SD2.1-canny adapter’s settings (control channels 4/8/16/16, learned time embedding)',
  },
  sdxl: { label: 'SDXL + adapter', pixels: 1024, sizes: '64,128', latentMultiple: 4, checkpoint: 'sdxl-random', ensure: ensureRandomSdxlCheckpoint, assumes: SDXL_CHECKPOINT_ASSUMPTIONS },
};

/** One pipeline's figures: the README GPU table's row, plus peak RSS. */
interface SummaryRow {
  pipeline: PipelineName;
  model: string;
  device: string;
  gpu: string;
  dtype: string;
  pixels: number;
  stepLatent: number;
  stepSeconds: number;
  fullSeconds: number | null;
  fullPixels: number;
  fullSteps: number;
  /** The full generation's (its own process) where it ran, else the step measurements'; null where not measurable. */
  peakDeviceGB: number | null;
  /** The full generation's process where it ran, else the benchmark process's. */
  peakRssGB: number;
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

// Options are checked before anything is written or loaded.
const intOption = (name: string, v: string, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) fail(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
};
if (!['sd21', 'sdxl', 'both'].includes(values.pipeline)) fail(`--pipeline must be sd21, sdxl or both, got "${values.pipeline}"`);
if (values.dtype !== 'float32' && values.dtype !== 'float16') fail(`--dtype must be float32 or float16, got "${values.dtype}"`);
if (!['cpu', 'webgpu', 'cuda'].includes(values.device)) fail(`--device must be cpu, webgpu or cuda, got "${values.device}"`);
if (values.dtype === 'float16' && values.device === 'cpu') fail('--dtype float16 needs --device webgpu or cuda (the CPU provider has no fp16 convolutions)');
const optimization = values.optimization;
if (optimization !== undefined && optimization !== 'disabled' && optimization !== 'basic' && optimization !== 'extended' && optimization !== 'all') {
  fail(`--optimization must be disabled, basic, extended or all, got "${optimization}"`);
}
if (values.attention !== undefined && values.attention !== 'fused' && values.attention !== 'plain') fail(`--attention must be fused or plain, got "${values.attention}"`);
if (values.pipeline === 'both' && values.out !== undefined && values.model === undefined) fail('--out names one checkpoint folder: give --pipeline sd21 or sdxl with it');
if (values.model !== undefined && !existsSync(join(values.model, 'model_index.json'))) fail(`--model ${values.model}: no model_index.json there`);
const repeats = intOption('repeats', values.repeats, 1);
const steps = intOption('steps', values.steps, 1);

const peakRssGB = () => (process.resourceUsage().maxRSS * 1024) / 1e9;
const now = () => performance.now() / 1000;
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** This script again in a child process with `flags` (replacing any given value of theirs), streaming its stdout but its last line, the JSON it returns. */
async function child<T>(flags: Record<string, string | true>, o: { dropFlags?: string[] } = {}): Promise<T> {
  const drop = new Set([...Object.keys(flags), ...(o.dropFlags ?? [])].map((f) => `--${f}`));
  const args: string[] = [];
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.split('=')[0]!;
    if (!drop.has(name)) args.push(a);
    else if (!a.includes('=') && i + 1 < argv.length && !argv[i + 1]!.startsWith('--') && !isBoolean(name)) i++; // its value
  }
  for (const [k, v] of Object.entries(flags)) args.push(`--${k}`, ...(v === true ? [] : [v]));
  const proc = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  const lines = out.trimEnd().split('\n');
  const last = lines.pop() ?? '';
  if (lines.length) console.log(lines.join('\n'));
  if (code !== 0) throw new Error(`bench child (${args.join(' ')}) exited with ${code}`);
  return JSON.parse(last) as T;
}
const BOOLEAN_FLAGS = new Set(['--skip-full', '--skip-loads', '--diffusers', '--full-only', '--decode-only', '--offload']);
const isBoolean = (flag: string) => BOOLEAN_FLAGS.has(flag);

// ── both pipelines: one process each, then the summary ─────────────────────────────────────────────────────────
if (values.pipeline === 'both' && values.model === undefined && !values['load-only'] && !values['full-only']) {
  const summary: SummaryRow[] = [];
  const diffusers: DiffusersResult[] = [];
  const failed: { pipeline: PipelineName; error: string }[] = [];
  for (const name of ['sd21', 'sdxl'] as const) {
    console.log(`\n## ${PIPELINES[name].label}\n`);
    try {
      const r = await child<{ summary: SummaryRow; diffusers: DiffusersResult | null }>({ pipeline: name });
      summary.push(r.summary);
      if (r.diffusers) diffusers.push(r.diffusers);
    } catch (e) {
      // one pipeline failing (its error is above, on stderr) still leaves the other's row
      failed.push({ pipeline: name, error: (e as Error).message });
    }
  }
  printSummary(summary, diffusers);
  for (const f of failed) console.log(`${PIPELINES[f.pipeline].label}: failed — ${f.error}`);
  console.log(JSON.stringify({ date: new Date().toISOString(), summary, diffusers, failed }));
  process.exit(failed.length ? 1 : 0);
}

// ── one pipeline ───────────────────────────────────────────────────────────────────────────────────────────────
const name: PipelineName = values.model !== undefined ? (pipelineKind(values.model) === 'sdxl' ? 'sdxl' : 'sd21') : values.pipeline === 'sdxl' ? 'sdxl' : 'sd21';
const spec = PIPELINES[name];
const sizes = (values.sizes ?? spec.sizes).split(',').map((s) => intOption('sizes', s, 1));
const fullPixels = values['full-size'] !== undefined ? intOption('full-size', values['full-size'], 8) : spec.pixels;
// the fused UNet halves the latents (levels − 1) times: 8 | size for SD 2.1's four levels, 4 | size for SDXL's three
for (const [what, latent] of [...sizes.map((s) => ['sizes', s] as const), ['full-size', fullPixels / 8] as const]) {
  if (values.model === undefined && latent % spec.latentMultiple !== 0) {
    fail(`--${what}: ${spec.label} needs latent sizes divisible by ${spec.latentMultiple}${what === 'full-size' ? ` (pixels by ${8 * spec.latentMultiple})` : ''}, got ${what === 'full-size' ? fullPixels : latent}`);
  }
}
const out = values.out ?? join(HERE, 'out', spec.checkpoint);
const dir = values.model ?? spec.ensure(out);
const dtype: 'float32' | 'float16' = values.dtype === 'float16' ? 'float16' : 'float32';
const runtime: RuntimeOptions = {
  ...(values.threads ? { intraOpNumThreads: intOption('threads', values.threads, 1) } : {}),
  ...(values.device !== 'cpu' ? { executionProviders: [values.device, 'cpu'] } : {}),
  ...(optimization !== undefined ? { graphOptimizationLevel: optimization } : {}),
};
const load = { runtime, dtype, ...(values.attention ? { trace: { attention: values.attention as 'fused' | 'plain' } } : {}), warn: () => {} };
const rows: { what: string; seconds: number }[] = [];
const record = (what: string, seconds: number) => {
  rows.push({ what, seconds });
  console.error(`${what}: ${seconds.toFixed(2)} s (peak RSS so far ${peakRssGB().toFixed(2)} GB)`);
};
async function time(what: string, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up: the first run grows onnxruntime's arenas
  const t: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = now();
    await fn();
    t.push(now() - t0);
  }
  record(what, median(t));
  return median(t);
}

type Pipe = StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline;
async function loadPipeline(graphCacheDir?: string, o: { prepare: boolean } = { prepare: true }): Promise<Pipe> {
  const opts = { ...load, runtime: { ...runtime, ...(graphCacheDir ? { graphCacheDir } : {}) } };
  const p = name === 'sdxl' ? await StableDiffusionXLControlNetXSPipeline.fromPretrained(dir, opts) : await StableDiffusionControlNetXSPipeline.fromPretrained(dir, opts);
  if (o.prepare) await Promise.all([p.unet.prepare(), ...textEncoders(p).map((m) => m.prepare()), p.vae.prepare('decoder')]);
  return p;
}
const textEncoders = (p: Pipe) => (p instanceof StableDiffusionXLControlNetXSPipeline ? [p.textEncoder, p.textEncoder2] : [p.textEncoder]);
async function release(p: Pipe): Promise<void> {
  await Promise.all([p.unet.release(), ...textEncoders(p).map((m) => m.release()), p.vae.release()]);
}

/** The prompt states of one CFG step (negative '' then 'a photo of a bird'), through the pipeline's own encoders; SDXL's pooled ones too. */
async function encode(p: Pipe): Promise<{ encoderHiddenStates: Tensor<'float32'>; textEmbeds: Tensor<'float32'> | null }> {
  if (p instanceof StableDiffusionXLControlNetXSPipeline) {
    const e = await p.encodePrompt({ prompt: 'a photo of a bird', negativePrompt: '' }, { numImagesPerPrompt: 1, doClassifierFreeGuidance: true });
    // [2, 77, 2048] and [2, 1280]
    return { encoderHiddenStates: catBatch([e.negativePromptEmbeds!, e.promptEmbeds]), textEmbeds: catBatch([e.negativePooledPromptEmbeds!, e.pooledPromptEmbeds]) };
  }
  const ids = p.tokenizer.call(['', 'a photo of a bird'], { padding: 'max_length', maxLength: 77, truncation: true }).inputIds;
  return { encoderHiddenStates: (await p.textEncoder.forward(ids)).lastHiddenState, textEmbeds: null };
}

/** SDXL's micro-conditioning for a square `pixels` image, once per CFG row: [2, 6]. */
function timeIds(p: StableDiffusionXLControlNetXSPipeline, pixels: number, textEmbeds: Tensor<'float32'>): Tensor<'float32'> {
  const once = p.getAddTimeIds([pixels, pixels], [0, 0], [pixels, pixels], textEmbeds.dims[1]!);
  return catBatch([once, once]);
}

/** The VAE's decode of `latent`² latents and, next to it, TAESD's (random weights in the real TAESD config) of the same latents. */
async function timeDecoders(vae: AutoencoderKL | AutoencoderTiny, latent: number): Promise<void> {
  const latents = randn([1, 4, latent, latent], { generator: new Generator().manualSeed(2) });
  const px = latent * 8;
  await time(`VAE decode ${px}×${px}`, () => vae.decode(latents));
  if (!existsSync(join(dir, 'taesd'))) return; // a --model folder without one
  const taesd = await AutoencoderTiny.fromPretrained(join(dir, 'taesd'), load);
  await time(`TAESD (AutoencoderTiny) decode ${px}×${px}`, () => taesd.decode(latents));
  await taesd.release();
}

const lastSize = sizes[sizes.length - 1]!;
if (values['decode-only']) {
  await timeDecoders(await AutoencoderKL.fromPretrained(join(dir, 'vae'), load), lastSize);
  console.log('\n| measurement | value |\n|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(3)} s |`);
  console.log(JSON.stringify({ date: new Date().toISOString(), pipeline: name, rows, peakRssGB: peakRssGB() }));
  process.exit(0);
}

const graphs = values['skip-loads'] ? undefined : join(out, '..', name === 'sd21' ? 'graphs' : `graphs-${name}`);
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

const control = new RGBImage(fullPixels, fullPixels, new Uint8Array(fullPixels * fullPixels * 3).map((_, i) => (i * 7) & 255));
interface FullResult {
  seconds: number;
  peakRssGB: number;
  peakDeviceGB: number | null;
}
if (values['full-only']) {
  // A process of its own, so its peak RSS is the generation's (warm load + the steps + decode).
  // with offload, sessions open when first used (and close after their stage)
  const device = await sampleDeviceMemory(values.device);
  const p = await loadPipeline(graphs, { prepare: !values.offload });
  p.offload.enabled = values.offload;
  const t = now();
  await p.run({ prompt: 'a photo of a bird', image: control, numInferenceSteps: steps, generator: new Generator().manualSeed(0), outputType: 'np' });
  const seconds = now() - t;
  const result: FullResult = { seconds, peakRssGB: peakRssGB(), peakDeviceGB: await device.stop() };
  console.log(JSON.stringify(result));
  process.exit(0);
}

console.log(`random checkpoint: ${values.model ? `(--model) ${dir}` : `${dir}: ${spec.assumes}`}`);
// Loads: cold (no graph cache, each in a fresh process), then a run that fills a fresh graph cache, then a warm load from it.
if (!values['skip-loads'] && graphs) {
  const loadTime = async (what: string) => (await child<{ seconds: number }>({ 'load-only': what, pipeline: name })).seconds;
  record('load UNet + adapter, cold (files → ready session, own process)', await loadTime('unet'));
  record('load pipeline, cold (files → ready sessions, own process)', await loadTime('pipeline'));
  rmSync(graphs, { recursive: true, force: true });
  const t0 = now();
  await release(await loadPipeline(graphs));
  record('load pipeline, cold, saving the graph cache', now() - t0);
  record('load pipeline, warm (graph cache, own process)', await loadTime('warm'));
}
const stepDevice: DeviceMemorySampler = await sampleDeviceMemory(values.device);
const pipe = await loadPipeline(graphs);

const ranOn = await pipe.unet.executionProvider();
if (ranOn !== values.device) console.error(`asked for ${values.device}, running on ${ranOn}`);
await time(`text encoder${name === 'sdxl' ? 's (both)' : ''}, 2 prompts`, () => encode(pipe));
const text = await encode(pipe);

let stepSeconds = NaN;
for (const size of sizes) {
  const g = new Generator().manualSeed(1);
  const px = size * pipe.vaeScaleFactor;
  const args: UNetControlNetXSForwardArgs = {
    sample: randn([2, 4, size, size], { generator: g }),
    timestep: 500,
    encoderHiddenStates: text.encoderHiddenStates,
    controlnetCond: randn([2, 3, px, px], { generator: g }),
    ...(pipe instanceof StableDiffusionXLControlNetXSPipeline && text.textEmbeds ? { addedCondKwargs: { textEmbeds: text.textEmbeds, timeIds: timeIds(pipe, px, text.textEmbeds) } } : {}),
  };
  for (const applyControl of [true, false]) {
    const s = await time(`UNet+CNXS step b2 ${size}×${size} control ${applyControl ? 'on' : 'off'}`, () => pipe.unet.forward({ ...args, applyControl }));
    if (applyControl && size === lastSize) stepSeconds = s;
  }
}
await timeDecoders(pipe.vae, lastSize);

const peak = peakRssGB();
const stepDeviceGB = await stepDevice.stop();
const trace = pipe.unet.traceOptions([ranOn]);
await release(pipe);
let full: FullResult | null = null;
if (!values['skip-full']) {
  full = await child<FullResult>({ 'full-only': true, pipeline: name }, { dropFlags: ['skip-full'] });
  record(`full generation ${fullPixels}×${fullPixels}, ${plural(steps, 'step')}, CFG (own process${values.offload ? ', model offload' : ''})`, full.seconds);
}
const diffusers = values.diffusers ? await runDiffusers() : null;

const measured = (gb: number | null) => (gb === null ? 'not measurable on this device' : `${gb.toFixed(2)} GB`);
console.log('\n| measurement | value |\n|---|---|');
for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(2)} s |`);
console.log(`| peak RSS, this benchmark process (${graphs ? 'three loads, ' : ''}every measurement) | ${peak.toFixed(2)} GB |`);
console.log(`| peak device memory, this benchmark process (load, steps, decodes) | ${measured(stepDeviceGB)} |`);
if (full) console.log(`| peak RSS, full ${fullPixels} px generation (own process, ${graphs ? 'warm ' : ''}load${values.offload ? ', model offload' : ''}) | ${full.peakRssGB.toFixed(2)} GB |`);
if (full) console.log(`| peak device memory, full ${fullPixels} px generation (own process) | ${measured(full.peakDeviceGB)} |`);

const summary: SummaryRow = {
  pipeline: name,
  model: values.model ? `${values.model}` : spec.label,
  device: ranOn,
  gpu: await deviceName(ranOn),
  dtype,
  pixels: spec.pixels,
  stepLatent: lastSize,
  stepSeconds,
  fullSeconds: full?.seconds ?? null,
  fullPixels,
  fullSteps: steps,
  peakDeviceGB: full ? full.peakDeviceGB : stepDeviceGB,
  peakRssGB: full ? full.peakRssGB : peak,
};
if (values.pipeline !== 'both' || values.model !== undefined) printSummary([summary], diffusers ? [diffusers] : []);
console.log(
  JSON.stringify({ date: new Date().toISOString(), pipeline: name, device: ranOn, dtype, trace, rows, peakRssGB: peak, fullGenerationPeakRssGB: full?.peakRssGB ?? null, fullGenerationPeakDeviceGB: full?.peakDeviceGB ?? null, summary, diffusers }),
);

// ── diffusers on the same checkpoint ───────────────────────────────────────────────────────────────────────────
interface DiffusersResult {
  pipeline: PipelineName;
  /** Why it did not run, or null. */
  skipped: string | null;
  device?: string;
  dtype?: string;
  versions?: string;
  stepSeconds?: number;
  fullSeconds?: number | null;
  /** torch.cuda.max_memory_allocated (what torch's allocator handed out). */
  torchPeakGB?: number | null;
  /** nvidia-smi over the whole Python process, as for our rows. */
  peakDeviceGB?: number | null;
  peakRssGB?: number;
}

/**
 * bench/diffusers_bench.py in python3 on this checkpoint: the same step (batch 2, control on, the last size) and
 * full generation, in torch fp16 on CUDA for `--dtype float16` (diffusers has no WebGPU: a webgpu run compares with
 * CUDA on the same GPU where torch sees one), fp32 on the CPU for a CPU run.
 */
async function runDiffusers(): Promise<DiffusersResult> {
  const probe = spawnSync('python3', ['-c', 'import diffusers, torch; print(diffusers.__version__, torch.__version__, torch.cuda.is_available())'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    const why = (probe.stderr || String(probe.error ?? '')).trim().split('\n').pop() ?? 'python3 failed';
    return { pipeline: name, skipped: `python3 cannot import diffusers and torch: ${why}` };
  }
  const cuda = probe.stdout.trim().endsWith('True');
  const torchDevice = values.device === 'cpu' ? 'cpu' : cuda ? 'cuda' : null;
  if (torchDevice === null) {
    return { pipeline: name, skipped: 'torch sees no CUDA device' };
  }
  const args = [
    join(HERE, 'diffusers_bench.py'),
    ...['--model', dir, '--pipeline', name, '--device', torchDevice, '--dtype', dtype, '--size', String(lastSize)],
    ...['--steps', String(steps), '--pixels', String(fullPixels), '--repeats', String(repeats), ...(values['skip-full'] ? ['--skip-full'] : [])],
  ];
  const device = await sampleDeviceMemory(torchDevice);
  const proc = spawn('python3', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  const peakDeviceGB = await device.stop();
  if (code !== 0) {
    return { pipeline: name, skipped: `bench/diffusers_bench.py exited with ${code} (its stderr is above)` };
  }
  const r = JSON.parse(text.trim().split('\n').pop()!) as Omit<DiffusersResult, 'pipeline' | 'skipped' | 'peakDeviceGB'>;
  return { pipeline: name, skipped: null, ...r, peakDeviceGB };
}

function printSummary(summary: readonly SummaryRow[], diffusers: readonly DiffusersResult[]): void {
  const gb = (v: number | null | undefined) => (v === null || v === undefined ? 'not measurable' : `${v.toFixed(2)} GB`);
  const s = (v: number | null | undefined) => (v === null || v === undefined ? 'not run' : `${v.toFixed(2)} s`);
  console.log('\n| GPU | model | size | dtype | step (CFG, control on) | full generation | peak device memory | peak RSS |\n|---|---|---|---|---|---|---|---|');
  for (const r of summary) {
    const latent = `${r.stepLatent}² latents${r.stepLatent * 8 === r.pixels ? '' : ` (native ${r.pixels / 8}²)`}`;
    console.log(
      `| ${r.gpu} | ${r.model} | ${r.pixels} px | ${r.dtype} | ${s(r.stepSeconds)} (${latent}) | ${r.fullSeconds === null ? 'not run' : `${s(r.fullSeconds)} (${r.fullPixels} px, ${plural(r.fullSteps, 'step')})`} | ${gb(r.peakDeviceGB)} | ${r.peakRssGB.toFixed(2)} GB |`,
    );
    const d = diffusers.find((x) => x.pipeline === r.pipeline);
    if (d && d.skipped === null) {
      console.log(
        `| ${r.gpu} | ${r.model}, diffusers ${d.versions ?? ''} (${d.device}) | ${r.pixels} px | ${d.dtype} | ${s(d.stepSeconds)} | ${s(d.fullSeconds)} | ${gb(d.peakDeviceGB)} (torch allocator ${gb(d.torchPeakGB)}) | ${d.peakRssGB?.toFixed(2) ?? '?'} GB |`,
      );
    }
  }
  for (const d of diffusers) if (d.skipped !== null) console.log(`diffusers (${PIPELINES[d.pipeline].label}): skipped — ${d.skipped}`);
}
