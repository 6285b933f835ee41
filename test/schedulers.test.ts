/**
 * Golden tests for the scheduler family against diffusers 0.33.1 (fixtures in
 * test/fixtures/schedulers, see ../shared/reference/README.md section 2): the full denoising
 * loop with the fake model, for every case, plus config handling and error cases.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Generator, randnTensor } from '../src/random/index.js';
import { ConfigError, InputError } from '../src/errors.js';
import {
  DDIMScheduler,
  DDPMScheduler,
  DEISMultistepScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  PNDMScheduler,
  SCHEDULER_CLASSES,
  SCHEDULER_DEFAULTS,
  schedulerClass,
  schedulerFromConfig,
  UniPCMultistepScheduler,
  type Scheduler,
  type StepOutput,
} from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { at } from '../src/util/at.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture, maxAbsDiff } from './helpers.js';

/** The SD 1.x scheduler config every case starts from (README section 2). */
const SD_BASE = {
  _class_name: 'PNDMScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  trained_betas: null,
  clip_sample: false,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
};

interface SchedulerCase {
  name: string;
  scheduler_class: string;
  config_overrides: Record<string, unknown>;
  scheduler_config: Record<string, unknown>;
  num_inference_steps: number;
  num_loop_iterations: number;
  seed: number;
  step_kwargs: { generator?: string; eta?: number };
  init_noise_sigma: number;
  order: number;
  timesteps_list: number[];
  timesteps_dtype: 'int64' | 'float32';
  model_output_coefs: number[];
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number>;
}

/** cases.json holds Python's `-Infinity` (lambda_min_clipped), which JSON.parse rejects. */
function loadCases(): SchedulerCase[] {
  const text = readFileSync(fixture('schedulers', 'cases.json'), 'utf8').replace(/-Infinity/g, '"__-Infinity__"');
  return JSON.parse(text, (_k, v: unknown) => (v === '__-Infinity__' ? -Infinity : v)) as SchedulerCase[];
}

const cases = loadCases();
const tensors = loadSafetensorsSync(fixture('schedulers', 'tensors.safetensors'));
const noiseFixed = tensors.readFloat32('noise_fixed');
const f = Math.fround;

/** Tolerance for one output: 20× the fp32-vs-fp64 hint, at least 1e-5, and 1e-5 of the scale. */
function tolerance(c: SchedulerCase, key: string, expected: Float32Array): number {
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  return Math.max(1e-5, 20 * (c.max_abs_diff_fp32_vs_fp64[key] ?? 0), 1e-5 * scale);
}

/** Row i of an (n, ...rest) reference tensor, as a tensor with dims rest. */
function row(t: Tensor<'float32'>, i: number): Tensor<'float32'> {
  const rest = t.dims.slice(1);
  const size = rest.reduce((a, b) => a * b, 1);
  return new Tensor('float32', t.data.subarray(i * size, (i + 1) * size), rest);
}

/** The fake model: 0.1·x + (0.05·cos(t/100))·noise_fixed, coefficients rounded to float32. */
function fakeModel(scaled: Tensor<'float32'>, coef: number): Tensor<'float32'> {
  const out = new Float32Array(scaled.data.length);
  const a = f(0.1);
  const b = f(coef);
  for (let i = 0; i < out.length; i++) out[i] = f(a * at(scaled.data, i)) + f(b * at(noiseFixed.data, i));
  return new Tensor('float32', out, scaled.dims);
}

interface LoopResult {
  scaled: Tensor<'float32'>[];
  modelOutputs: Tensor<'float32'>[];
  steps: StepOutput[];
  initNoise: Tensor<'float32'>;
  initSample: Tensor<'float32'>;
}

/** The reference loop of README section 2, on the scheduler's current run. */
function runLoop(sched: Scheduler, c: SchedulerCase): LoopResult {
  sched.setTimesteps(c.num_inference_steps);
  const gen = new Generator().manualSeed(c.seed);
  const initNoise = randnTensor([1, 4, 4, 4], { generator: gen });
  const sigma = f(sched.initNoiseSigma);
  let sample = new Tensor('float32', initNoise.data.map((v) => v * sigma), initNoise.dims);
  const initSample = sample;
  const out: LoopResult = { scaled: [], modelOutputs: [], steps: [], initNoise, initSample };
  sched.timesteps.forEach((t, i) => {
    const scaled = sched.scaleModelInput(sample, t);
    const mo = fakeModel(scaled, at(c.model_output_coefs, i));
    const step = sched.step(mo, t, sample, { generator: gen, eta: c.step_kwargs.eta });
    out.scaled.push(scaled);
    out.modelOutputs.push(mo);
    out.steps.push(step);
    sample = step.prevSample;
  });
  return out;
}

