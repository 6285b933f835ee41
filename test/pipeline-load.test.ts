/**
 * `loadControlNetXSPipeline` (the SD/SDXL choice from model_index.json, default adapters) and the
 * pipelines' size check at the start of a call, in pixels.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { DEFAULT_CONTROLNETS, DEFAULT_DEPTH_CONTROLNETS, loadControlNetXSPipeline, pipelineKind } from '../src/pipelines/load.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { fixture, tempDir } from './helpers.js';

const SD = fixture('tiny-sd-cnxs');
const XL = fixture('tiny-sdxl-cnxs');

test('loadControlNetXSPipeline picks the pipeline from model_index.json and says which adapter it used', async () => {
  assert.equal(pipelineKind(SD), 'sd');
  assert.equal(pipelineKind(XL), 'sdxl');
  const sd = await loadControlNetXSPipeline(SD, { controlnet: join(SD, 'controlnet') });
  assert.ok(sd.pipeline instanceof StableDiffusionControlNetXSPipeline);
  assert.equal(sd.controlnet, join(SD, 'controlnet'));
  const xl = await loadControlNetXSPipeline(XL, { controlnet: join(XL, 'controlnet'), variant: 'fp16' });
  assert.ok(xl.pipeline instanceof StableDiffusionXLControlNetXSPipeline, 'SDXL class, and the fp16 variant falls back where the adapter has none');
  assert.equal(xl.kind, 'sdxl');
  assert.equal(DEFAULT_CONTROLNETS.sdxl, 'UmerHA/Testing-ConrolNetXS-SDXL-canny');
  // the sizes the pipeline generates: the tiny UNet has 3 levels and an 8× VAE, sample_size 8
  assert.deepEqual(sd.pipeline.sizeRules, { multiple: 32, vaeScaleFactor: 8, defaultSize: 64 });
});

test('without an adapter, controlType picks the published canny or depth adapter of the model family', async () => {
  const cacheDir = tempDir(); // empty: the error names the adapter it looked for
  const cases = [
    [SD, undefined, 'UmerHA/Testing-ConrolNetXS-SD2.1-canny'],
    [SD, 'depth', 'UmerHA/Testing-ConrolNetXS-SD2.1-depth'],
    [XL, 'canny', 'UmerHA/Testing-ConrolNetXS-SDXL-canny'],
    [XL, 'depth', 'UmerHA/Testing-ConrolNetXS-SDXL-depth'],
  ] as const;
  for (const [model, controlType, id] of cases) {
    await assert.rejects(
      loadControlNetXSPipeline(model, { ...(controlType ? { controlType } : {}), localFilesOnly: true, cacheDir }),
      (e: Error) => e.message.includes(id),
      `${controlType ?? 'default'} on ${model}`,
    );
  }
  assert.deepEqual([DEFAULT_CONTROLNETS.sd, DEFAULT_DEPTH_CONTROLNETS.sdxl], [cases[0][2], cases[3][2]]);
});

test('run() checks the size first, in pixels, for control images and for given sizes alike', async () => {
  const { pipeline } = await loadControlNetXSPipeline(SD, { controlnet: join(SD, 'controlnet') });
  const odd = new RGBImage(50, 37, new Uint8Array(50 * 37 * 3));
  const calls = [
    [{ image: odd }, /^48×32 px \(from the control image; height and width not given\) cannot be generated: width and height must be multiples of 32 px .*e\.g\. 64×32$/],
    [{ image: odd, width: 64, height: 48 }, /^64×48 px \(height and width given\) cannot be generated: .*multiples of 32 px/],
    [{ image: odd, width: 16, height: 64 }, /^width must be an integer ≥ 32 px, got 16$/],
  ] as const;
  for (const [args, message] of calls) {
    let encoded = false;
    const encode = pipeline.textEncoder.forward.bind(pipeline.textEncoder);
    pipeline.textEncoder.forward = (...a) => ((encoded = true), encode(...a));
    await assert.rejects(pipeline.run({ prompt: 'x', numInferenceSteps: 1, ...args }), (e: unknown) => e instanceof InputError && message.test(e.message));
    assert.equal(encoded, false, 'refused before the text encoder ran');
  }
  const ok = await pipeline.run({ prompt: 'x', image: odd, numInferenceSteps: 1, width: 64, height: 32 });
  assert.deepEqual([ok.images[0]!.width, ok.images[0]!.height], [64, 32]);
});

test('loadControlNetXSPipeline passes a VAE through (TAESD instead of the model\'s AutoencoderKL)', async () => {
  const { AutoencoderTiny } = await import('../src/models/autoencoder-tiny.js');
  const taesd = await AutoencoderTiny.fromPretrained(fixture('taesd', 'tiny-taesd'));
  const { pipeline } = await loadControlNetXSPipeline(SD, { controlnet: join(SD, 'controlnet'), vae: taesd });
  assert.equal(pipeline.vae, taesd);
});
