/** The optimized-graph cache: a second session loads the saved graph, gives the same numbers, and changed weights miss. */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { ModelSession } from '../src/runtime/session.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture } from './helpers.js';

test('optimized graphs are cached on disk, reused, and invalidated when weights change', async () => {
  const D = fixture('tiny-sd-cnxs');
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-cache-'));
  cpSync(D, join(dir, 'model'), { recursive: true, filter: (p) => !p.includes('pipeline') && !p.includes('text_encoder') });
  const cache = join(dir, 'graphs');
  const ref = loadSafetensorsSync(join(D, 'reference', 'tensors.safetensors'));
  const feeds = {
    sample: ref.read('inputs.sample'),
    timestep: ref.read('inputs.timestep_batch'),
    encoder_hidden_states: ref.read('inputs.encoder_hidden_states'),
    controlnet_cond: ref.read('inputs.controlnet_cond'),
    conditioning_scale: 1,
    apply_control: true,
  };
  const timestep = { data: Float32Array.from([999, 10]), dims: [2] };
  const build = async () => {
    const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'model', 'unet'));
    return UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(join(dir, 'model', 'controlnet'))).toOnnx();
  };
  const first = await ModelSession.create(await build(), { graphCacheDir: cache });
  assert.equal(first.fromCache, false);
  const a = (await first.run({ ...feeds, timestep }))['out_sample']!;
  assertClose(a, ref.read('unet_cnxs_forward_tbatch_s1.sample'), 1e-4, 'first session');
  assert.equal(readdirSync(cache).length, 1, 'one entry, no temporary folders left');

  const second = await ModelSession.create(await build(), { graphCacheDir: cache });
  assert.equal(second.fromCache, true, 'the second session loads the cached graph');
  assertClose((await second.run({ ...feeds, timestep }))['out_sample']!, a, 0, 'cached graph');

  const later = new Date(Date.now() + 5000);
  utimesSync(join(dir, 'model', 'unet', 'diffusion_pytorch_model.safetensors'), later, later);
  const third = await ModelSession.create(await build(), { graphCacheDir: cache });
  assert.equal(third.fromCache, false, 'changed weights miss the cache');
  assert.equal(readdirSync(cache).length, 2);
  await Promise.all([first.release(), second.release(), third.release()]);
});

test('only CPU sessions use the cache (a WebGPU session opens without it; after a fallback the CPU one caches)', async () => {
  const D = fixture('tiny-sd-cnxs');
  const cache = mkdtempSync(join(tmpdir(), 'cnxs-cache-ep-'));
  const model = (await UNet2DConditionModel.fromPretrained(join(D, 'unet'))).toOnnx();
  const s = await ModelSession.create(model, { graphCacheDir: cache, executionProviders: ['webgpu', 'cpu'], warn: () => {} });
  assert.equal(s.fromCache, false);
  assert.equal(readdirSync(cache).length, s.executionProvider === 'cpu' ? 1 : 0);
  await s.release();
});
