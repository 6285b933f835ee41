/**
 * The depth models against transformers 4.44 (test/fixtures/depth): `predicted_depth` of the tiny
 * DPT-hybrid and Depth Anything V2 models from each reference case's `pixel_values` (atol 1e-4); the
 * REAL configs of Intel/dpt-hybrid-midas, Intel/dpt-large and Depth-Anything-V2-Small parsed, their
 * module trees key for key and shape for shape against `keys.json`, and traced graphs whose output
 * shape is right (structural, no weights); loading by model_type; bad folders, configs and inputs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadDepthEstimationModel, type DepthEstimationModel } from '../src/models/depth-estimation.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture } from './helpers.js';

const D = fixture('depth');
const ref = loadSafetensorsSync(join(D, 'tensors.safetensors'));
interface Case {
  name: string;
  model: string;
  tensors: Record<string, string>;
}
const cases = JSON.parse(readFileSync(join(D, 'cases.json'), 'utf8')) as Case[];
const noWarn = { warn: (m: string) => assert.fail(`unexpected warning: ${m}`) };

describe('predicted_depth equals transformers 4.44 (atol 1e-4)', () => {
  const models = new Map<string, Promise<DepthEstimationModel>>();
  after(async () => Promise.all([...models.values()].map(async (m) => (await m).release())));
  for (const c of cases) {
    test(c.name, async () => {
      if (!models.has(c.model)) models.set(c.model, loadDepthEstimationModel(join(D, c.model), noWarn));
      const model = await models.get(c.model)!;
      const expected = ref.read(c.tensors['predicted_depth']!);
      const depth = await model.forward(ref.read(c.tensors['pixel_values']!));
      assertClose(depth, expected, 1e-4, 'predicted_depth');
    });
  }
});
