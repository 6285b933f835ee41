/**
 * Run state is per run: two generations interleaved on one scheduler object must give exactly
 * what each gives alone (diffusers keeps `_step_index` and the solver histories on the
 * scheduler, so interleaving there mixes them up).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Generator } from '../src/random/index.js';
import { SCHEDULER_CLASSES, type Scheduler, type SchedulerRun } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';

const SD_BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  clip_sample: false,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
};

const f = Math.fround;

/** A deterministic stand-in for the UNet: 0.1·x + 0.05·cos(t/100)·n with a fixed pattern n. */
function model(x: Tensor<'float32'>, t: number): Tensor<'float32'> {
  const c = f(0.05 * Math.cos(t / 100));
  return new Tensor(
    'float32',
    x.data.map((v, i) => f(f(0.1) * v) + f(c * f(Math.sin(i + 1)))),
    x.dims,
  );
}

/** A loop in progress: its run, generator, sample and the samples produced so far. */
interface Loop {
  run: SchedulerRun;
  gen: Generator;
  x: Tensor<'float32'>;
  i: number;
  out: Float32Array[];
}

function startLoop(run: SchedulerRun, seed: number): Loop {
  const gen = new Generator().manualSeed(seed);
  const noise = gen.randn([1, 4, 4, 4]);
  const s = f(run.initNoiseSigma);
  return { run, gen, x: new Tensor('float32', noise.data.map((v) => v * s), noise.dims), i: 0, out: [] };
}

/** Advance a loop by one model call; false when it is done. */
function advance(l: Loop): boolean {
  const t = l.run.timesteps[l.i];
  if (t === undefined) return false;
  const eps = model(l.run.scaleModelInput(l.x, t), t);
  l.x = l.run.step(eps, t, l.x, { generator: l.gen, eta: 0.3 }).prevSample;
  l.out.push(l.x.data);
  l.i += 1;
  return true;
}

function runAlone(sched: Scheduler, steps: number, seed: number): Float32Array[] {
  const l = startLoop(sched.createRun(steps), seed);
  while (advance(l));
  return l.out;
}

/** Configs exercised per class: the SD base, plus higher-order variants where they exist. */
const VARIANTS: Record<string, Record<string, unknown>[]> = {
  PNDMScheduler: [{ skip_prk_steps: false }],
  DPMSolverMultistepScheduler: [{ solver_order: 3 }, { algorithm_type: 'sde-dpmsolver++' }],
  DPMSolverSinglestepScheduler: [{ solver_order: 3 }],
  UniPCMultistepScheduler: [{ solver_order: 3 }],
  DEISMultistepScheduler: [{ solver_order: 3 }],
};

describe('run state is per run', () => {
  for (const [name, cls] of Object.entries(SCHEDULER_CLASSES)) {
    for (const extra of [{}, ...(VARIANTS[name] ?? [])]) {
      const label = `${name} ${JSON.stringify(extra)}`;
      it(`${label}: two interleaved runs equal two sequential runs`, () => {
        const sched = cls.fromConfig({ ...SD_BASE, ...extra });
        // Sequential, each run alone (DPMSolverSinglestep may update its config on the first
        // run, exactly like diffusers, so that run goes first in both orders).
        const aloneA = runAlone(sched, 9, 11);
        const aloneB = runAlone(sched, 6, 12);
        // Interleaved on the same scheduler object: B is the scheduler's current run.
        const a = startLoop(sched.createRun(9), 11);
        const b = startLoop(sched.setTimesteps(6), 12);
        let more = true;
        while (more) more = [advance(a), advance(b)].some(Boolean);
        assert.deepEqual(a.out, aloneA, `${label}: run A`);
        assert.deepEqual(b.out, aloneB, `${label}: run B`);
      });
    }
  }

  it('the scheduler-level API (setTimesteps + step) drives the current run, and { run } another', () => {
    const sched = SCHEDULER_CLASSES.DPMSolverMultistepScheduler!.fromConfig({ ...SD_BASE, solver_order: 3 });
    const alone = runAlone(sched, 8, 5);
    const other = sched.createRun(8);
    sched.setTimesteps(8);
    const genA = new Generator().manualSeed(5);
    const genB = new Generator().manualSeed(5);
    let xa = new Tensor('float32', genA.randn([1, 4, 4, 4]).data, [1, 4, 4, 4]);
    let xb = new Tensor('float32', genB.randn([1, 4, 4, 4]).data, [1, 4, 4, 4]);
    const outA: Float32Array[] = [];
    for (const t of sched.timesteps) {
      xa = sched.step(model(sched.scaleModelInput(xa, t), t), t, xa, { generator: genA }).prevSample;
      const epsB = model(sched.scaleModelInput(xb, t, { run: other }), t);
      xb = sched.step(epsB, t, xb, { generator: genB, run: other }).prevSample;
      outA.push(xa.data);
    }
    assert.deepEqual(outA, alone);
    assert.deepEqual(xb.data, xa.data);
    assert.equal(sched.stepIndex, 8);
    assert.equal(other.stepIndex, 8);
  });
});
