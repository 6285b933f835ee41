/**
 * LCM-distilled UNets (`time_cond_proj_dim`) against diffusers 0.33.1 on the tiny LCM UNet + adapter of
 * test/fixtures/adapters/lcm-sd: the guidance-scale embedding, the plain and fused UNets with and
 * without `timestep_cond`, the ControlNet-XS pipeline with LCMScheduler (which passes no timestep_cond
 * and decides CFG by guidanceScale > 1), and the `embedGuidanceScale` opt-in beyond diffusers.
 * Whole tensors; tolerance max(floor, 20 × the case's fp32-vs-fp64 hint).
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { a1111Parameters, generate, parseGenerateArgs, type GenerateOptions } from '../src/cli/generate.js';
import { UsageError } from '../src/cli/usage.js';
import { ConfigError, InputError } from '../src/errors.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { fusedConfig, fusedKey } from '../src/models/controlnet-xs-fusion.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNET_CNXS_DEFAULTS } from '../src/models/unet-controlnet-xs-config.js';
import { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';
import { guidanceScaleEmbedding } from '../src/pipelines/guidance-embedding.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { Generator } from '../src/random/index.js';
import { LCMScheduler } from '../src/schedulers/lcm.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { snakeToCamel } from '../src/util/config.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { callArgs, readCases, type PipelineCase } from './pipeline-cases.js';
import { assertClose, fixture, maxAbsDiff, tempDir } from './helpers.js';

const L = fixture('adapters', 'lcm-sd');
const SD = fixture('tiny-sd-cnxs');
const { cases, read } = readCases(L);
const quiet = { warn: () => {} };

interface ModuleCase {
  name: string;
  inputs: Record<string, string | number | boolean>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number> | number;
}
const moduleCase = (name: string) => cases.find((c) => c.name === name) as unknown as ModuleCase;
const pipelineCase = (name: string) => cases.find((c) => c.name === name)!;
const hint = (c: { max_abs_diff_fp32_vs_fp64: Record<string, number> | number }, what: string) =>
  typeof c.max_abs_diff_fp32_vs_fp64 === 'number' ? c.max_abs_diff_fp32_vs_fp64 : (c.max_abs_diff_fp32_vs_fp64[what] ?? 0);
const tol = (c: { max_abs_diff_fp32_vs_fp64: Record<string, number> | number }, what: string, floor: number) => Math.max(floor, 20 * hint(c, what));

/** A module case's inputs as forward args (timestep_cond only where the case passes it). */
function forwardArgs(c: ModuleCase): UNetControlNetXSForwardArgs {
  const x = c.inputs;
  return {
    sample: read(x['sample'] as string),
    timestep: x['timestep'] as number,
    encoderHiddenStates: read(x['encoder_hidden_states'] as string),
    ...(x['controlnet_cond'] !== undefined ? { controlnetCond: read(x['controlnet_cond'] as string) } : {}),
    ...(x['conditioning_scale'] !== undefined ? { conditioningScale: x['conditioning_scale'] as number } : {}),
    ...(x['apply_control'] !== undefined ? { applyControl: x['apply_control'] as boolean } : {}),
    ...(x['timestep_cond'] !== undefined ? { timestepCond: read(x['timestep_cond'] as string) } : {}),
  };
}

/** A copy of a model folder with config changes, removed when the calling scope ends. */
function withConfig(folder: string, config: Record<string, unknown>): string {
  const dir = tempDir('cnxs-lcm-');
  cpSync(folder, dir, { recursive: true });
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, ...config }));
  return dir;
}

let unet: UNet2DConditionModel;
let adapter: ControlNetXSAdapter;
let fused: UNetControlNetXSModel;
let base: StableDiffusionControlNetXSPipeline;

before(async () => {
  unet = await UNet2DConditionModel.fromPretrained(join(L, 'unet'));
  adapter = await ControlNetXSAdapter.fromPretrained(join(L, 'controlnet'));
  fused = UNetControlNetXSModel.fuse(unet, adapter);
  // vae, text encoder and tokenizer of the tiny SD pipeline (the cases' recipe "lcm")
  base = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')) });
});
after(async () => {
  await Promise.all([unet.release(), fused.release(), base.unet.release()]);
});

