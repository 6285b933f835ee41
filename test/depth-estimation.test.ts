/**
 * The depth-estimation pipeline against transformers 4.44 / diffusers' docs (test/fixtures/depth): from
 * each case's reference `predicted_depth`, torch's bicubic interpolation (≤ 1e-4), the 8-bit depth
 * (exact, or ±1 on ≤ 0.1 % of pixels: the README's truncation-boundary allowance), recipe A (stacked
 * depth) and recipe B (min-max control image); the pipeline's wiring from the image files with a stand-in
 * model that checks its pixel_values bit for bit; end to end on the tiny models once their files are in
 * the fixtures; numpy's uint8 cast at its edges; bad input.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { ConfigError, InputError } from '../src/errors.js';
import { DPTImageProcessor } from '../src/image/dpt-image-processor.js';
import { GrayImage } from '../src/image/gray-image.js';
import { loadImage } from '../src/image/load.js';
import type { DepthEstimationModel } from '../src/models/depth-estimation.js';
import {
  DepthEstimationPipeline,
  defaultDepthProcessor,
  depthControlImage,
  depthEstimation,
  depthMinMax,
  depthToImage,
  interpolateDepth,
} from '../src/pipelines/depth-estimation.js';
import { Tensor, type TensorLike } from '../src/tensor.js';
import { assertBytesNear, depthReference, noWarn, type DepthCase } from './depth-cases.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture, tempDir } from './helpers.js';

interface Case extends DepthCase {
  minmax_size_hw: [number, number];
}
const { dir: D, cases, read, bytes } = depthReference<Case>('depth');
/** README: interpolated and the min-max map at atol 1e-4. */
const ATOL = 1e-4;

describe('postprocessing and recipes from the reference predicted_depth', () => {
  for (const c of cases) {
    test(c.name, () => {
      const [H, W] = c.size_hw;
      const predicted = read(c, 'predicted_depth');
      const interpolated = interpolateDepth(predicted, { width: W, height: H });
      assertClose(interpolated, read(c, 'interpolated'), ATOL, 'interpolated');
      const depth = depthToImage(interpolated);
      assert.deepEqual([depth.height, depth.width], [H, W]);
      assertBytesNear(depth.data, bytes(c, 'depth_u8'), 'depth_u8');
      // recipe A: from the reference bytes exactly, and from ours within the depth's tolerance
      const stackRef = bytes(c, 'control_stack_u8');
      assert.deepEqual(new GrayImage(W, H, bytes(c, 'depth_u8')).toRGB().data, stackRef, 'recipe A from depth_u8');
      assertBytesNear(depth.toRGB().data, stackRef, 'recipe A');
      // recipe B
      const [S0, S1] = c.minmax_size_hw;
      const minmax = depthMinMax(predicted, { width: S1, height: S0 });
      assertClose(minmax, read(c, 'control_minmax_f32'), ATOL, 'control_minmax_f32');
      const control = depthControlImage(predicted, { width: S1, height: S0 });
      assert.deepEqual([control.height, control.width], [S0, S1]);
      assertBytesNear(control.data, bytes(c, 'control_minmax_u8'), 'control_minmax_u8');
    });
  }
});

/** A stand-in model: checks it is given the reference pixel_values bit for bit and answers the reference predicted_depth. */
function referenceModel(c: Case): DepthEstimationModel & { calls: number } {
  const expected = read(c, 'pixel_values');
  return {
    config: { modelType: c.model.includes('dpt') ? 'dpt' : 'depth_anything', patchSize: c.model.includes('dpt') ? 16 : 14 },
    calls: 0,
    async forward(pixelValues: TensorLike) {
      this.calls++;
      assert.deepEqual([...pixelValues.dims], [...expected.dims], 'pixel_values dims');
      assert.deepEqual(Buffer.from(pixelValues.data.buffer, pixelValues.data.byteOffset, pixelValues.data.byteLength), Buffer.from(expected.data.buffer, expected.data.byteOffset, expected.data.byteLength), 'pixel_values');
      return read(c, 'predicted_depth') as Tensor<'float32'>;
    },
    async release() {},
  };
}

