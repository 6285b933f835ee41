/**
 * What a LoRA costs on the random SD 2.1-base checkpoint (issue 14): a random rank-64 LoRA in diffusers/PEFT
 * format on every attention projection (to_q, to_k, to_v, to_out.0 of attn1 and attn2 in every transformer
 * block), written once into bench/out/. Three runs, each in a process of its own (two open sessions in one
 * process slow each other), UNet + ControlNet-XS, batch 2, control on:
 *   base  — no LoRA;
 *   lora  — the LoRA loaded (TracedModel.setLoraAdapter, what pipe.loadLoraWeights does per model) at scale 1;
 *   fused — the same, merged into the weights (TracedModel.fuseLoraAdapters, what pipe.fuseLora does);
 *   late  — the LoRA loaded into a model whose session is open and has run (a LoRA loaded into a running
 *           pipeline): its session open is the re-open after the load, its peak RSS spans both sessions.
 * For each: LoRA load time (read + map + attach), session open time, median step time after a warm-up and the
 * process's peak RSS. Prints figures; not a test.
 *
 *   node --import tsx bench/lora.ts [--size 32] [--steps 8] [--rounds 1] [--rank 64] [--out bench/out/sd21-random]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loraModelLayers, readLoraFile } from '../src/models/lora-file.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors, type TensorToWrite } from '../src/weights/write-safetensors.js';
import { ensureRandomCheckpoint, stepInputs } from './random-checkpoint.js';
import { tensorStream } from './xorshift.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '32' },
    steps: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '1' },
    rank: { type: 'string', default: '64' },
    out: { type: 'string', default: join(HERE, 'out', 'sd21-random') },
    child: { type: 'string' }, // 'base' | 'lora' | 'fused': measure one session in this process
  },
});

type Mode = 'base' | 'lora' | 'fused' | 'late';
const MODES: readonly Mode[] = ['base', 'lora', 'fused', 'late'];
interface Run {
  mode: Mode;
  /** Reading the LoRA file and attaching it to the model (0 for base). */
  loraLoad: number;
  /** The onnxruntime session's open (trace + weights + optimisation); for late, the re-open after the load. */
  open: number;
  steps: number[];
  peakRssGB: number;
  /** A few output values, to check that lora and fused agree and differ from base. */
  probe: number[];
}
const now = () => performance.now() / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rank = Number(values.rank);
const dir = ensureRandomCheckpoint(values.out);
const loraPath = join(HERE, 'out', `lora-sd21-attn-r${rank}.safetensors`);

/** N(0, 1) · std via Box–Muller on xorshift32: fast, seeded, distinct per tensor. */
function gaussianBytes(n: number, std: number, seed: number): Uint8Array {
  const out = new Float32Array(n);
  const next = tensorStream(seed);
  const uniform = () => (next() + 1) / 2 ** 32; // (0, 1]
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())), t = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(t) * std;
    if (i + 1 < n) out[i + 1] = r * Math.sin(t) * std;
  }
  return new Uint8Array(out.buffer);
}

/** The LoRA file, from the bench UNet's header: `unet.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r]. */
function ensureLora(): { path: string; modules: number } {
  const unet = loadSafetensorsSync(join(dir, 'unet', 'diffusion_pytorch_model.safetensors'));
  const re = /transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$/;
  const targets = unet.keys().filter((k) => re.test(k));
  if (existsSync(loraPath)) return { path: loraPath, modules: targets.length };
  const tensors: TensorToWrite[] = [];
  targets.forEach((key, i) => {
    const [out, inp] = unet.info(key).shape as [number, number];
    const module = key.slice(0, -'.weight'.length);
    // down ~ N(0, 1/in); up small, so the branch changes each projection's output by ~1%.
    tensors.push({ name: `unet.${module}.lora_A.weight`, dtype: 'F32', shape: [rank, inp], bytes: () => gaussianBytes(rank * inp, 1 / Math.sqrt(inp), 2 * i + 1) });
    tensors.push({ name: `unet.${module}.lora_B.weight`, dtype: 'F32', shape: [out, rank], bytes: () => gaussianBytes(out * rank, 0.01 / Math.sqrt(rank), 2 * i + 2) });
  });
  writeSafetensors(loraPath, tensors);
  return { path: loraPath, modules: targets.length };
}

