/**
 * The depth models on held-back-style configs (test/fixtures/depth-heldout, made by its generate.py with
 * transformers' own classes, patched back to 4.44 where 4.57 differs; see its header): the plain-ViT
 * DPT (dpt-large style, 5 layers, patch 8, 40×40, an odd 5×5 token grid, out indices [0,2,3,4]), Depth
 * Anything with patch 7, out_indices [1,3,4,5], layer scale 0.5 and keep_aspect_ratio 49 / multiples
 * of 7, and three variations (DPT readout "add" with BatchNorm fusion residuals and a resized position
 * table; readout "ignore" with keep_aspect_ratio and head_in_index 2; Depth Anything over a SwiGLU
 * Dinov2 without the backbone layernorm, the stem as a feature map, a fixed non-square size), on RGB
 * 61×97, LA 50×50, P 64×64 and RGB 120×49 images. Per case, at the reference README's tolerances:
 * load_image bytes exact, pixel_values ≤ 1e-6, predicted_depth (from the reference pixel_values and
 * end to end) and the interpolated depth ≤ 1e-4, the 8-bit depth exact or ±1 on ≤ 0.1 % of pixels.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DPTImageProcessor } from '../src/image/dpt-image-processor.js';
import { loadImage } from '../src/image/load.js';
import { loadDepthEstimationModel, type DepthEstimationModel } from '../src/models/depth-estimation.js';
import { depthEstimation, interpolateDepth } from '../src/pipelines/depth-estimation.js';
import { assertBytesNear, depthReference, noWarn, type DepthCase } from './depth-cases.js';
import { assertClose } from './helpers.js';

interface Case extends DepthCase {
  resized_hw: [number, number];
  predicted_hw: [number, number];
}
const { dir: D, cases, read, bytes } = depthReference<Case>('depth-heldout');

test('the fixture covers the held-back layouts on every held-back image', () => {
  const by = (m: string) => cases.filter((c) => c.model === m).map((c) => c.image_file);
  const all = ['images/q0_rgb_61x97.png', 'images/q1_la_50x50.png', 'images/q2_p_64x64.png', 'images/q3_rgb_120x49.png'];
  assert.deepEqual(by('tiny-dpt-vit'), all);
  assert.deepEqual(by('tiny-depth-anything-p7'), all);
  // the odd 5×5 token grid of a 40×40 input at patch 8: fusion sizes 3 → 6 → 12 → 24 → 48, head ×2
  assert.deepEqual(cases.find((c) => c.model === 'tiny-dpt-vit')!.predicted_hw, [96, 96]);
});

describe('held-back-style depth cases (transformers 4.44 semantics)', () => {
  const models = new Map<string, Promise<DepthEstimationModel>>();
  after(async () => Promise.all([...models.values()].map(async (m) => (await m).release())));
  const modelFor = (name: string) => {
    if (!models.has(name)) models.set(name, loadDepthEstimationModel(join(D, name), noWarn));
    return models.get(name)!;
  };

  for (const c of cases) {
    test(c.name, async () => {
      const processor = DPTImageProcessor.fromPretrained(join(D, c.model), noWarn);
      const image = await loadImage(join(D, c.image_file));
      assert.deepEqual([image.height, image.width], c.size_hw);
      assert.deepEqual(image.data, bytes(c, 'rgb_u8'), 'load_image RGB bytes');
      const pixels = processor.preprocess(image);
      assert.deepEqual([...pixels.dims], [1, 3, ...c.resized_hw], 'pixel_values dims');
      assertClose(pixels, read(c, 'pixel_values'), 1e-6, 'pixel_values');

      const model = await modelFor(c.model);
      // the model alone, from the reference pixel_values
      assertClose(await model.forward(read(c, 'pixel_values')), read(c, 'predicted_depth'), 1e-4, 'predicted_depth');
      // the whole pipeline from the image file
      const out = await depthEstimation(join(D, c.image_file), { model, processor });
      assert.deepEqual([...out.predictedDepth.dims], [1, ...c.predicted_hw]);
      assertClose(out.predictedDepth, read(c, 'predicted_depth'), 1e-4, 'pipeline predicted_depth');
      const [H, W] = c.size_hw;
      assertClose(interpolateDepth(out.predictedDepth, { width: W, height: H }), read(c, 'interpolated'), 1e-4, 'interpolated');
      assert.deepEqual([out.depth.height, out.depth.width], [H, W]);
      assertBytesNear(out.depth.data, bytes(c, 'depth_u8'), 'depth_u8');
    });
  }
});