describe('depthEstimation from the image files (the reference predicted_depth standing in for the model)', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const model = referenceModel(c);
      const processor = DPTImageProcessor.fromPretrained(join(D, c.model), noWarn);
      const out = await depthEstimation(join(D, c.image_file), { model, processor });
      assert.equal(model.calls, 1);
      assert.deepEqual(out.predictedDepth.data, read(c, 'predicted_depth').data);
      assertBytesNear(out.depth.data, bytes(c, 'depth_u8'), 'depth_u8');
    });
  }

  test('without a processor, the model type picks the published one (Depth Anything: 518, multiples of the patch)', () => {
    const p = defaultDepthProcessor({ modelType: 'depth_anything', patchSize: 14 });
    assert.deepEqual(p.outputSize(640, 480), { width: 686, height: 518 });
    assert.deepEqual(defaultDepthProcessor({ modelType: 'dpt', patchSize: 16 }).outputSize(640, 480), { width: 384, height: 384 });
  });
});

const tinyModelsPresent = cases.every((c) => existsSync(join(D, c.model, 'config.json')) && existsSync(join(D, c.model, 'model.safetensors')));

describe('end to end on the tiny models', { skip: tinyModelsPresent ? false : 'the tiny models are not in test/fixtures/depth yet' }, () => {
  for (const model of [...new Set(cases.map((c) => c.model))]) {
    test(model, async () => {
      const pipe = await DepthEstimationPipeline.fromPretrained(join(D, model), noWarn);
      try {
        for (const c of cases.filter((x) => x.model === model)) {
          const out = await pipe.run(join(D, c.image_file));
          assertClose(out.predictedDepth, read(c, 'predicted_depth'), ATOL, `${c.name} predicted_depth`);
          assertBytesNear(out.depth.data, bytes(c, 'depth_u8'), `${c.name} depth_u8`);
        }
      } finally {
        await pipe.release();
      }
    });
  }
});

describe('from the Hub', () => {
  test('a repo id: config.json, weights and preprocessor_config.json into the cache, then offline from it', async () => {
    const hub = await startHub(join(D, 'tiny-depth-anything-v2'));
    const cacheDir = join(tempDir('cnxs-depth-hub-'), 'hub');
    const c = cases.find((x) => x.model === 'tiny-depth-anything-v2')!;
    try {
      const pipe = await DepthEstimationPipeline.fromPretrained('org/tiny-pipe', { cacheDir, endpoint: hub.endpoint, token: false, ...noWarn });
      const out = await pipe.run(join(D, c.image_file));
      await pipe.release();
      assertBytesNear(out.depth.data, bytes(c, 'depth_u8'), 'depth_u8');
      assert.ok(hub.log.some((l) => l.path.endsWith('/preprocessor_config.json')), 'the processor file was fetched');
    } finally {
      await hub.stop();
    }
    // the Hub is gone: everything comes from the cache
    const offline = await DepthEstimationPipeline.fromPretrained('org/tiny-pipe', { cacheDir, localFilesOnly: true, ...noWarn });
    assert.equal(offline.processor.config.ensureMultipleOf, 14);
    await offline.release();
  });
});