/** Worst diff/tolerance ratio seen in the current case, reported as a test diagnostic. */
interface Margin {
  worst: number;
  where: string;
}

function checkClose(
  c: SchedulerCase,
  key: string,
  actual: Tensor<'float32'>,
  expected: Tensor<'float32'>,
  what: string,
  margin?: Margin,
): void {
  const tol = tolerance(c, key, expected.data);
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= tol, `${c.name} ${what}: max abs diff ${d.toExponential(3)} > tol ${tol.toExponential(3)}`);
  if (margin !== undefined && d / tol > margin.worst) {
    margin.worst = d / tol;
    margin.where = `${what} (diff ${d.toExponential(2)}, tol ${tol.toExponential(2)})`;
  }
}

/** The tensor name of a case output the fixtures always have. */
function outputName(c: SchedulerCase, key: string): string {
  const name = c.outputs[key];
  assert.ok(name !== undefined, `${c.name}: no ${key} in the fixture outputs`);
  return name;
}

function timestepsOf(c: SchedulerCase): number[] {
  const t = tensors.read(outputName(c, 'timesteps'));
  return Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

describe('scheduler golden loops (diffusers 0.33.1)', () => {
  for (const c of cases) {
    it(c.name, (t) => {
      const m: Margin = { worst: 0, where: '' };
      const cls = schedulerClass(c.scheduler_class);
      const sched = cls.fromConfig({ ...SD_BASE, ...c.config_overrides });
      assert.equal(sched.order, c.order, 'order');

      const loop = runLoop(sched, c);

      // Schedule: timesteps exact (values and dtype), sigmas within tolerance.
      assert.deepEqual([...sched.timesteps], c.timesteps_list, 'timesteps_list');
      assert.deepEqual([...sched.timesteps], timestepsOf(c), 'timesteps tensor');
      assert.equal(sched.timestepDtype, c.timesteps_dtype, 'timesteps dtype');
      assert.equal(f(sched.initNoiseSigma), f(c.init_noise_sigma), 'init_noise_sigma');
      if (c.outputs.sigmas !== undefined) {
        const ref = tensors.readFloat32(c.outputs.sigmas);
        assert.ok(sched.sigmas !== undefined, 'sigmas');
        checkClose(c, 'sigmas', new Tensor('float32', sched.sigmas, ref.dims), ref, 'sigmas', m);
      }
      assert.equal(loop.steps.length, c.num_loop_iterations, 'loop iterations');

      // The loop, row by row.
      const read = (key: string) => tensors.readFloat32(outputName(c, key));
      checkClose(c, 'init_noise', loop.initNoise, read('init_noise'), 'init_noise');
      checkClose(c, 'init_sample', loop.initSample, read('init_sample'), 'init_sample');
      const refs = {
        scaled_input: read('scaled_input'),
        model_output: read('model_output'),
        prev_sample: read('prev_sample'),
      };
      const optional = (key: string) => (c.outputs[key] !== undefined ? tensors.readFloat32(c.outputs[key]) : null);
      const refX0 = optional('pred_original_sample');
      const refDenoised = optional('denoised');
      loop.steps.forEach((step, i) => {
        checkClose(c, 'scaled_input', at(loop.scaled, i), row(refs.scaled_input, i), `scaled_input[${i}]`, m);
        checkClose(c, 'model_output', at(loop.modelOutputs, i), row(refs.model_output, i), `model_output[${i}]`, m);
        checkClose(c, 'prev_sample', step.prevSample, row(refs.prev_sample, i), `prev_sample[${i}]`, m);
        if (refX0 !== null) {
          const x0 = step.predOriginalSample;
          assert.ok(x0 !== undefined, `${c.name}: pred_original_sample missing`);
          checkClose(c, 'prev_sample', x0, row(refX0, i), `pred_original_sample[${i}]`, m);
        }
        if (refDenoised !== null) {
          const den = step.denoised;
          assert.ok(den !== undefined, `${c.name}: denoised missing`);
          checkClose(c, 'prev_sample', den, row(refDenoised, i), `denoised[${i}]`, m);
        }
      });
      const last = loop.steps.at(-1);
      assert.ok(last !== undefined, `${c.name}: the loop ran no steps`);
      checkClose(c, 'final_sample', last.prevSample, read('final_sample'), 'final_sample', m);

      // The config as save_config writes it, read after the loop.
      assert.deepEqual({ ...sched.config }, c.scheduler_config, 'scheduler_config');
      t.diagnostic(`worst diff/tol ${m.worst.toFixed(3)} at ${m.where}`);
    });
  }
});

/** One golden case per class, for the config tests. */
function firstCaseOf(className: string): SchedulerCase {
  const c = cases.find((x) => x.scheduler_class === className);
  assert.ok(c, className);
  return c;
}

describe('scheduler configs (from_config / save_config)', () => {
  it('every golden scheduler_config round-trips through schedulerFromConfig', () => {
    for (const name of Object.keys(SCHEDULER_CLASSES)) {
      const c = firstCaseOf(name);
      const sched = schedulerFromConfig(c.scheduler_config);
      assert.equal(sched.className, name);
      assert.deepEqual({ ...sched.config }, c.scheduler_config, name);
      assert.deepEqual({ ...schedulerFromConfig(sched.config).config }, { ...sched.config }, `${name} round trip`);
    }
  });

  it('swapping classes keeps the betas and the keys of compatible classes, and drops unknown keys', () => {
    const pndm = PNDMScheduler.fromConfig({ ...SD_BASE, some_unknown_key: 3 });
    assert.equal(pndm.config.some_unknown_key, undefined);
    const euler = EulerDiscreteScheduler.fromConfig(pndm.config);
    assert.equal(euler.config._class_name, 'EulerDiscreteScheduler');
    assert.equal(euler.config.skip_prk_steps, true, 'PNDM key kept as a hidden key');
    assert.equal(euler.config.beta_schedule, 'scaled_linear');
    assert.deepEqual(euler.alphasCumprod, pndm.alphasCumprod);
    assert.equal(euler.config.timestep_spacing, 'leading');
    const back = PNDMScheduler.fromConfig(euler.config);
    assert.equal(back.config.skip_prk_steps, true);
    assert.equal(back.config.interpolation_type, 'linear', 'Euler key kept as a hidden key');
    assert.equal(back.config._class_name, 'PNDMScheduler');
  });

  it('maps algorithm and solver types between the DPM-Solver, UniPC and DEIS classes like diffusers', () => {
    const deis = DEISMultistepScheduler.fromConfig(SD_BASE);
    const dpm = DPMSolverMultistepScheduler.fromConfig(deis.config);
    assert.equal(dpm.config.algorithm_type, 'dpmsolver++');
    assert.equal(dpm.config.solver_type, 'midpoint');
    const unipc = UniPCMultistepScheduler.fromConfig(dpm.config);
    assert.equal(unipc.config.solver_type, 'bh2');
    const deis2 = DEISMultistepScheduler.fromConfig(unipc.config);
    assert.equal(deis2.config.algorithm_type, 'deis');
    assert.equal(deis2.config.solver_type, 'logrho');
  });

  it('a class built without a config has the diffusers defaults', () => {
    const d = new DDIMScheduler();
    assert.equal(d.config.beta_schedule, 'linear');
    assert.equal(d.config.num_train_timesteps, 1000);
    assert.equal(d.config._class_name, 'DDIMScheduler');
    assert.equal(d.config._diffusers_version, '0.33.1');
    assert.deepEqual(Object.keys(d.config), Object.keys(d.config).sort(), 'keys sorted like save_config');
    assert.equal(LCMScheduler.fromConfig().config.beta_schedule, 'scaled_linear');
  });

  it('DPMSolverSinglestep switches lower_order_final on like diffusers', () => {
    const s = DPMSolverSinglestepScheduler.fromConfig(SD_BASE);
    assert.equal(s.config.lower_order_final, false);
    s.setTimesteps(7);
    assert.equal(s.config.lower_order_final, true);
  });

  it('settings hold the own keys of the class camelCased, not hidden keys, and follow config changes', () => {
    const camel = (k: string) => k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
    const pndm = PNDMScheduler.fromConfig(SD_BASE);
    assert.deepEqual(Object.keys(pndm.settings).sort(), Object.keys(SCHEDULER_DEFAULTS.PNDMScheduler).map(camel).sort());
    assert.equal(pndm.settings.skipPrkSteps, true);
    assert.equal(pndm.settings.stepsOffset, 1);
    const euler = EulerDiscreteScheduler.fromConfig(pndm.config);
    assert.equal(euler.config.skip_prk_steps, true);
    assert.equal('skipPrkSteps' in euler.settings, false, 'a hidden key stays in config');
    const single = DPMSolverSinglestepScheduler.fromConfig(SD_BASE);
    single.createRun(7);
    assert.equal(single.settings.lowerOrderFinal, true, 'register_to_config reaches settings');
    assert.equal(DEISMultistepScheduler.fromConfig({ algorithm_type: 'dpmsolver' }).settings.algorithmType, 'deis');
  });
});

describe('scheduler errors', () => {
  const throwsNamed = (fn: () => unknown, type: new (...a: never[]) => Error, text: string): void => {
    assert.throws(fn, (e: unknown) => e instanceof type && (e as Error).message.includes(text));
  };

  it('unknown or missing _class_name is a ConfigError naming it', () => {
    throwsNamed(() => schedulerFromConfig({ ...SD_BASE, _class_name: 'FancyScheduler' }), ConfigError, 'FancyScheduler');
    throwsNamed(() => schedulerFromConfig({ beta_start: 0.1 }), ConfigError, '_class_name');
    throwsNamed(() => schedulerClass(42), ConfigError, '42');
  });

  it('unknown beta_schedule, prediction_type or timestep_spacing is a ConfigError naming the value', () => {
    for (const cls of Object.values(SCHEDULER_CLASSES)) {
      throwsNamed(() => cls.fromConfig({ ...SD_BASE, beta_schedule: 'cubic' }), ConfigError, 'cubic');
      throwsNamed(() => cls.fromConfig({ ...SD_BASE, prediction_type: 'noise' }), ConfigError, 'noise');
    }
    throwsNamed(() => DDIMScheduler.fromConfig({ timestep_spacing: 'sideways' }), ConfigError, 'sideways');
    throwsNamed(() => DDIMScheduler.fromConfig({ num_train_timesteps: -5 }), ConfigError, '-5');
    throwsNamed(() => DDPMScheduler.fromConfig({ trained_betas: [0.1, 0.2] }), ConfigError, 'trained_betas');
  });

  it('num_inference_steps outside [1, num_train_timesteps] is an InputError naming the value', () => {
    for (const cls of Object.values(SCHEDULER_CLASSES)) {
      const s = cls.fromConfig(SD_BASE);
      throwsNamed(() => s.setTimesteps(1001), InputError, '1001');
      throwsNamed(() => s.setTimesteps(0), InputError, '0');
      throwsNamed(() => s.createRun(2.5), InputError, '2.5');
    }
    throwsNamed(() => LCMScheduler.fromConfig(SD_BASE).setTimesteps(51), InputError, '51');
  });

  it('stepping without a run, or with a run of another scheduler, is an InputError', () => {
    const a = DDIMScheduler.fromConfig(SD_BASE);
    const b = DDIMScheduler.fromConfig(SD_BASE);
    const x = Tensor.zeros([1, 4, 4, 4]);
    throwsNamed(() => a.step(x, 1, x), InputError, 'setTimesteps');
    throwsNamed(() => a.step(x, 1, x, { run: b.createRun(5) }), InputError, 'another scheduler');
    const euler = EulerDiscreteScheduler.fromConfig(SD_BASE);
    euler.setTimesteps(5);
    throwsNamed(() => euler.step(x, 123.5, x), InputError, '123.5');
  });
});

describe('scheduler helpers', () => {
  it('timestepsTensor carries diffusers dtype', () => {
    const ddim = DDIMScheduler.fromConfig(SD_BASE).setTimesteps(7).timestepsTensor();
    assert.equal(ddim.dtype, 'int64');
    assert.deepEqual(Array.from(ddim.data as BigInt64Array, Number), timestepsOf(firstCaseOf('DDIMScheduler')));
    const euler = EulerDiscreteScheduler.fromConfig(SD_BASE).setTimesteps(7).timestepsTensor();
    assert.equal(euler.dtype, 'float32');
  });

  it('addNoise mixes √ᾱ·x₀ + √(1-ᾱ)·ε per batch item, before and after setTimesteps', () => {
    const s = DDIMScheduler.fromConfig(SD_BASE);
    const x0 = Tensor.float32(Array.from({ length: 8 }, (_, i) => i - 3), [2, 4]);
    const eps = Tensor.float32(Array.from({ length: 8 }, (_, i) => 0.5 - i / 4), [2, 4]);
    const out = s.addNoise(x0, eps, [10n, 500n]);
    for (let i = 0; i < 8; i++) {
      const a = at(s.alphasCumprod, i < 4 ? 10 : 500);
      const want = f(f(f(Math.sqrt(a)) * at(x0.data, i)) + f(f(Math.sqrt(f(1 - a))) * at(eps.data, i)));
      assert.equal(out.data[i], want);
    }
    s.setTimesteps(10);
    assert.deepEqual(s.addNoise(x0, eps, [10, 500]).data, out.data);
  });
});
