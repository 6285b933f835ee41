/**
 * TAESD in the SD ControlNet-XS pipeline against diffusers 0.33.1 (test/fixtures/taesd, over the
 * tiny-sd-cnxs pipeline): `vae=AutoencoderTiny` (case pipeline_vae_taesd: the loop unchanged, the
 * image `taesd.decode(latents / 1.0)` postprocessed), model_index.json naming AutoencoderTiny, and
 * TAESD previews of the latents `steps()` yields (case latent_preview).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { before, describe, test } from 'node:test';
import { ConfigError } from '../src/errors.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { previewImages } from '../src/pipelines/preview.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture, tempDir } from './helpers.js';
import { callArgs, readCases, tolerance, type PipelineCase } from './pipeline-cases.js';

const SD = fixture('tiny-sd-cnxs');
const P = join(SD, 'pipeline');
const T = fixture('taesd');
const TINY = join(T, 'tiny-taesd');

const sd = readCases(P);
const taesdTensors = loadSafetensorsSync(join(T, 'tensors.safetensors'));
/** A key of the TAESD fixtures, else of the tiny-sd-cnxs pipeline (the shared `inputs.*` latents). */
const read = (key: string): Tensor => (taesdTensors.keys().includes(key) ? taesdTensors.read(key) : sd.read(key));
const f32 = (key: string) => read(key) as Tensor<'float32'>;
const taesdCases = JSON.parse(readFileSync(join(T, 'cases.json'), 'utf8')) as (PipelineCase & { kind: string; steps?: Record<string, PreviewStep> })[];
interface PreviewStep {
  latents: string;
  decoded: string;
  preview_image: string;
  max_abs_diff_fp32_vs_fp64: number;
}
const caseNamed = (name: string) => {
  const c = taesdCases.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
};

let taesd: AutoencoderTiny;
let adapter: ControlNetXSAdapter;
before(async () => {
  taesd = await AutoencoderTiny.fromPretrained(TINY);
  adapter = await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet'));
});

describe('TAESD as the pipeline’s vae equals diffusers', () => {
  test('pipeline_vae_taesd: same loop, image = postprocess(taesd.decode(latents / 1.0))', async () => {
    const c = caseNamed('pipeline_vae_taesd');
    const loaded = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: adapter, vae: taesd });
    const pipe = new StableDiffusionControlNetXSPipeline({ ...loaded.components, scheduler: schedulerFromConfig(c.scheduler.config) });
    assert.equal(pipe.vae, taesd);
    assert.equal(pipe.vaeScaleFactor, 8); // 2^(len(block_out_channels) − 1), block_out_channels registered from the decoder
    const args = callArgs<StableDiffusionControlNetXSCallArgs>(c, P, read);
    const steps: Tensor<'float32'>[] = [];
    for (const out = pipe.steps({ ...args, outputType: 'np' }); ; ) {
      const r = await out.next();
      if (r.done) {
        assertClose(r.value.images, f32(c.tensors['images']!), tolerance(c, 'images', 1e-4), 'images');
        break;
      }
      steps.push(r.value.latents);
    }
    const each = f32(c.tensors['latents_after_each_step']!);
    const per = each.data.length / each.dims[0]!;
    assert.equal(steps.length, each.dims[0]);
    steps.forEach((s, i) => assertClose(s, new Tensor('float32', each.data.subarray(i * per, (i + 1) * per), each.dims.slice(1)), tolerance(c, 'latents_final', 1e-4), `latents after step ${i}`));
    // before the clamp (the tiny UNet's latents saturate 30% of the image): the raw decode of the final latents
    const { sample } = await taesd.decode(steps[steps.length - 1]!);
    assertClose(sample, f32(c.tensors['vae_decoded']!), tolerance(c, 'images', 1e-4), 'vae_decoded');
  });

  test('model_index.json naming AutoencoderTiny loads vae/ as TAESD; an unknown class is a ConfigError', async () => {
    const dir = tempDir('cnxs-taesd-pipe-');
    for (const name of readdirSync(SD)) if (!['model_index.json', 'pipeline', 'vae'].includes(name)) symlinkSync(resolve(SD, name), join(dir, name));
    symlinkSync(resolve(TINY), join(dir, 'vae'));
    const index = JSON.parse(readFileSync(join(SD, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, vae: ['diffusers', 'AutoencoderTiny'] }));
    const pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(dir);
    assert.ok(pipe.vae instanceof AutoencoderTiny);
    assert.equal(pipe.vae.config.scalingFactor, 1.0);
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, vae: ['diffusers', 'AsymmetricAutoencoderKL'] }));
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromPretrained(dir), (e: unknown) => e instanceof ConfigError && /AsymmetricAutoencoderKL/.test(e.message));
    // the default folder still loads its AutoencoderKL
    assert.ok((await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: adapter })).vae instanceof AutoencoderKL);
  });
});

describe('TAESD previews of steps() latents equal diffusers', () => {
  test('latent_preview: after steps 1 and 2, decoded and preview images; the run itself unchanged', async () => {
    const c = caseNamed('latent_preview');
    const source = sd.cases.find((x) => x.name === 'a_default_latents')!;
    const pipe = new StableDiffusionControlNetXSPipeline({
      ...(await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: adapter })).components,
      scheduler: schedulerFromConfig(source.scheduler.config),
    });
    const wanted = c.steps!;
    let seen = 0;
    const it = pipe.steps({ ...callArgs<StableDiffusionControlNetXSCallArgs>(source, P, sd.read), outputType: 'np' });
    for (;;) {
      const r = await it.next();
      if (r.done) {
        assertClose(r.value.images, sd.read(source.tensors['images']!), tolerance(source, 'images', 1e-4), 'final images (AutoencoderKL)');
        break;
      }
      const step = wanted[String(r.value.index)];
      if (!step) continue;
      seen++;
      const tol = Math.max(1e-4, 20 * step.max_abs_diff_fp32_vs_fp64);
      assertClose(r.value.latents, f32(step.latents), tolerance(source, 'latents_final', 1e-4), `latents at step ${r.value.index}`);
      assertClose((await taesd.decode(r.value.latents)).sample, f32(step.decoded), tol, `decoded at step ${r.value.index}`);
      const preview = await previewImages(r.value.latents, { decoder: taesd, outputType: 'np' });
      assertClose(preview, f32(step.preview_image), tol, `preview at step ${r.value.index}`);
      // 'pil' (the default): numpy_to_pil's rounding of the same values
      const [image] = await previewImages(r.value.latents, { decoder: taesd });
      assert.ok(image instanceof RGBImage);
      assert.deepEqual([image.width, image.height], [64, 64]);
      const expected = f32(step.preview_image).data;
      for (let i = 0; i < expected.length; i += 97) assert.ok(Math.abs(image.data[i]! - expected[i]! * 255) <= 0.5 + 1e-3, `pixel ${i}`);
    }
    assert.equal(seen, Object.keys(wanted).length);
  });

  test('any pipeline VAE previews too: the AutoencoderKL preview is the pipeline’s own decode', async () => {
    const pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: adapter });
    const source = sd.cases.find((x) => x.name === 'a_default_latents')!;
    const latents = sd.read(source.tensors['latents_final']!) as Tensor<'float32'>;
    const preview = await previewImages(latents, { decoder: pipe.vae, outputType: 'np' });
    assertClose(preview, sd.read(source.tensors['images']!), tolerance(source, 'images', 1e-4), 'AutoencoderKL preview of the final latents');
  });
});
