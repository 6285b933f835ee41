/**
 * Loading from a Hub id end to end: the tiny SD pipeline served by a fake Hub on 127.0.0.1,
 * downloaded into a Python-layout cache, generating diffusers' image; then again with the server
 * stopped (cache hit), and through `cnxs generate` with HF_ENDPOINT / HF_HOME.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import type { Tensor } from '../src/tensor.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture } from './helpers.js';
import { callArgs, readCases, tolerance } from './pipeline-cases.js';

const D = fixture('tiny-sd-cnxs');
const temps: string[] = [];
after(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), 'cnxs-pipe-hub-'));
  temps.push(d);
  return d;
};

/** The pipeline folder as a Hub repo: the published components only. */
function repo(): string {
  const dir = temp();
  for (const p of ['model_index.json', 'unet', 'controlnet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) cpSync(join(D, p), join(dir, p), { recursive: true });
  return dir;
}

test('fromPretrained on a Hub id: download, generate, reload with the server stopped', { timeout: 120_000 }, async () => {
  const hub = await startHub(repo());
  const home = temp();
  const cacheDir = join(home, 'hub');
  const { cases, read } = readCases(join(D, 'pipeline'));
  const c = cases.find((x) => x.name === 'a_default_latents')!;
  const args = callArgs<StableDiffusionControlNetXSCallArgs>(c, join(D, 'pipeline'), read);
  const progress: string[] = [];
  try {
    const pipe = await StableDiffusionControlNetXSPipeline.fromPretrained('org/tiny-pipe', {
      cacheDir,
      endpoint: hub.endpoint,
      token: false,
      onDownloadProgress: (p) => progress.push(p.file),
      warn: () => {},
    });
    pipe.scheduler = schedulerFromConfig(c.scheduler.config);
    const { images } = await pipe.run(args);
    assertClose(images as Tensor, read(c.tensors['images']!), tolerance(c, 'images', 1e-4), 'images from a Hub download');
    assert.ok(progress.includes('unet/diffusion_pytorch_model.safetensors'));
    const repoCache = join(cacheDir, 'models--org--tiny-pipe');
    assert.ok(existsSync(join(repoCache, 'refs', 'main')));
    assert.ok(existsSync(join(repoCache, 'snapshots')));
    // fp32 only was asked for: no fp16 weights downloaded
    assert.equal(progress.some((f) => f.includes('.fp16.')), false);
  } finally {
    await hub.stop();
  }
  const again = await StableDiffusionControlNetXSPipeline.fromPretrained('org/tiny-pipe', { cacheDir, endpoint: hub.endpoint, token: false, warn: () => {} });
  again.scheduler = schedulerFromConfig(c.scheduler.config);
  assertClose((await again.run(args)).images as Tensor, read(c.tensors['images']!), tolerance(c, 'images', 1e-4), 'images from the cache');
});

test('cnxs generate --model org/tiny-pipe through HF_ENDPOINT, then --offline from the cache', { timeout: 120_000 }, async () => {
  const hub = await startHub(repo());
  const home = temp();
  const out = join(temp(), 'x.png');
  const run = (extra: string[], env: Record<string, string>) =>
    new Promise<{ status: number | null; stderr: string }>((ok) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'generate', '--model', 'org/tiny-pipe', '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'a bird', '--steps', '2', '--seed', '1', '--out', out, ...extra],
        { env: { ...process.env, HF_HOME: home, HF_HUB_CACHE: '', HF_TOKEN: '', XDG_CACHE_HOME: home, ...env } },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (status) => ok({ status, stderr }));
    });
  try {
    const first = await run([], { HF_ENDPOINT: hub.endpoint });
    assert.equal(first.status, 0, first.stderr);
    assert.ok(existsSync(out));
  } finally {
    await hub.stop();
  }
  rmSync(out);
  const offline = await run(['--offline'], { HF_ENDPOINT: hub.endpoint });
  assert.equal(offline.status, 0, offline.stderr);
  assert.ok(existsSync(out));
  const notCached = await run(['--offline'], { HF_ENDPOINT: hub.endpoint, HF_HOME: temp() });
  assert.equal(notCached.status, 1);
  assert.match(notCached.stderr, /^cnxs: .*org\/tiny-pipe/);
  assert.equal(notCached.stderr.trim().split('\n').length, 1);
});
