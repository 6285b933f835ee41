/**
 * DPTImageProcessor against transformers 4.44 (test/fixtures/depth, the depth reference): per case the
 * pipeline's `load_image` RGB bytes, the resized uint8 image and `pixel_values` bit for bit; the real
 * models' preprocessor configs (sizes from the output-size rule worked by hand); bad configs and images.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, InputError } from '../src/errors.js';
import { DPTImageProcessor, MAX_DEPTH_IMAGE_PIXELS, parseDPTImageProcessorConfig } from '../src/image/dpt-image-processor.js';
import { loadImage } from '../src/image/load.js';
import { RGBImage } from '../src/image/rgb-image.js';
import type { Tensor } from '../src/tensor.js';
import { depthReference, noWarn, type DepthCase } from './depth-cases.js';

interface Case extends DepthCase {
  mode: string;
  resized_hw: [number, number];
}
const { dir: D, cases, read } = depthReference<Case>('depth');
/** A tensor's bytes as stored: float32 compared bit for bit. */
const bytes = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe('DPTImageProcessor equals transformers 4.44 (bit for bit)', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const processor = DPTImageProcessor.fromPretrained(join(D, c.model), noWarn);
      const image = await loadImage(join(D, c.image_file));
      assert.deepEqual([image.height, image.width], c.size_hw);
      // load_image = convert("RGB"): RGBA alpha dropped (not composited), L replicated
      assert.deepEqual(Buffer.from(image.data), bytes(read(c, 'rgb_u8')), `load_image of a ${c.mode} image`);
      const size = processor.outputSize(image.width, image.height);
      assert.deepEqual([size.height, size.width], c.resized_hw);
      const resized = processor.resize(image);
      assert.deepEqual(Buffer.from(resized.data), bytes(read(c, 'resized_u8')), 'resized uint8');
      const pixels = processor.preprocess(image);
      const expected = read(c, 'pixel_values');
      assert.deepEqual(pixels.dims, expected.dims);
      assert.deepEqual(bytes(pixels), bytes(expected), 'pixel_values');
    });
  }
});

describe('real preprocessor configs', () => {
  const real = (name: string) => DPTImageProcessor.fromPretrained(join(D, 'configs', name), noWarn);

  test('Depth-Anything-V2-Small: 518 on the side that changes least, multiples of 14', () => {
    const p = real('depth-anything--Depth-Anything-V2-Small-hf');
    assert.equal(p.config.keepAspectRatio, true);
    assert.equal(p.config.ensureMultipleOf, 14);
    assert.equal(p.config.resample, 'bicubic');
    assert.deepEqual(p.config.imageMean, [0.485, 0.456, 0.406]);
    assert.deepEqual(p.config.imageStd, [0.229, 0.224, 0.225]);
    // 640x480: scales 518/480 (1.079) and 518/640 (0.809); the height's is nearer 1 → 518 x round(690.67/14)·14 = 686
    assert.deepEqual(p.outputSize(640, 480), { width: 686, height: 518 });
    // 512x512: a tie fits the height → 518x518
    assert.deepEqual(p.outputSize(512, 512), { width: 518, height: 518 });
    // 480 wide, 640 high: the width's scale is nearer 1 → 518 wide, round(690.67/14)·14 = 686 high
    assert.deepEqual(p.outputSize(480, 640), { width: 518, height: 686 });
    // 1024x1024: 518x518, down
    assert.deepEqual(p.outputSize(1024, 1024), { width: 518, height: 518 });
  });

  test('dpt-hybrid-midas and dpt-large: 384x384 whatever the aspect', () => {
    for (const name of ['Intel--dpt-hybrid-midas', 'Intel--dpt-large']) {
      const p = real(name);
      assert.equal(p.config.keepAspectRatio, false);
      assert.deepEqual(p.config.imageMean, [0.5, 0.5, 0.5]);
      assert.deepEqual(p.outputSize(640, 480), { width: 384, height: 384 });
      assert.deepEqual(p.outputSize(37, 45), { width: 384, height: 384 });
      const x = p.preprocess(RGBImage.blank(50, 30));
      assert.deepEqual(x.dims, [1, 3, 384, 384]);
      assert.equal(x.data[0], -1); // (0 − 0.5) / 0.5
    }
  });

  test("the old DPTFeatureExtractor form (size 384 as an int, resample 2, the class name) parses like the hub's files", () => {
    const p = DPTImageProcessor.fromConfig(
      { do_normalize: true, do_resize: true, ensure_multiple_of: 1, feature_extractor_type: 'DPTFeatureExtractor', image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], keep_aspect_ratio: false, resample: 2, size: 384 },
      'hub',
      noWarn.warn,
    );
    assert.deepEqual(p.config.size, { height: 384, width: 384 });
    assert.equal(p.config.resample, 'bilinear');
  });

  test("transformers' defaults for an empty config: 384x384, bicubic, 1/255, mean = std = 0.5", () => {
    const c = parseDPTImageProcessorConfig({}, 'empty', noWarn.warn);
    assert.deepEqual(c.size, { height: 384, width: 384 });
    assert.equal(c.resample, 'bicubic');
    assert.equal(c.rescaleFactor, 1 / 255);
    assert.deepEqual(c.imageStd, [0.5, 0.5, 0.5]);
    assert.equal(c.doPad, false);
  });
});