if (values.child) {
  const mode = values.child as Mode;
  if (!MODES.includes(mode)) throw new Error(`--child ${MODES.join('|')}, got ${values.child}`);
  const size = Number(values.size);
  const args = stepInputs(size);
  const m = await UNetControlNetXSModel.fromUnet(
    await UNet2DConditionModel.fromPretrained(join(dir, 'unet')),
    await ControlNetXSAdapter.fromPretrained(join(dir, 'controlnet')),
  );
  if (mode === 'late') {
    await m.prepare();
    await m.forward(args); // the base model has run: its session and arenas are in memory
  }
  let loraLoad = 0;
  if (mode !== 'base') {
    const t = now();
    // What PipelineLora.load does for the UNet: parse, map onto the fused model's keys, attach (scale 1 here).
    const layers = loraModelLayers(readLoraFile(loraPath, { layersPerBlock: 2 }), 'unet', { fused: true });
    m.setLoraAdapter('bench', layers, 1);
    if (mode === 'fused') m.fuseLoraAdapters(new Map([['bench', 1]]));
    loraLoad = now() - t;
  }
  const t = now();
  await m.prepare();
  const open = now() - t;
  const first = await m.forward(args); // warm-up: grows onnxruntime's arenas
  const d = first.sample.data;
  const probe = [0, 1, Math.floor(d.length / 2), d.length - 1].map((i) => d[i]!);
  const steps: number[] = [];
  for (let r = 0; r < Number(values.steps); r++) {
    const t0 = now();
    await m.forward(args);
    steps.push(now() - t0);
  }
  const run: Run = { mode, loraLoad, open, steps, peakRssGB: (process.resourceUsage().maxRSS * 1024) / 1e9, probe };
  console.log(JSON.stringify(run));
  process.exit(0);
}

const lora = ensureLora();
console.error(`LoRA: ${lora.path}, rank ${rank}, ${lora.modules} attention projections`);
const runs: Record<Mode, Run[]> = { base: [], lora: [], fused: [], late: [] };
for (let r = 0; r < Number(values.rounds); r++) {
  for (const mode of r % 2 === 0 ? MODES : [...MODES].reverse()) {
    const out = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2), '--child', mode], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (out.status !== 0) throw new Error(`${mode}: child exited with ${out.status}`);
    const run = JSON.parse(out.stdout.trim().split('\n').pop()!) as Run;
    runs[mode].push(run);
    console.error(`${mode}: LoRA load ${run.loraLoad.toFixed(2)} s, open ${run.open.toFixed(1)} s, steps ${run.steps.map((s) => s.toFixed(2)).join(' ')} s, peak RSS ${run.peakRssGB.toFixed(2)} GB, probe ${run.probe.map((p) => p.toFixed(5)).join(' ')}`);
  }
}
const step = (w: Mode) => median(runs[w].flatMap((r) => r.steps));
// The fastest step too: on a shared machine another process's burst inflates whole runs' medians, never the minimum.
const fastest = (w: Mode) => Math.min(...runs[w].flatMap((r) => r.steps));
const pick = (w: Mode, f: (r: Run) => number) => median(runs[w].map(f));
const maxDiff = (a: Mode, b: Mode) => Math.max(...runs[a][0]!.probe.map((p, i) => Math.abs(p - runs[b][0]!.probe[i]!)));
console.log(`\nLoRA rank ${rank} on ${lora.modules} attention projections; UNet + ControlNet-XS step, batch 2, ${values.size}×${values.size} latents, control on (median of ${Number(values.rounds) * Number(values.steps)} steps, ${values.rounds} process(es) each)\n`);
console.log('| | LoRA load | session open | step (median) | step (fastest) | peak RSS |\n|---|---|---|---|---|---|');
for (const w of MODES) {
  const ratio = w === 'base' ? '' : ` (${(step(w) / step('base')).toFixed(3)}×)`;
  const ratioMin = w === 'base' ? '' : ` (${(fastest(w) / fastest('base')).toFixed(3)}×)`;
  const rss = w === 'base' ? '' : ` (${(((pick(w, (r) => r.peakRssGB) / pick('base', (r) => r.peakRssGB)) - 1) * 100).toFixed(1)}%)`;
  console.log(`| ${w} | ${pick(w, (r) => r.loraLoad).toFixed(2)} s | ${pick(w, (r) => r.open).toFixed(1)} s | ${step(w).toFixed(3)} s${ratio} | ${fastest(w).toFixed(3)} s${ratioMin} | ${pick(w, (r) => r.peakRssGB).toFixed(2)} GB${rss} |`);
}
console.log(`\noutput probe max |diff|: lora vs base ${maxDiff('lora', 'base').toExponential(2)}, lora vs fused ${maxDiff('lora', 'fused').toExponential(2)}`);
console.log(JSON.stringify({ date: new Date().toISOString(), rank, size: Number(values.size), runs }));
