/** `cnxs generate --model <single file>`: the pipeline of the file's kind, its configs from `--config`; one-line errors. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadImage } from '../src/image/load.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { loadControlNetXSPipeline } from '../src/pipelines/load.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { Generator } from '../src/random/index.js';
import { fixture, tempDir } from './helpers.js';

const SF = fixture('single-file', 'checkpoints');
const D = fixture('tiny-sd-cnxs');
const DX = fixture('tiny-sdxl-cnxs');
const cacheHome = tempDir('cnxs-sf-cli-cache-');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), ...args], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: cacheHome } });

test('loadControlNetXSPipeline takes a single file: the pipeline of its kind, configs from `config`', async () => {
  const sd = await loadControlNetXSPipeline(join(SF, 'tiny-sd15.fp16.safetensors'), { config: D, controlnet: join(D, 'controlnet') });
  assert.equal(sd.kind, 'sd');
  assert.ok(sd.pipeline instanceof StableDiffusionControlNetXSPipeline);
  const xl = await loadControlNetXSPipeline(join(SF, 'tiny-sdxl-base.fp16.safetensors'), { config: DX, controlnet: await ControlNetXSAdapter.fromPretrained(join(DX, 'controlnet')) });
  assert.equal(xl.kind, 'sdxl');
  assert.ok(xl.pipeline instanceof StableDiffusionXLControlNetXSPipeline);
  await assert.rejects(loadControlNetXSPipeline(join(SF, 'no-such.safetensors'), { config: D, controlnet: join(D, 'controlnet') }), /no-such\.safetensors/);
});

test('cnxs generate --model <file>.safetensors --config <folder>: the image the library makes from the same file', async () => {
  const dir = tempDir('cnxs-sf-gen-');
  const out = join(dir, 'bird.png');
  const file = join(SF, 'tiny-sd15.fp16.safetensors');
  const r = cli('generate', '--model', file, '--config', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'),
    '--prompt', 'a photo of a bird', '--steps', '2', '--seed', '3', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  const pipe = await StableDiffusionControlNetXSPipeline.fromSingleFile(file, { config: D, controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet')) });
  const lib = await pipe.run({ prompt: 'a photo of a bird', image: join(D, 'pipeline', 'control.png'), numInferenceSteps: 2, generator: new Generator().manualSeed(3) });
  assert.ok(Array.isArray(lib.images));
  assert.deepEqual(Buffer.from((await loadImage(out)).data), Buffer.from(lib.images[0]!.data));
});

test('cnxs generate: --config without a single-file --model, a missing file and a file that does not fit: one-line errors', () => {
  const dir = tempDir('cnxs-sf-err-');
  const base = ['--control', join(D, 'pipeline', 'control.png'), '--prompt', 'x', '--steps', '1', '--out', join(dir, 'o.png'), '--controlnet', join(D, 'controlnet')];
  const noFile = cli('generate', '--model', D, '--config', D, ...base);
  assert.equal(noFile.status, 2);
  assert.match(noFile.stderr, /--config applies to a single-file --model/);
  const missing = cli('generate', '--model', join(dir, 'gone.safetensors'), ...base);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /gone\.safetensors/);
  // no --config: the bundled SD 1.5 configs, which a tiny file does not fit
  const misfit = cli('generate', '--model', join(SF, 'tiny-sd15.fp16.safetensors'), ...base);
  assert.equal(misfit.status, 1);
  assert.match(misfit.stderr, /bundled Stable Diffusion 1\.5 configs does not fit/);
});