describe('output-size rule', () => {
  const da = (extra: Record<string, unknown> = {}) =>
    DPTImageProcessor.fromConfig({ size: { height: 56, width: 56 }, keep_aspect_ratio: true, ensure_multiple_of: 14, ...extra }, 'test', noWarn.warn);

  test('the README examples: 100x40 → 140x56, 48x80 → 56x98, 45x37 → 56x42 (H x W)', () => {
    assert.deepEqual(da().outputSize(40, 100), { width: 56, height: 140 });
    assert.deepEqual(da().outputSize(80, 48), { width: 98, height: 56 });
    assert.deepEqual(da().outputSize(37, 45), { width: 42, height: 56 });
  });

  test("Python's round: halves go to the even multiple", () => {
    // size 7 multiple 2 on a 7x7 image → 7/2 = 3.5 → round 4 → 8; on 5x5 with size 5 → 2.5 → 2 → 4
    const p = (s: number) => DPTImageProcessor.fromConfig({ size: s, ensure_multiple_of: 2 }, 'test', noWarn.warn);
    assert.deepEqual(p(7).outputSize(7, 7), { width: 8, height: 8 });
    assert.deepEqual(p(5).outputSize(5, 5), { width: 4, height: 4 });
  });

  test('do_pad pads after normalising, zeros, the odd row at the bottom', () => {
    const p = DPTImageProcessor.fromConfig({ do_resize: false, do_pad: true, size_divisor: 4, image_mean: 0, image_std: 1, do_rescale: false }, 'test', noWarn.warn);
    const img = new RGBImage(2, 1, Uint8Array.from([10, 20, 30, 40, 50, 60]));
    const x = p.preprocess(img);
    assert.deepEqual(x.dims, [1, 3, 4, 4]);
    // 1 row padded to 4: 1 above, 2 below; 2 columns to 4: 1 left, 1 right
    assert.deepEqual([...x.data.slice(0, 16)], [0, 0, 0, 0, 0, 10, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('bad input', () => {
  const parse = (raw: Record<string, unknown>) => () => parseDPTImageProcessorConfig(raw, 'pp.json', () => {});
  test('nonsense config values are ConfigErrors naming the key', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ size: 0 }, /"size"/],
      [{ size: { height: 384 } }, /"size"/],
      [{ size: { shortest_edge: 384 } }, /"size"/],
      [{ size: -5 }, /"size"/],
      [{ size: 1e9 }, /"size"/],
      [{ ensure_multiple_of: 0 }, /"ensure_multiple_of"/],
      [{ ensure_multiple_of: 1.5 }, /"ensure_multiple_of"/],
      [{ resample: 4 }, /"resample" 4/],
      [{ resample: [3] }, /"resample"/],
      [{ rescale_factor: 0 }, /"rescale_factor"/],
      [{ image_std: [0.5, 0, 0.5] }, /"image_std"/],
      [{ image_mean: [0.5, 0.5] }, /"image_mean"/],
      [{ image_mean: 'abc' }, /"image_mean"/],
      [{ do_pad: true }, /"do_pad" is true but "size_divisor"/],
      [{ size_divisor: 0 }, /"size_divisor"/],
      [{ do_resize: 'yes' }, /"do_resize"/],
    ];
    for (const [raw, message] of cases) assert.throws(parse(raw), (e: unknown) => e instanceof ConfigError && message.test(e.message) && /pp\.json/.test(e.message), JSON.stringify(raw));
  });

  test('a missing preprocessor_config.json names the folder', () => {
    assert.throws(() => DPTImageProcessor.fromPretrained(join(D, 'images')), (e: unknown) => e instanceof ConfigError && /no preprocessor_config\.json/.test(e.message));
  });

  test('unknown keys are warned about, class-name keys are not', () => {
    const warnings: string[] = [];
    parseDPTImageProcessorConfig({ image_processor_type: 'DPTImageProcessor', processor_class: 'x', fancy: 1 }, 'pp.json', (m) => warnings.push(m));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /fancy/);
  });

  test('0x0 and too-large images, and images too thin for the aspect rule, are InputErrors', () => {
    const p = DPTImageProcessor.fromConfig({ size: 518, keep_aspect_ratio: true, ensure_multiple_of: 14 }, 'test', noWarn.warn);
    assert.throws(() => p.outputSize(0, 0), (e: unknown) => e instanceof InputError && /0x0/.test(e.message));
    const side = Math.ceil(Math.sqrt(MAX_DEPTH_IMAGE_PIXELS)) + 1;
    assert.throws(() => p.outputSize(side, side), (e: unknown) => e instanceof InputError && /limit/.test(e.message));
    // 2000 wide, 1 high: the width's scale (0.259) is nearer 1, the height becomes round(0.259/14)·14 = 0
    assert.throws(() => p.outputSize(2000, 1), (e: unknown) => e instanceof InputError && /too thin/.test(e.message) && /2000x1/.test(e.message));
  });
});
