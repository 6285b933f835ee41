/**
 * StableDiffusionControlNetXSPipeline against diffusers 0.33.1: every case of
 * test/fixtures/tiny-sd-cnxs/pipeline — control image, prompt embeddings, latents after every step
 * and the final images, whole tensors, tolerances from the cases' fp32-vs-fp64 hints.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, InputError } from '../src/errors.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { catBatch } from '../src/pipelines/batch.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { Generator } from '../src/random/index.js';
import { callArgs, readCases, tolerance, type PipelineCase } from './pipeline-cases.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { assertClose, fixture } from './helpers.js';

const D = fixture('tiny-sd-cnxs');
const P = join(D, 'pipeline');

const { cases, read } = readCases(P);
const tol = tolerance;
const callArgsOf = (c: PipelineCase) => callArgs<StableDiffusionControlNetXSCallArgs>(c, P, read);

let pipe: StableDiffusionControlNetXSPipeline;
let pipe16: StableDiffusionControlNetXSPipeline;

before(async () => {
  pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(D, { controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet')) });
  pipe16 = await StableDiffusionControlNetXSPipeline.fromPretrained(D, {
    variant: 'fp16',
    controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'), { variant: 'fp16' }),
  });
});

describe('StableDiffusionControlNetXSPipeline equals diffusers', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const base = c.load.variant === 'fp16' ? pipe16 : pipe;
      const p = new StableDiffusionControlNetXSPipeline({ ...base.components, scheduler: schedulerFromConfig(c.scheduler.config) });
      const args = callArgsOf(c);
      const steps: Tensor<'float32'>[] = [];
      const out = await p.run({ ...args, callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents) });
      const T = (name: string) => read(c.tensors[name]!);

      // control image as the UNet saw it (first row)
      const control = p.prepareImage(await (await import('../src/pipelines/inputs.js')).resolveControlImage(args.image), {
        ...(args.height ? { height: args.height } : {}),
        ...(args.width ? { width: args.width } : {}),
        batchSize: 1,
        numImagesPerPrompt: 1,
        doClassifierFreeGuidance: false,
      });
      assertClose(control, T('control_image'), 1e-6, 'control_image');
      if (c.tensors['prompt_embeds'] && !args.promptEmbeds) {
        const { promptEmbeds } = await p.encodePrompt(args.prompt, {
          numImagesPerPrompt: args.numImagesPerPrompt ?? 1,
          doClassifierFreeGuidance: false,
          ...(args.clipSkip !== undefined ? { clipSkip: args.clipSkip } : {}),
        });
        assertClose(promptEmbeds, T('prompt_embeds'), tol(c, 'prompt_embeds', 1e-5), 'prompt_embeds');
      }
      const each = T('latents_after_each_step');
      assert.equal(steps.length, each.dims[0]);
      const per = each.data.length / steps.length;
      steps.forEach((s, i) =>
        assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), tol(c, 'latents_final', 1e-4), `latents after step ${i}`),
      );
      assert.ok(out.images instanceof Tensor);
      assertClose(out.images, T('images'), tol(c, 'images', 1e-4), 'images');
      assert.equal(out.nsfwContentDetected, null);
    });
  }
});

test("output type 'pil' rounds like numpy_to_pil, and matches diffusers' uint8 images (case a)", async () => {
  const c = cases.find((x) => x.name === 'a_default_latents')!;
  const p = new StableDiffusionControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
  const pil = (await p.run({ ...callArgsOf(c), outputType: 'pil' })).images;
  const np = (await p.run({ ...callArgsOf(c), outputType: 'np' })).images;
  assert.ok(Array.isArray(pil));
  const got = pil[0]!.data;
  const expected = read(c.tensors['images_uint8_pil']!).data;
  const reference = read(c.tensors['images']!).data as Float32Array;
  for (let i = 0; i < got.length; i++) {
    // our own rounding: numpy's round-half-to-even of x·255
    const x = np.data[i]! * 255;
    const even = Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
    assert.equal(got[i], even, `pixel ${i}`);
    // against diffusers: equal, except where its float value sits on a rounding boundary (fp32 noise decides)
    if (got[i] !== Number(expected[i])) {
      const r = reference[i]! * 255;
      assert.ok(Math.abs(r - Math.floor(r) - 0.5) < 1e-3 && Math.abs(got[i]! - Number(expected[i])) === 1, `pixel ${i}: ${got[i]} vs ${expected[i]} (${r})`);
    }
  }
});

test('two generations interleaved on one pipeline give what each gives alone', async () => {
  const c = cases.find((x) => x.name === 'q_ddim_eta1_seed5')!; // stochastic: the generator is drawn inside step
  const p = new StableDiffusionControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
  const a = p.steps({ ...callArgsOf(c), outputType: 'latent' });
  const b = p.steps({ ...callArgsOf(c), outputType: 'latent', numInferenceSteps: 6, generator: new Generator().manualSeed(9) });
  let ra = await a.next();
  let rb = await b.next();
  while (!ra.done || !rb.done) {
    if (!ra.done) ra = await a.next();
    if (!rb.done) rb = await b.next();
  }
  assertClose(ra.value.images, read(c.tensors['latents_final']!), tol(c, 'latents_final', 1e-4), 'interleaved run a');
  const alone = await p.run({ ...callArgsOf(c), outputType: 'latent', numInferenceSteps: 6, generator: new Generator().manualSeed(9) });
  assertClose(rb.value.images, alone.images, 0, 'interleaved run b');
});

test('cancel with an AbortSignal; bad arguments are named', async () => {
  const c = cases[0]!;
  const controller = new AbortController();
  const args = callArgsOf(c);
  await assert.rejects(
    pipe.run({ ...args, signal: controller.signal, callbackOnStepEnd: (_p, i) => void (i === 1 && controller.abort()) }),
    /aborted/,
  );
  // A patch may set a key to undefined, as a JavaScript caller can: the pipeline must name what is missing.
  type ArgsPatch = { [K in keyof StableDiffusionControlNetXSCallArgs]?: StableDiffusionControlNetXSCallArgs[K] | undefined };
  const bad: [ArgsPatch, RegExp][] = [
    [{ prompt: undefined }, /Provide either `prompt` or `promptEmbeds`/],
    [{ promptEmbeds: Tensor.zeros([1, 77, 32]) }, /Cannot forward both `prompt` and `promptEmbeds`/],
    [{ controlGuidanceStart: 0.5, controlGuidanceEnd: 0.5 }, /cannot be larger or equal/],
    [{ controlGuidanceEnd: 1.5 }, /can't be larger than 1.0/],
    [{ numInferenceSteps: 0 }, /numInferenceSteps must be a positive integer/],
    [{ negativePrompt: ['a', 'b'] }, /should be the same type/],
    [{ image: undefined }, /`image` must be passed/],
    [{ generator: [new Generator(), new Generator()] }, /list of generators of length 2/],
    [{ image: join(P, 'does-not-exist.png') }, /does-not-exist\.png/],
  ];
  for (const [patch, message] of bad) {
    await assert.rejects(pipe.run({ ...args, latents: undefined, ...patch } as StableDiffusionControlNetXSCallArgs), (e: Error) => e instanceof InputError && message.test(e.message), String(message));
  }
});

test('model offload releases each session after its stage, with the same images', async () => {
  const c = cases.find((x) => x.name === 'a_default_latents')!;
  const p = new StableDiffusionControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
  p.offload.enabled = true;
  const released: string[] = [];
  const restore: (() => void)[] = [];
  for (const [name, m] of [['textEncoder', p.textEncoder], ['unet', p.unet], ['vae', p.vae]] as const) {
    const original = m.release;
    m.release = async function (this: typeof m) {
      released.push(name);
      await original.call(this);
    };
    restore.push(() => (m.release = original));
  }
  after(() => restore.forEach((r) => r()));
  for (let i = 0; i < 2; i++) {
    const { images } = await p.run(callArgsOf(c));
    assertClose(images as Tensor, read(c.tensors['images']!), tol(c, 'images', 1e-4), `images, run ${i}`);
  }
  assert.deepEqual(released, ['textEncoder', 'unet', 'vae', 'textEncoder', 'unet', 'vae']);
  // two generations at once: nothing is released while the other one runs
  released.length = 0;
  await Promise.all([p.run(callArgsOf(c)), p.run(callArgsOf(c))]);
  assert.ok(released.length <= 3, `released ${released.join(', ')}`);
});

test('a declared safety checker is loaded: a folder that declares one without shipping it is a ConfigError (safety-checker tests: pipeline-safety-checker.test.ts)', async () => {
  // An SD 1.5-style model_index.json over the tiny components, without the checker's folders.
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-safety-'));
  try {
    for (const name of readdirSync(D)) if (name !== 'model_index.json' && name !== 'pipeline') symlinkSync(resolve(D, name), join(dir, name));
    const index = JSON.parse(readFileSync(join(D, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    index['safety_checker'] = ['stable_diffusion', 'StableDiffusionSafetyChecker'];
    index['feature_extractor'] = ['transformers', 'CLIPImageProcessor'];
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify(index));
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromPretrained(dir, { warn: () => {} }), (e: Error) => e instanceof ConfigError && e.message.includes(dir));
    const quiet: string[] = [];
    const p = await StableDiffusionControlNetXSPipeline.fromPretrained(D, { warn: (m) => quiet.push(m) });
    assert.deepEqual(quiet, []);
    assert.equal(p.components.safetyChecker, null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('callbackOnStepEndTensorInputs (diffusers callback_on_step_end_tensor_inputs)', () => {
  const byName = (name: string) => cases.find((x) => x.name === name)!;

  test('the callback sees the embeddings the UNet sees, negatives first', async () => {
    const c = byName('c_negative_prompt');
    const seen: Record<string, Tensor>[] = [];
    await pipe.run({ ...callArgsOf(c), outputType: 'latent', callbackOnStepEndTensorInputs: ['promptEmbeds', 'negativePromptEmbeds'], callbackOnStepEnd: (_p, _i, _t, tensors) => void seen.push({ ...tensors }) });
    assert.equal(seen.length, 4);
    assert.deepEqual(Object.keys(seen[0]!).sort(), ['latents', 'negativePromptEmbeds', 'promptEmbeds']);
    assertClose(seen[0]!['promptEmbeds']!, read(c.tensors['unet_step0.encoder_hidden_states']!), tol(c, 'prompt_embeds', 1e-5), 'promptEmbeds');
    assertClose(seen[3]!['negativePromptEmbeds']!, read(c.tensors['negative_prompt_embeds']!), tol(c, 'prompt_embeds', 1e-5), 'negativePromptEmbeds');

    const noCfg: string[][] = [];
    await pipe.run({ ...callArgsOf(byName('d_no_cfg')), outputType: 'latent', callbackOnStepEndTensorInputs: ['negativePromptEmbeds'], callbackOnStepEnd: (_p, _i, _t, t) => void noCfg.push(Object.keys(t)) });
    assert.deepEqual(noCfg[0], ['latents']); // no negatives without guidance (diffusers passes None)
  });

  test('promptEmbeds handed back are what the following steps use', async () => {
    // DDIM (eta 0) keeps no state but the timesteps, so "switch the embeddings after step 0" must equal
    // "start with the other embeddings and take step 0's latents from the first run".
    const a = callArgsOf(byName('a_default_latents'));
    const other = await pipe.encodePrompt(a.prompt, { numImagesPerPrompt: 1, doClassifierFreeGuidance: true, negativePrompt: 'blurry, low quality' });
    const switched = catBatch([other.negativePromptEmbeds!, other.promptEmbeds]);
    let afterStep0: Tensor<'float32'> | undefined;
    const runA = await pipe.run({
      ...a,
      outputType: 'latent',
      callbackOnStepEnd: (_p, i, _t, { latents }) => {
        if (i !== 0) return;
        afterStep0 = latents;
        return { promptEmbeds: switched };
      },
    });
    const runB = await pipe.run({ ...a, negativePrompt: 'blurry, low quality', outputType: 'latent', callbackOnStepEnd: (_p, i) => (i === 0 ? { latents: afterStep0! } : undefined) });
    assertClose(runA.images, runB.images, 0, 'switched after step 0');
    const plain = read(byName('a_default_latents').tensors['latents_final']!);
    assert.ok(!runA.images.data.every((v, i) => Math.abs(v - Number(plain.data[i])) < 1e-4), 'the switch changed the result');
  });

  test('unknown names and mis-shaped replacements are named', async () => {
    const a = callArgsOf(byName('a_default_latents'));
    await assert.rejects(
      pipe.run({ ...a, callbackOnStepEndTensorInputs: ['latents', 'addTimeIds'] as unknown as ['latents'], callbackOnStepEnd: () => undefined }),
      (e: Error) => e instanceof InputError && /has to be in \[latents, promptEmbeds, negativePromptEmbeds\], but found \[addTimeIds\]/.test(e.message),
    );
    await assert.rejects(
      pipe.run({ ...a, callbackOnStepEnd: () => ({ promptEmbeds: Tensor.zeros([1, 77, 32]) }) }),
      (e: Error) => e instanceof InputError && /callbackOnStepEnd promptEmbeds/.test(e.message),
    );
  });
});


test("diffusers' memory switches: enableVaeSlicing/Tiling and enableModelCpuOffload, the same images (case g, two images)", async () => {
  const c = cases.find((x) => x.name === 'g_prompt_list_x2_images')!;
  const p = new StableDiffusionControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
  p.enableVaeSlicing();
  p.enableVaeTiling();
  p.enableModelCpuOffload();
  assert.deepEqual([p.vaeDecode, p.offload.enabled], [{ sliced: true, tiled: true }, true]);
  const out = await p.run(callArgsOf(c));
  assertClose(out.images as Tensor, read(c.tensors['images']!), tol(c, 'images', 1e-4), 'images, sliced + tiled decode, offload');
  p.disableVaeSlicing();
  p.disableVaeTiling();
  assert.deepEqual(p.vaeDecode, { sliced: false, tiled: false });
  assert.deepEqual(pipe.vaeDecode, { sliced: false, tiled: false }, 'switches belong to one pipeline object');
});