test('guidanceScaleEmbedding equals get_guidance_scale_embedding, float32 as torch computes it', () => {
  const c = moduleCase('lcm.guidance_scale_embedding');
  const w = read(c.inputs['w'] as string);
  const dim = (cases.find((x) => x.name === c.name) as unknown as { settings: { embedding_dim: number } }).settings.embedding_dim;
  // 1e-6, not the hint's 20 × 1.2e-5: float64 arithmetic misses by 4e-6, and a correctly rounded exp (one
  // ulp off torch's SLEEF exp in a frequency) by 3e-5, since sin/cos arguments reach 1000·w.
  assertClose(guidanceScaleEmbedding(w.data as Float32Array, dim), read(c.outputs['emb']!), 1e-6, c.name);
  // odd dims end in a zero column; w = 0 is sin 0 = 0 and cos 0 = 1
  assert.deepEqual([...guidanceScaleEmbedding([0], 5).data], [0, 0, 1, 1, 0]);
  assert.throws(() => guidanceScaleEmbedding([1], 3), InputError);
});

describe('the LCM UNet equals diffusers, with and without timestep_cond', () => {
  for (const name of ['unet2d.lcm.timestep_cond', 'unet2d.lcm.no_timestep_cond']) {
    test(name, async () => {
      const c = moduleCase(name);
      const { sample } = await unet.forward(forwardArgs(c));
      assertClose(sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), name);
    });
  }
});

describe('the LCM UNet fused with its adapter equals diffusers', () => {
  // nocontrol_timestep_cond: diffusers' forward drops timestep_cond when control is off, and so does this model
  for (const name of ['unet_cnxs.lcm', 'unet_cnxs.lcm.nocontrol', 'unet_cnxs.lcm.nocontrol_timestep_cond']) {
    test(name, async () => {
      const c = moduleCase(name);
      const { sample } = await fused.forward(forwardArgs(c));
      assertClose(sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), name);
    });
  }

  test('a saved fused folder with time_cond_proj_dim loads strictly (base_time_embedding.cond_proj) and runs the same', async () => {
    const dir = tempDir('cnxs-lcm-fused-');
    const config = fusedConfig(unet.config, adapter.config) as unknown as Record<string, unknown>;
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ _class_name: 'UNetControlNetXSModel', ...Object.fromEntries(Object.keys(UNET_CNXS_DEFAULTS).map((k) => [k, config[snakeToCamel(k)]])) }),
    );
    const files = [['unet', loadSafetensorsSync(join(L, 'unet', 'diffusion_pytorch_model.safetensors'))], ['controlnet', loadSafetensorsSync(join(L, 'controlnet', 'diffusion_pytorch_model.safetensors'))]] as const;
    writeSafetensors(
      join(dir, 'diffusion_pytorch_model.safetensors'),
      files.flatMap(([from, f]) => f.keys().map((k) => ({ name: fusedKey(from, k)!, dtype: 'F32' as const, shape: f.info(k).shape, bytes: () => f.readBytes(k) }))),
    );
    const saved = await UNetControlNetXSModel.fromPretrained(dir);
    assert.ok([...saved.net.parameters()].some((p) => p.key === 'base_time_embedding.cond_proj.weight'));
    for (const name of ['unet_cnxs.lcm', 'unet_cnxs.lcm.nocontrol_timestep_cond']) {
      const c = moduleCase(name);
      assertClose((await saved.forward(forwardArgs(c))).sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), `${name} (fused folder)`);
    }
    await saved.release();
  });

  test('where diffusers fails (learned time embedding, control on), timestep_cond reaches the base time embedding of the blend', async () => {
    // time_embedding_mix 0 weighs the base embedding alone, and conditioning scale 0 adds nothing of the control
    // side: the fused model is then the plain LCM UNet (within the fused model's eps-1e-6 GroupNorm quirk, 4e-5).
    const mix0 = UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(withConfig(join(L, 'controlnet'), { time_embedding_mix: 0 })));
    for (const name of ['unet2d.lcm.timestep_cond', 'unet2d.lcm.no_timestep_cond']) {
      const c = moduleCase(name);
      const args = { ...forwardArgs(c), controlnetCond: read('inputs.lcm.controlnet_cond'), conditioningScale: 0, applyControl: true };
      assertClose((await mix0.forward(args)).sample, read(c.outputs['sample']!), 1e-4, `${name} through the blend`);
    }
    await mix0.release();
    // this adapter's mix is 1: the blend is the control time embedding alone, which has no cond_proj
    const c = moduleCase('unet_cnxs.lcm');
    const withCond = await fused.forward({ ...forwardArgs(c), timestepCond: read('inputs.lcm.timestep_cond') });
    assertClose(withCond.sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), 'mix 1 with timestep_cond');
  });
});

