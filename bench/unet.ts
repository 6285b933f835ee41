/**
 * UNetControlNetXSModel benchmark on real SD 2.1-base dimensions with random weights:
 * load time (files → ready session), forward time at batch 2 (classifier-free guidance) for 32² and
 * 64² latents with control on and off, and peak RSS. Prints a table and a JSON line.
 *
 *   npm run bench -- [--sizes 32,64] [--repeats 2] [--out bench/out/sd21-random] [--attention fused|plain]
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { Tensor } from '../src/tensor.js';
import { ensureRandomCheckpoint } from './random-checkpoint.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '32,64' },
    repeats: { type: 'string', default: '2' },
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'out', 'sd21-random') },
    attention: { type: 'string', default: 'fused' },
    threads: { type: 'string' },
  },
});

const peakRssGB = () => (process.resourceUsage().maxRSS * 1024) / 1e9;
const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function randomTensor(dims: number[], seed: number): Tensor<'float32'> {
  const t = Tensor.zeros(dims);
  let x = seed;
  for (let i = 0; i < t.data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    t.data[i] = x / 2 ** 31 - 1;
  }
  return t;
}

const dir = ensureRandomCheckpoint(values.out!);
const runtime = values.threads ? { intraOpNumThreads: Number(values.threads) } : {};
const trace = { attention: values.attention as 'fused' | 'plain' };

let t0 = process.hrtime.bigint();
const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'unet'), { warn: () => {} });
const adapter = await ControlNetXSAdapter.fromPretrained(join(dir, 'controlnet'), { warn: () => {} });
const model = await UNetControlNetXSModel.fromUnet(unet, adapter, { runtime, trace });
await model.prepare();
const loadS = seconds(t0);
const rows: { what: string; seconds: number }[] = [{ what: 'load (files → ready session)', seconds: loadS }];
console.error(`loaded in ${loadS.toFixed(1)} s, RSS peak so far ${peakRssGB().toFixed(2)} GB`);

const repeats = Number(values.repeats);
for (const size of values.sizes!.split(',').map(Number)) {
  const args = {
    sample: randomTensor([2, 4, size, size], 1),
    timestep: 500,
    encoderHiddenStates: randomTensor([2, 77, 1024], 2),
    controlnetCond: randomTensor([2, 3, size * 8, size * 8], 3),
  };
  for (const applyControl of [true, false]) {
    await model.forward({ ...args, applyControl }); // warm-up
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) {
      t0 = process.hrtime.bigint();
      await model.forward({ ...args, applyControl });
      times.push(seconds(t0));
    }
    const what = `forward b2 ${size}×${size} control ${applyControl ? 'on' : 'off'}`;
    rows.push({ what, seconds: median(times) });
    console.error(`${what}: ${median(times).toFixed(2)} s`);
  }
}
const peak = peakRssGB();
console.log('\n| measurement | value |\n|---|---|');
for (const r of rows) console.log(`| ${r.what} | ${r.seconds.toFixed(2)} s |`);
console.log(`| peak RSS | ${peak.toFixed(2)} GB |`);
console.log(JSON.stringify({ date: new Date().toISOString(), attention: trace.attention, rows, peakRssGB: peak }));
await model.release();
