/** The `cnxs` command line, run as a user would (a child process). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadImage } from '../src/image/load.js';
import { readPngText } from '../src/image/png-text.js';
import { readCases } from './pipeline-cases.js';
import { fixture } from './helpers.js';

/** A private cache home for every CLI run: the optimized-graph cache must not land in the real ~/.cache. */
const cacheHome = mkdtempSync(join(tmpdir(), 'cnxs-cli-cache-'));
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CACHE_HOME: cacheHome },
  });

test('cnxs canny writes an edge PNG atomically; errors are one line and a non-zero exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-cli-'));
  const out = join(dir, 'edges.png');
  const r = cli('canny', fixture('canny', 'scene0_64x64.png'), '--out', out);
  assert.equal(r.status, 0, r.stderr);
  const edges = await loadImage(out);
  const expected = await loadImage(fixture('canny', 'scene0_64x64_canny_100_200.png'));
  assert.deepEqual(Buffer.from(edges.data), Buffer.from(expected.data));
  assert.deepEqual(readdirSync(dir), ['edges.png'], 'no temp file left behind');

  const missing = cli('canny', join(dir, 'nope.png'), '--out', out);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^cnxs: .*nope\.png/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);

  const bad = cli('canny', fixture('canny', 'scene0_64x64.png'), '--out', out, '--low', 'abc');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--low must be a number, got "abc"/);
  assert.equal(cli('frobnicate').status, 2);
  assert.equal(existsSync(join(dir, 'nope.png')), false);
});

test('cnxs generate on the tiny checkpoint, offline: the same image as the pipeline, with A1111 metadata', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-gen-'));
  const out = join(dir, 'bird.png');
  const D = fixture('tiny-sd-cnxs');
  const r = cli('generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'),
    '--prompt', 'a photo of a bird', '--steps', '4', '--seed', '0', '--num-images', '2', '--out', out, '--json');
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout.trim()) as { images: string[]; seed: number; sampler: string };
  assert.deepEqual(summary.images, [join(dir, 'bird-0.png'), join(dir, 'bird-1.png')]);
  assert.equal(summary.sampler, 'DDIM');
  assert.ok(readdirSync(join(cacheHome, 'controlnet-xs', 'graphs')).some((d) => d.startsWith('UNetControlNetXSModel-')), 'optimized graphs cached');
  assert.deepEqual(readdirSync(dir).sort(), ['bird-0.png', 'bird-1.png']);
  const text = readPngText(readFileSync(join(dir, 'bird-0.png')));
  assert.match(text['parameters']!, /^a photo of a bird\nSteps: 4, Sampler: DDIM, CFG scale: 7\.5, Seed: 0, Size: 64x64/);

  // one image, seed 0 = pipeline case b_generator_seed0: pixels within one rounding step of diffusers
  const single = join(dir, 'single.png');
  assert.equal(cli('generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'),
    '--prompt', 'a photo of a bird', '--steps', '4', '--seed', '0', '--out', single).status, 0);
  const { cases, read } = readCases(join(D, 'pipeline'));
  const expected = read(cases.find((c) => c.name === 'b_generator_seed0')!.tensors['images']!).data as Float32Array;
  const got = (await loadImage(single)).data;
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]! * 255));
  assert.ok(worst <= 0.5 + 1e-2, `pixel off by ${worst}`);
});

test('cnxs generate: bad numbers, unreadable control image, unwritable output, unknown model are one-line errors', () => {
  const D = fixture('tiny-sd-cnxs');
  const base = ['generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--prompt', 'x'];
  const cases: [string[], number, RegExp][] = [
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--steps', '0'], 2, /--steps must be ≥ 1, got 0/],
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--guidance-scale', 'abc'], 2, /--guidance-scale must be a number, got "abc"/],
    [[...base, '--control', join(D, 'nope.png')], 1, /nope\.png/],
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--out', '/nonexistent-dir/x.png'], 2, /cannot write to \/nonexistent-dir\/x\.png/],
    [['generate', '--model', join(D, 'no-such-model'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'x', '--offline'], 1, /no-such-model/],
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--scheduler', 'warp-drive'], 1, /unknown scheduler "warp-drive"/],
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--device', 'tpu'], 2, /--device must be one of cpu, cuda, webgpu, got "tpu"/],
  ];
  for (const [args, status, message] of cases) {
    const r = cli(...args);
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('cnxs generate --device webgpu: the same image either way (on a WebGPU adapter, or on the CPU after a one-line warning)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-dev-'));
  const D = fixture('tiny-sd-cnxs');
  const args = ['generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'a photo of a bird', '--steps', '2', '--seed', '0'];
  const gpu = cli(...args, '--device', 'webgpu', '--out', join(dir, 'gpu.png'));
  assert.equal(gpu.status, 0, gpu.stderr);
  for (const line of gpu.stderr.split('\n').filter((l) => l.startsWith('cnxs: warning:'))) assert.match(line, /execution provider webgpu is not available here .*running on the CPU/);
  assert.equal(cli(...args, '--out', join(dir, 'cpu.png')).status, 0);
  assert.deepEqual(readdirSync(dir).sort(), ['cpu.png', 'gpu.png']);
  const [a, b] = [(await loadImage(join(dir, 'gpu.png'))).data, (await loadImage(join(dir, 'cpu.png'))).data];
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) <= 1), 'pixels within one rounding step');
});