describe('edges of the uint8 cast', () => {
  test("numpy's x86 cast: truncation, (−1, 0) → 0, −1 and below wrap, NaN → 0", () => {
    // max 2: x · 255 / 2 = 255, 127.5, −0.255, −1.275
    const img = depthToImage(Tensor.float32([2, 1, -0.002, -0.01], [1, 4]));
    assert.deepEqual([...img.data], [255, 127, 0, 255]);
    assert.deepEqual([...depthToImage(Tensor.float32([0, 0], [1, 2])).data], [0, 0]); // 0 · 255 / 0 = NaN
  });

  test('recipe B of a flat map is black (0 / 0), as in Python', () => {
    const control = depthControlImage(Tensor.float32([3, 3, 3, 3], [1, 2, 2]), { width: 4, height: 4 });
    assert.ok(control.data.every((v) => v === 0));
  });

  test('recipe B clips the bicubic overshoot', () => {
    // a step: the bicubic overshoots below the minimum and above the maximum, which min-max then spans
    const step = Tensor.float32([0, 0, 1, 1, 0, 0, 1, 1], [1, 2, 4]);
    const m = depthMinMax(step, { width: 16, height: 2 }).data;
    assert.equal(Math.min(...m), 0);
    assert.equal(Math.max(...m), 1);
    const c = depthControlImage(step, { width: 16, height: 2 });
    assert.equal(c.data[0], Math.trunc(Math.fround(m[0]! * 255)));
  });
});

describe('the gray image', () => {
  const tmp = tempDir('cnxs-depth-gray-');
  test('saves as a one-channel PNG whose bytes load back', async () => {
    const img = new GrayImage(3, 2, Uint8Array.from([0, 50, 100, 150, 200, 255]));
    const path = join(tmp, 'd.png');
    await img.save(path);
    const meta = await sharp(path).metadata();
    assert.equal(meta.channels, 1);
    assert.deepEqual((await loadImage(path)).data, img.toRGB().data);
    assert.deepEqual([...img.toRGB().data.slice(0, 6)], [0, 0, 0, 50, 50, 50]);
  });

  test('an unknown extension or a wrong buffer length is an InputError', async () => {
    await assert.rejects(new GrayImage(1, 1, Uint8Array.of(1)).save(join(tmp, 'd.gif')), InputError);
    assert.throws(() => new GrayImage(2, 2, new Uint8Array(3)), InputError);
  });
});

describe('bad input', () => {
  const tmp = tempDir('cnxs-depth-bad-');
  const c = cases[0]!;

  test('a predicted_depth that is not [1, h, w] float32 is an InputError', () => {
    assert.throws(() => interpolateDepth(Tensor.float32([1, 2], [2]), { width: 2, height: 2 }), InputError);
    assert.throws(() => interpolateDepth(Tensor.float32([1, 2, 3, 4], [2, 1, 2]), { width: 2, height: 2 }), InputError);
  });

  test('an image that is not one names the file; the model is never called', async () => {
    const model = referenceModel(c);
    const path = join(tmp, 'not-an-image.png');
    writeFileSync(path, 'hello');
    await assert.rejects(depthEstimation(path, { model }), (e: unknown) => e instanceof InputError && e.message.includes(path));
    await assert.rejects(depthEstimation(join(tmp, 'missing.png'), { model }), (e: unknown) => e instanceof InputError && /no such file/.test(e.message));
    assert.equal(model.calls, 0);
  });

  test('a folder without preprocessor_config.json, or holding another architecture, is a ConfigError', async () => {
    const noProcessor = join(tmp, 'no-processor');
    mkdirSync(noProcessor);
    writeFileSync(join(noProcessor, 'config.json'), JSON.stringify({ model_type: 'dpt' }));
    await assert.rejects(DepthEstimationPipeline.fromPretrained(noProcessor, noWarn), (e: unknown) => e instanceof ConfigError && /preprocessor_config\.json/.test(e.message));

    const unet = join(tmp, 'unet');
    mkdirSync(unet);
    copyFileSync(fixture('tiny-sd-cnxs', 'unet', 'config.json'), join(unet, 'config.json'));
    copyFileSync(join(D, 'tiny-dpt-hybrid', 'preprocessor_config.json'), join(unet, 'preprocessor_config.json'));
    await assert.rejects(DepthEstimationPipeline.fromPretrained(unet, noWarn), (e: unknown) => e instanceof ConfigError && /not a depth-estimation model/.test(e.message) && /UNet2DConditionModel/.test(e.message));
  });
});
