/**
 * Where a UNet + ControlNet-XS step spends its time, from onnxruntime's own per-node profile, on the
 * random SD 2.1-base checkpoint: the control model's share of a control-on step (every control
 * piece runs inside an `If` on `apply_control`), time per operator type for the base and control
 * parts, and the control-off step next to the base UNet alone (no adapter in the graph at all).
 *
 *   npm run bench:profile -- [--size 64] [--repeats 3] [--out bench/out/sd21-random]
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { ensureRandomCheckpoint, stepInputs } from './random-checkpoint.js';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '64' },
    repeats: { type: 'string', default: '3' },
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'out', 'sd21-random') },
  },
});

/** One event of onnxruntime's Chrome-trace profile (the fields read here). */
interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

interface RunProfile {
  seconds: number;
  /** Time inside `If` nodes (the control model), seconds. */
  controlSeconds: number;
  /** Operator type → seconds, outside and inside the `If` branches. */
  base: Map<string, number>;
  control: Map<string, number>;
}

/** The median of a profile's measured runs (the first is a warm-up), its nodes split by whether they ran inside an `If`. */
function medianRun(events: ProfileEvent[]): RunProfile {
  const runs = events.filter((e) => e.name === 'model_run').slice(1).sort((a, b) => a.dur - b.dur);
  const run = runs[Math.floor(runs.length / 2)];
  if (!run) throw new Error('profile has no measured model_run event');
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= run.ts && e.ts <= run.ts + run.dur);
  const ifs = nodes.filter((e) => e.args?.op_name === 'If');
  const inIf = (e: ProfileEvent) => ifs.some((i) => e !== i && e.ts >= i.ts && e.ts < i.ts + i.dur);
  const base = new Map<string, number>();
  const control = new Map<string, number>();
  for (const e of nodes) {
    const op = e.args?.op_name ?? '?';
    if (op === 'If') continue;
    const into = inIf(e) ? control : base;
    into.set(op, (into.get(op) ?? 0) + e.dur / 1e6);
  }
  return { seconds: run.dur / 1e6, controlSeconds: ifs.reduce((s, e) => s + e.dur / 1e6, 0), base, control };
}

function readProfile(folder: string): ProfileEvent[] {
  const file = readdirSync(folder).find((f) => f.endsWith('.json'));
  if (!file) throw new Error(`no profile written in ${folder}`);
  return JSON.parse(readFileSync(join(folder, file), 'utf8')) as ProfileEvent[];
}

const dir = ensureRandomCheckpoint(values.out);
const size = Number(values.size);
const repeats = Number(values.repeats);
const args = stepInputs(size);

/** Open a session with profiling into its own folder, run a warm-up and `repeats` measured forwards, parse. */
async function profiled(open: (prefix: string) => Promise<{ run: () => Promise<unknown>; release: () => Promise<void> }>): Promise<RunProfile> {
  const folder = mkdtempSync(join(tmpdir(), 'cnxs-profile-'));
  try {
    const m = await open(join(folder, 'p'));
    for (let r = 0; r <= repeats; r++) await m.run();
    await m.release(); // onnxruntime writes the profile when the session ends
    return medianRun(readProfile(folder));
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

const unetOnly = await profiled(async (profileFilePrefix) => {
  const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'unet'), { runtime: { profileFilePrefix } });
  return { run: () => unet.forward(args), release: () => unet.release() };
});
const fusedRun = (applyControl: boolean) =>
  profiled(async (profileFilePrefix) => {
    const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'unet'));
    const adapter = await ControlNetXSAdapter.fromPretrained(join(dir, 'controlnet'));
    const fused = await UNetControlNetXSModel.fromUnet(unet, adapter, { runtime: { profileFilePrefix } });
    return { run: () => fused.forward({ ...args, applyControl }), release: () => fused.release() };
  });
const on = await fusedRun(true);
const off = await fusedRun(false);

const pct = (x: number) => `${((100 * x) / on.seconds).toFixed(1)}%`;
console.log(`\nUNet step, batch 2, ${size}×${size} latents (onnxruntime profile, median of ${repeats} runs after a warm-up)\n`);
console.log('| run | seconds | vs control on |\n|---|---|---|');
console.log(`| UNet + ControlNet-XS, control on | ${on.seconds.toFixed(2)} | 1.00 |`);
console.log(`| UNet + ControlNet-XS, control off | ${off.seconds.toFixed(2)} | ${(off.seconds / on.seconds).toFixed(3)} |`);
console.log(`| UNet2DConditionModel alone (no adapter) | ${unetOnly.seconds.toFixed(2)} | ${(unetOnly.seconds / on.seconds).toFixed(3)} |`);
console.log(`\nControl model (inside If branches) in the control-on run: ${on.controlSeconds.toFixed(3)} s = ${pct(on.controlSeconds)}.`);
console.log(`If nodes in the control-off run: ${off.controlSeconds.toFixed(3)} s (the else branches pass the base features through).`);
console.log(`So no implementation can bring control-off below ${(1 - on.controlSeconds / on.seconds).toFixed(3)}× of control-on for this adapter.\n`);
const ops = [...new Set([...on.base.keys(), ...on.control.keys()])].sort((a, b) => (on.base.get(b) ?? 0) + (on.control.get(b) ?? 0) - (on.base.get(a) ?? 0) - (on.control.get(a) ?? 0));
console.log('| operator (control on) | base s | control s | share of step |\n|---|---|---|---|');
for (const op of ops.slice(0, 14)) {
  const b = on.base.get(op) ?? 0;
  const c = on.control.get(op) ?? 0;
  console.log(`| ${op} | ${b.toFixed(3)} | ${c.toFixed(3)} | ${pct(b + c)} |`);
}
console.log(JSON.stringify({ date: new Date().toISOString(), size, onSeconds: on.seconds, offSeconds: off.seconds, unetAloneSeconds: unetOnly.seconds, controlSeconds: on.controlSeconds }));