test('graphs: only LCM UNets take timestep_cond; it is checked like every input', async () => {
  const inputs = (m: { toOnnx: () => { graph: { inputs: readonly { name: string }[] } } }) => m.toOnnx().graph.inputs.map((i) => i.name);
  assert.ok(inputs(unet).includes('timestep_cond'));
  assert.ok(inputs(fused).includes('timestep_cond'));
  assert.ok(!inputs(base.unet).includes('timestep_cond'));
  const plain = await UNet2DConditionModel.fromPretrained(join(SD, 'unet'));
  assert.ok(!inputs(plain).includes('timestep_cond'));
  const c = moduleCase('unet2d.lcm.timestep_cond');
  await assert.rejects(plain.forward(forwardArgs(c)), (e: unknown) => e instanceof InputError && /no time_cond_proj_dim/.test(e.message));
  await assert.rejects(base.unet.forward({ ...forwardArgs(moduleCase('unet_cnxs.lcm')), timestepCond: read('inputs.lcm.timestep_cond') }), /no time_cond_proj_dim/);
  const wrong = new Tensor('float32', new Float32Array(2 * 4), [2, 4]);
  await assert.rejects(unet.forward({ ...forwardArgs(c), timestepCond: wrong }), /timestepCond must have shape \[2, 8\], got \[2, 4\]/);
  const nan = new Tensor('float32', new Float32Array(16).fill(NaN), [2, 8]);
  await assert.rejects(fused.forward({ ...forwardArgs(moduleCase('unet_cnxs.lcm')), timestepCond: nan }), /timestepCond contains NaN/);
  for (const bad of [0, 2.5, '8']) {
    await assert.rejects(UNet2DConditionModel.fromPretrained(withConfig(join(L, 'unet'), { time_cond_proj_dim: bad }), quiet), ConfigError);
  }
  await plain.release();
});

/** The LCM pipeline of a case (recipe "lcm": the tiny SD vae/text encoder/tokenizer, the LCM UNet + adapter). */
function lcmPipeline(c: PipelineCase): StableDiffusionControlNetXSPipeline {
  return new StableDiffusionControlNetXSPipeline({ ...base.components, unet, controlnet: adapter, scheduler: schedulerFromConfig(c.scheduler.config) });
}

/** Run a pipeline, recording every UNet call's batch and timestep_cond, the step timesteps and the latents after each step. */
async function runRecorded(p: StableDiffusionControlNetXSPipeline, args: StableDiffusionControlNetXSCallArgs) {
  const calls: { batch: number; timestepCond: Tensor<'float32'> | undefined }[] = [];
  const forward = p.unet.forward.bind(p.unet);
  p.unet.forward = (a) => {
    calls.push({ batch: a.sample.dims[0]!, timestepCond: a.timestepCond as Tensor<'float32'> | undefined });
    return forward(a);
  };
  const steps: Tensor<'float32'>[] = [];
  const timesteps: number[] = [];
  const out = await p.run({ ...args, outputType: 'np', callbackOnStepEnd: (_p, _i, t, { latents }) => void (steps.push(latents), timesteps.push(t)) });
  assert.ok(out.images instanceof Tensor);
  return { calls, steps, timesteps, images: out.images };
}

