/**
 * What FreeU and fused QKV projections cost or save on the random SD 2.1-base checkpoint: the UNet +
 * ControlNet-XS step (batch 2, control on) with the switch off and on, the session's open time and the
 * process's peak RSS. Each measurement runs in a process of its own (two open sessions in one process slow
 * each other: an idle session's threads spin), alternating off / on / on / off … so machine drift hits both.
 *
 *   node --import tsx bench/switches.ts [--switch fuse-qkv|freeu] [--size 32] [--steps 5] [--rounds 2] [--out bench/out/sd21-random]
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { ensureRandomCheckpoint, stepInputs } from './random-checkpoint.js';

const { values } = parseArgs({
  options: {
    switch: { type: 'string', default: 'fuse-qkv' },
    size: { type: 'string', default: '32' },
    steps: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'out', 'sd21-random') },
    child: { type: 'string' }, // 'off' or 'on': measure one session in this process
  },
});
if (values.switch !== 'fuse-qkv' && values.switch !== 'freeu') throw new Error(`--switch fuse-qkv|freeu, got ${values.switch}`);

interface Run {
  open: number;
  steps: number[];
  peakRssGB: number;
}
const now = () => performance.now() / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const dir = ensureRandomCheckpoint(values.out);

if (values.child) {
  const size = Number(values.size);
  const args = stepInputs(size);
  const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'unet'));
  const m = UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(join(dir, 'controlnet')));
  if (values.child === 'on' && values.switch === 'fuse-qkv') m.fuseQkvProjections();
  if (values.child === 'on' && values.switch === 'freeu') m.enableFreeu({ s1: 0.9, s2: 0.2, b1: 1.4, b2: 1.6 });
  const t = now();
  await m.prepare();
  const open = now() - t;
  await m.forward(args); // warm-up: grows onnxruntime's arenas
  const steps: number[] = [];
  for (let r = 0; r < Number(values.steps); r++) {
    const t0 = now();
    await m.forward(args);
    steps.push(now() - t0);
  }
  const run: Run = { open, steps, peakRssGB: (process.resourceUsage().maxRSS * 1024) / 1e9 };
  console.log(JSON.stringify(run));
  process.exit(0);
}

const runs: Record<'off' | 'on', Run[]> = { off: [], on: [] };
for (let r = 0; r < Number(values.rounds); r++) {
  for (const which of r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
    const out = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2), '--child', which], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const run = JSON.parse(out.stdout.trim().split('\n').pop()!) as Run;
    runs[which].push(run);
    console.error(`${which}: open ${run.open.toFixed(1)} s, steps ${run.steps.map((s) => s.toFixed(2)).join(' ')} s, peak RSS ${run.peakRssGB.toFixed(2)} GB`);
  }
}
const step = (w: 'off' | 'on') => median(runs[w].flatMap((r) => r.steps));
const open = (w: 'off' | 'on') => median(runs[w].map((r) => r.open));
const rss = (w: 'off' | 'on') => median(runs[w].map((r) => r.peakRssGB));
console.log(`\n${values.switch}, UNet + ControlNet-XS step, batch 2, ${values.size}×${values.size} latents, control on (median of ${Number(values.rounds) * Number(values.steps)} steps, ${values.rounds} processes each)\n`);
console.log('| | step | session open | peak RSS |\n|---|---|---|---|');
for (const w of ['off', 'on'] as const) {
  const ratio = w === 'on' ? ` (${(step('on') / step('off')).toFixed(3)}×)` : '';
  console.log(`| ${values.switch} ${w} | ${step(w).toFixed(3)} s${ratio} | ${open(w).toFixed(1)} s | ${rss(w).toFixed(2)} GB |`);
}
console.log(JSON.stringify({ date: new Date().toISOString(), switch: values.switch, size: Number(values.size), runs }));
