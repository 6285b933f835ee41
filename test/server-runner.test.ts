/**
 * The server's runner on the tiny checkpoints: the PNGs `cnxs generate` writes for the same settings
 * (byte for byte, parameters chunk included), diffusers' pixels for the reference case, seeds seed + k,
 * no scheduler change leaking into the next job, cancel between steps, previews per step (checked
 * against the reference latents of each step), one job at a time.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HELP, generate, parseGenerateArgs } from '../src/cli/generate.js';
import { SettingError } from '../src/generate/errors.js';
import { latentToRgb } from '../src/generate/latent-preview.js';
import { loadImage } from '../src/image/load.js';
import { readPngText } from '../src/image/png-text.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { previewImages } from '../src/pipelines/preview.js';
import type { GenerationRequest } from '../src/server/jobs.js';
import { RunnerBusyError, createPipelineRunner, type PipelineRunner } from '../src/server/runner.js';
import { Tensor } from '../src/tensor.js';
import { fixture, tempDir } from './helpers.js';
import { readCases } from './pipeline-cases.js';

const D = fixture('tiny-sd-cnxs');
const CONTROL = join(D, 'pipeline', 'control.png');
const quiet = () => {};
const sink = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;

function request(over: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    prompt: 'a photo of a bird',
    imageBase64: readFileSync(CONTROL).toString('base64'),
    steps: 4,
    guidanceScale: 7.5,
    controlScale: 1,
    controlStart: 0,
    controlEnd: 1,
    seed: '0',
    numImages: 1,
    ...over,
  };
}

/** `cnxs generate` in this process (no graph cache): the PNG files it wrote. */
async function cliImages(model: string, args: string[], n: number): Promise<Buffer[]> {
  const out = join(tempDir('cnxs-runner-cli-'), 'out.png');
  const o = parseGenerateArgs(['--model', model, '--graph-cache', 'off', '--out', out, ...args]);
  assert.notEqual(o, HELP);
  if (o === HELP) return [];
  await generate(o, { stdout: sink, stderr: sink });
  const paths = n === 1 ? [out] : Array.from({ length: n }, (_, i) => out.replace(/\.png$/, `-${i}.png`));
  return paths.map((p) => readFileSync(p));
}