function assertMatchesCase(r: Awaited<ReturnType<typeof runRecorded>>, c: PipelineCase, what: string): void {
  const T = (name: string) => read(c.tensors[name]!);
  assert.deepEqual(timesteps(c), r.timesteps);
  const each = T('latents_after_each_step');
  const per = each.data.length / r.steps.length;
  assert.equal(r.steps.length, each.dims[0]);
  r.steps.forEach((s, i) =>
    assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), tol(c, 'latents_final', 1e-4), `${what}: latents after step ${i}`),
  );
  assertClose(r.images, T('images'), tol(c, 'images', 1e-4), `${what}: images`);
}
const timesteps = (c: PipelineCase) => Array.from(read(c.tensors['timesteps']!).data as BigInt64Array, Number);

describe('StableDiffusionControlNetXSPipeline with an LCM UNet and LCMScheduler equals diffusers', () => {
  for (const name of ['pipe.sd.lcm.g1.0', 'pipe.sd.lcm.g6.0']) {
    test(name, async () => {
      const c = pipelineCase(name);
      const args = callArgs<StableDiffusionControlNetXSCallArgs>(c, join(SD, 'pipeline'), read);
      const r = await runRecorded(lcmPipeline(c), args);
      assertMatchesCase(r, c, name);
      // no timestep_cond, and CFG (a doubled batch) exactly when guidanceScale > 1
      assert.deepEqual(r.calls.map((x) => [x.batch, x.timestepCond]), r.calls.map(() => [args.guidanceScale! > 1 ? 2 : 1, undefined]));
    });
  }
});

describe('embedGuidanceScale (beyond diffusers)', () => {
  test('passes the embedding of w = guidanceScale − 1 and runs no CFG; with this adapter (mix 1) it is the guidanceScale 1 run', async () => {
    const g6 = pipelineCase('pipe.sd.lcm.g6.0');
    const args = callArgs<StableDiffusionControlNetXSCallArgs>(g6, join(SD, 'pipeline'), read);
    const r = await runRecorded(lcmPipeline(g6), { ...args, embedGuidanceScale: true });
    const emb = read('lcm.guidance_scale_embedding.emb');
    const row5 = new Tensor('float32', (emb.data as Float32Array).slice(8, 16), [1, 8]); // w = 5
    assert.equal(r.calls.length, 4);
    for (const call of r.calls) {
      assert.equal(call.batch, 1);
      assertClose(call.timestepCond!, row5, 1e-6, 'timestep_cond');
    }
    // diffusers' fused forward routes timestep_cond only into the base half of the learned time-embedding blend,
    // which time_embedding_mix 1 weighs by 0: what is left of the opt-in is "no CFG" (the g1.0 reference)
    assertMatchesCase(r, pipelineCase('pipe.sd.lcm.g1.0'), 'embedded guidance 6.0');
    assert.ok(maxAbsDiff(r.images, read(g6.tensors['images']!)) > 0.5, 'differs from the CFG run');
  });

  test('is refused for a UNet without time_cond_proj_dim, before any model runs', async () => {
    const g1 = pipelineCase('pipe.sd.lcm.g1.0');
    const args = callArgs<StableDiffusionControlNetXSCallArgs>(g1, join(SD, 'pipeline'), read);
    await assert.rejects(base.run({ ...args, embedGuidanceScale: true }), (e: unknown) => e instanceof InputError && /embedGuidanceScale needs an LCM-distilled UNet/.test(e.message));
  });

  test('cnxs generate --embed-guidance-scale', async () => {
    const argv = ['--prompt', 'a bird', '--control', join(SD, 'pipeline', 'control.png'), '--model', SD, '--controlnet', join(SD, 'controlnet'), '--graph-cache', 'off'];
    const o = parseGenerateArgs([...argv, '--embed-guidance-scale', '-o', join(tempDir('cnxs-lcm-cli-'), 'x.png')]) as GenerateOptions;
    assert.equal(o.embedGuidanceScale, true);
    assert.equal((parseGenerateArgs(argv) as GenerateOptions).embedGuidanceScale, false);
    assert.match(a1111Parameters(o, { sampler: 'LCM', seed: 1n, width: 64, height: 64, controlnet: 'c' }), /, Guidance embedding: on$/);
    const sink = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
    await assert.rejects(generate(o, { stdout: sink, stderr: sink }), (e: unknown) => e instanceof UsageError && /--embed-guidance-scale needs an LCM-distilled UNet/.test(e.message));
  });
});

