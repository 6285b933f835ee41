/** generate/: the pieces `cnxs generate` and the server share, on their own. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadControlImage } from '../src/generate/control.js';
import { SettingError } from '../src/generate/errors.js';
import { LATENT_RGB, latentToRgb } from '../src/generate/latent-preview.js';
import { a1111Parameters } from '../src/generate/parameters.js';
import { encodePng, writePng } from '../src/generate/png.js';
import { namedScheduler, samplerLabel, schedulerKey } from '../src/generate/scheduler.js';
import { MAX_SEED, imageSeeds, randomSeed, seedGenerators } from '../src/generate/seeds.js';
import { chooseSize } from '../src/generate/size.js';
import { InputError } from '../src/errors.js';
import { loadImage } from '../src/image/load.js';
import { readPngText } from '../src/image/png-text.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { DDIMScheduler } from '../src/schedulers/index.js';
import { fixture, tempDir } from './helpers.js';

/** A [1, 4, 1, n] latent whose pixel p holds `pixels[p]` (channels 0–3). */
function latents(pixels: number[][]): { data: Float32Array; dims: number[] } {
  const n = pixels.length;
  const data = new Float32Array(4 * n);
  for (const [p, v] of pixels.entries()) for (let k = 0; k < 4; k++) data[k * n + p] = v[k]!;
  return { data, dims: [1, 4, 1, n] };
}

test('latent → RGB preview: one linear map per family, (v + 1) / 2 to bytes, clamped; image 0 of the batch', () => {
  // worked by hand from the factor rows: channel 0 alone at 1 gives SD's first row, (0.3512, 0.2297, 0.3227) → bytes
  // round((v + 1) / 2 · 255) = 172, 157, 169; channel 3 at 5 is far below −1 on every channel → 0; zero latents → 128 (SD, no
  // bias) and SDXL's bias (0.1084, −0.0175, −0.0011) → 141, 125, 127
  const sd = latentToRgb(latents([[1, 0, 0, 0], [0, 0, 0, 5], [0, 0, 0, 0]]), 'sd');
  assert.deepEqual([sd.width, sd.height], [3, 1]);
  assert.deepEqual([...sd.data], [172, 157, 169, 0, 0, 0, 128, 128, 128]);
  const xl = latentToRgb(latents([[0, 0, 0, 0], [0, 1, 0, 0]]), 'sdxl');
  // channel 1: (−0.2533, −0.0042, 0.1068) + bias → (−0.1449, −0.0217, 0.1057) → 109, 125, 141
  assert.deepEqual([...xl.data], [141, 125, 127, 109, 125, 141]);
  // a batch of two: only the first image is previewed
  const two = { data: new Float32Array(8).fill(0).map((_, i) => (i < 4 ? 0 : 9)), dims: [2, 4, 1, 1] };
  assert.deepEqual([...latentToRgb(two, 'sd').data], [128, 128, 128]);
  assert.equal(LATENT_RGB.sd.factors.length, 4);
  assert.throws(() => latentToRgb({ data: new Float32Array(3), dims: [1, 3, 1, 1] }, 'sd'), InputError);
});

test('SettingError: the message in the settings\' names, reworded by a front end', () => {
  const rules = { multiple: 32, vaeScaleFactor: 8, defaultSize: 512 };
  let error: unknown;
  try {
    chooseSize({ width: 4096, height: 4096, maxPixels: 1000 }, { width: 1, height: 1 }, rules, () => {});
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SettingError && error instanceof InputError);
  assert.equal(error.setting, 'maxPixels');
  assert.equal(error.message, '4096×4096 px is over maxPixels 1000; ask for a smaller width/height or raise maxPixels');
  assert.equal(error.reword((s) => `<${s}>`), '4096×4096 px is over <maxPixels> 1000; ask for a smaller <width>/<height> or raise <maxPixels>');
});

test('seeds: image k gets seed + k, each its own torch generator; random seeds are u64', () => {
  assert.deepEqual(imageSeeds(5n, 3), [5n, 6n, 7n]);
  assert.deepEqual(imageSeeds(MAX_SEED - 1n, 2), [MAX_SEED - 1n, MAX_SEED]);
  const [g0, g1] = seedGenerators([5n, 6n]);
  assert.equal(g0!.initialSeed(), 5n);
  assert.equal(g1!.initialSeed(), 6n);
  const r = randomSeed();
  assert.ok(r >= 0n && r <= MAX_SEED);
});

test("schedulers by any written name; a named one is new, the model's is untouched", () => {
  assert.equal(schedulerKey('Euler a'), 'euler-a');
  assert.equal(schedulerKey('DPM++ 2M Karras'), 'dpm++2m-karras');
  assert.equal(schedulerKey('EulerDiscrete'), 'euler');
  assert.equal(schedulerKey('nope'), undefined);
  const model = DDIMScheduler.fromConfig({ steps_offset: 1, beta_schedule: 'scaled_linear' });
  const before = JSON.stringify(model.config);
  const karras = namedScheduler(model, 'dpm++2m-karras');
  assert.notEqual(karras, model);
  assert.equal(samplerLabel(karras), 'DPM++ 2M Karras');
  assert.equal(karras.config['beta_schedule'], 'scaled_linear', 'built on the model\'s config');
  assert.equal(JSON.stringify(model.config), before);
  assert.equal(samplerLabel(model), 'DDIM');
});

test('parameters text: A1111 fields from neutral settings; PNG bytes and the written file are the same bytes', async () => {
  const text = a1111Parameters(
    { prompt: 'a <lora:x:0.5> bird', negativePrompt: 'blurry', steps: 20, guidanceScale: 7, model: 'm', controlScale: 0.5, controlStart: 0.1, controlEnd: 1, clipSkip: 2, loraFiles: [{ source: '/l/style.safetensors', scale: 0.8 }] },
    { sampler: 'Euler a', seed: 18446744073709551615n, width: 512, height: 384, controlnet: 'c' },
  );
  assert.equal(
    text,
    'a <lora:x:0.5> bird\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 18446744073709551615, Size: 512x384, Model: m, ControlNet-XS: c, Control scale: 0.5, Control window: 0.1-1, Clip skip: 2, LoRA: style.safetensors:0.8',
  );
  const image = new RGBImage(2, 1, Uint8Array.of(1, 2, 3, 250, 251, 252));
  const bytes = await encodePng(image, 'p ✓');
  const path = join(tempDir('cnxs-gen-shared-'), 'x.png');
  await writePng(path, image, 'p ✓');
  assert.ok(Buffer.from(bytes).equals(readFileSync(path)));
  assert.equal(readPngText(bytes)['parameters'], 'p ✓');
  assert.deepEqual([...(await loadImage(bytes)).data], [1, 2, 3, 250, 251, 252]);
});

test('control image from bytes or a file, with OpenCV-exact Canny when asked', async () => {
  const file = fixture('canny', 'scene0_64x64.png');
  const edges = await loadControlImage(readFileSync(file), { canny: { low: 100, high: 200 } });
  const expected = await loadImage(fixture('canny', 'scene0_64x64_canny_100_200.png'));
  assert.deepEqual(Buffer.from(edges.data), Buffer.from(expected.data));
  assert.deepEqual(Buffer.from((await loadControlImage(file)).data), Buffer.from((await loadImage(file)).data));
});