/** Largest per-byte difference of two equal-length pixel buffers. */
function worstPixel(a: Uint8Array, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('pipeline runner on tiny-sd-cnxs', () => {
  let runner: PipelineRunner;
  const warnings: string[] = [];
  const { cases, read } = readCases(join(D, 'pipeline'));
  const ref = cases.find((c) => c.name === 'b_generator_seed0')!;
  /** diffusers' latents after each of the 4 steps: [4, 1, 4, 8, 8]. */
  const refLatents = read(ref.tensors['latents_after_each_step']!) as Tensor<'float32'>;
  const refStep = (k: number) => new Tensor('float32', refLatents.data.slice(k * 256, (k + 1) * 256), [1, 4, 8, 8]);

  before(async () => {
    runner = await createPipelineRunner({ model: D, controlnet: join(D, 'controlnet'), warn: (m) => warnings.push(m) });
  });
  after(async () => runner.close());

  test('describe(): what /readyz shows', () => {
    const d = runner.describe();
    assert.deepEqual(d, {
      model: D,
      controlnet: join(D, 'controlnet'),
      pipeline: 'StableDiffusionControlNetXSPipeline',
      device: 'cpu',
      sampler: 'DDIM',
      defaultSize: 64,
      sizeMultiple: 32,
      preview: 'latent-rgb',
      busy: false,
      jobsRun: 0,
    });
  });

  test('the same PNG bytes as cnxs generate with the same settings (2 images: seed, seed + 1; a named sampler)', async () => {
    const settings = { negativePrompt: 'blurry', steps: 3, guidanceScale: 6, controlScale: 0.8, scheduler: 'euler-a', seed: '5', numImages: 2 };
    const out = await runner.run(request(settings));
    const expected = await cliImages(
      D,
      ['--controlnet', join(D, 'controlnet'), '--control', CONTROL, '--prompt', 'a photo of a bird', '--negative-prompt', 'blurry', '--steps', '3', '--guidance-scale', '6', '--control-scale', '0.8', '--scheduler', 'euler-a', '--seed', '5', '--num-images', '2'],
      2,
    );
    assert.equal(out.images.length, 2);
    for (const [i, png] of out.images.entries()) assert.ok(Buffer.from(png).equals(expected[i]!), `image ${i}: not the bytes cnxs generate wrote`);
    assert.deepEqual(out.info.seeds, ['5', '6']);
    assert.deepEqual(out.images.map((p) => readPngText(p)['parameters']), out.info.parameters);
    assert.match(out.info.parameters[1]!, /^a photo of a bird\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 6, Seed: 6, Size: 64x64, /);
    assert.deepEqual([out.info.width, out.info.height, out.info.sampler, out.info.device, out.info.nsfwContentDetected], [64, 64, 'Euler a', 'cpu', null]);
    assert.ok(out.info.seconds > 0);
  });

  test("the next job runs on the model's own sampler: diffusers' pixels for b_generator_seed0, previews per step", async () => {
    const progress: { step: number; total: number; previewPng?: Uint8Array }[] = [];
    const out = await runner.run(request(), { onProgress: (p) => progress.push(p) });
    assert.equal(out.info.sampler, 'DDIM', 'the previous job\'s Euler a did not stay');
    const expected = read(ref.tensors['images']!).data as Float32Array;
    const got = (await loadImage(out.images[0]!)).data;
    assert.ok(worstPixel(got, Array.from(expected, (v) => v * 255)) <= 0.5 + 1e-2, 'pixels within one rounding step of diffusers');
    assert.deepEqual(progress.map((p) => [p.step, p.total]), [[1, 4], [2, 4], [3, 4], [4, 4]]);
    // each preview is the latent→RGB map of that step's latents: diffusers' latents give the same bytes (±1 for rounding)
    for (const [k, p] of progress.entries()) {
      assert.ok(p.previewPng, `step ${k + 1} has a preview`);
      const preview = await loadImage(p.previewPng);
      assert.deepEqual([preview.width, preview.height], [8, 8]);
      assert.ok(worstPixel(preview.data, latentToRgb(refStep(k), 'sd').data) <= 1, `preview at step ${k + 1}`);
    }
    assert.equal(runner.describe().jobsRun, 2);
  });

  test('cancel: the run stops between steps with an AbortError, and the runner takes the next job', async () => {
    const stop = new AbortController();
    const steps: number[] = [];
    await assert.rejects(
      runner.run(request({ steps: 4 }), {
        signal: stop.signal,
        onProgress: (p) => {
          steps.push(p.step);
          if (p.step === 2) stop.abort();
        },
      }),
      (e: unknown) => e instanceof Error && e.name === 'AbortError',
    );
    assert.deepEqual(steps, [1, 2], 'no step after the abort');
    assert.equal(runner.describe().busy, false);
    assert.equal((await runner.run(request({ steps: 1 }))).images.length, 1);
  });

  test('one job at a time: an overlapping run is refused, the first finishes', async () => {
    const first = runner.run(request({ steps: 1 }));
    await assert.rejects(runner.run(request({ steps: 1 })), RunnerBusyError);
    assert.equal((await first).images.length, 1);
  });

  test('what only the model can judge fails the job with the setting named; a size is rounded with a note', async () => {
    await assert.rejects(runner.run(request({ steps: 1001 })), (e: unknown) => e instanceof SettingError && e.setting === 'steps' && /steps 1001 is more than this model's scheduler was trained on \(1000\)/.test(e.message));
    // DDIM's leading spacing + steps_offset 1 at 1000 steps starts at timestep 1000 (diffusers fails mid-loop)
    await assert.rejects(runner.run(request({ steps: 1000 })), (e: unknown) => e instanceof SettingError && e.setting === 'steps' && /steps 1000 makes DDIMScheduler start at timestep 1000, past its 1000-entry table/.test(e.message));
    warnings.length = 0;
    const out = await runner.run(request({ steps: 1, width: 70, height: 60 }));
    assert.deepEqual([out.info.width, out.info.height], [64, 64]);
    assert.deepEqual(warnings, ['70×60 px is not a multiple of 32 px for this model; generating 64×64']);
  });

  test('a runner with a TAESD preview decoder: each preview is TAESD\'s decode of that step\'s latents (diffusers\' latents give the same)', async () => {
    const taesdDir = fixture('taesd', 'tiny-taesd');
    const taesdRunner = await createPipelineRunner({ model: D, controlnet: join(D, 'controlnet'), previewVae: taesdDir, maxPixels: 64 * 64, warn: quiet });
    const taesd = await AutoencoderTiny.fromPretrained(taesdDir, { warn: quiet });
    try {
      assert.equal(taesdRunner.describe().preview, 'taesd');
      const previews: Uint8Array[] = [];
      await taesdRunner.run(request(), { onProgress: (p) => p.previewPng && previews.push(p.previewPng) });
      assert.equal(previews.length, 4);
      for (const [k, png] of previews.entries()) {
        const got = await loadImage(png);
        const [expected] = await previewImages(refStep(k), { decoder: taesd });
        assert.deepEqual([got.width, got.height], [64, 64]);
        assert.ok(worstPixel(got.data, expected!.data) <= 1, `TAESD preview at step ${k + 1}`);
      }
      // the runner's pixel cap applies to the rounded size
      await assert.rejects(taesdRunner.run(request({ steps: 1, width: 96, height: 64 })), (e: unknown) => e instanceof SettingError && e.setting === 'maxPixels');
    } finally {
      await Promise.all([taesdRunner.close(), taesd.release()]);
    }
  });
});

test('SDXL (tiny-sdxl-cnxs): the runner writes the PNG bytes cnxs generate writes; latent previews use the SDXL map', async () => {
  const X = fixture('tiny-sdxl-cnxs');
  const control = join(X, 'pipeline', 'control.png');
  const runner = await createPipelineRunner({ model: X, controlnet: join(X, 'controlnet'), warn: quiet });
  try {
    assert.equal(runner.describe().pipeline, 'StableDiffusionXLControlNetXSPipeline');
    const previews: Uint8Array[] = [];
    const out = await runner.run(
      { ...request({ steps: 2, seed: '3', scheduler: 'euler' }), imageBase64: readFileSync(control).toString('base64') },
      { onProgress: (p) => p.previewPng && previews.push(p.previewPng) },
    );
    const [expected] = await cliImages(X, ['--controlnet', join(X, 'controlnet'), '--control', control, '--prompt', 'a photo of a bird', '--steps', '2', '--seed', '3', '--scheduler', 'euler'], 1);
    assert.ok(Buffer.from(out.images[0]!).equals(expected!), 'not the bytes cnxs generate wrote');
    assert.equal(previews.length, 2);
  } finally {
    await runner.close();
  }
});