test('SDXL: an LCM-SDXL-style UNet (text_time + time_cond_proj_dim) runs in the SDXL pipeline with embedGuidanceScale', async () => {
  // No diffusers reference exists for SDXL (its ControlNet-XS pipeline never passes timestep_cond either), so this
  // checks the wiring: the tiny SDXL UNet given time_cond_proj_dim 8 and a cond_proj of fixed values.
  const XL = fixture('tiny-sdxl-cnxs');
  const dir = withConfig(join(XL, 'unet'), { time_cond_proj_dim: 8 });
  const src = loadSafetensorsSync(join(XL, 'unet', 'diffusion_pytorch_model.safetensors'));
  const condProj = Float32Array.from({ length: 16 * 8 }, (_, i) => Math.sin(i) * 0.5);
  writeSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), [
    ...src.keys().map((name) => ({ name, dtype: 'F32' as const, shape: src.info(name).shape, bytes: () => src.readBytes(name) })),
    { name: 'time_embedding.cond_proj.weight', dtype: 'F32', shape: [16, 8], bytes: () => new Uint8Array(condProj.buffer) },
  ]);
  const xlUnet = await UNet2DConditionModel.fromPretrained(dir);
  const xlAdapter = await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet'));
  const loaded = await StableDiffusionXLControlNetXSPipeline.fromPretrained(XL, { controlnet: xlAdapter });
  const p = new StableDiffusionXLControlNetXSPipeline({ ...loaded.components, unet: xlUnet, controlnet: xlAdapter, scheduler: new LCMScheduler(loaded.scheduler.config) });
  const calls: { batch: number; timestepCond: Tensor<'float32'> | undefined }[] = [];
  const forward = p.unet.forward.bind(p.unet);
  p.unet.forward = (a) => {
    calls.push({ batch: a.sample.dims[0]!, timestepCond: a.timestepCond as Tensor<'float32'> | undefined });
    return forward(a);
  };
  const args = { prompt: 'a bird', image: join(XL, 'pipeline', 'control.png'), height: 64, width: 64, numInferenceSteps: 2, guidanceScale: 8, outputType: 'np' as const };
  const out = await p.run({ ...args, numImagesPerPrompt: 2, generator: new Generator().manualSeed(0), embedGuidanceScale: true });
  assert.ok(out.images instanceof Tensor && out.images.dims[0] === 2 && (out.images.data as Float32Array).every(Number.isFinite));
  const want = guidanceScaleEmbedding([7, 7], 8);
  assert.deepEqual(calls.map((c) => c.batch), [2, 2]); // two images, no CFG rows
  for (const c of calls) assertClose(c.timestepCond!, want, 0, 'timestep_cond');
  // the plain UNet reads it through time_embedding.cond_proj next to the text_time embedding
  const x = { sample: new Tensor('float32', new Float32Array(4 * 64).fill(0.1), [1, 4, 8, 8]), timestep: 500, encoderHiddenStates: new Tensor('float32', new Float32Array(77 * 64).fill(0.01), [1, 77, 64]) };
  const added = { textEmbeds: new Tensor('float32', new Float32Array(32).fill(0.1), [1, 32]), timeIds: new Tensor('float32', Float32Array.from([64, 64, 0, 0, 64, 64]), [1, 6]) };
  const withCond = (await xlUnet.forward({ ...x, addedCondKwargs: added, timestepCond: guidanceScaleEmbedding([7], 8) })).sample;
  const without = (await xlUnet.forward({ ...x, addedCondKwargs: added })).sample;
  assert.ok(maxAbsDiff(withCond, without) > 1e-3, 'timestep_cond changes the SDXL UNet output');
  await Promise.all([xlUnet.release(), p.unet.release(), loaded.unet.release()]);
});
