/** The `cnxs` command line, run as a user would (a child process). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadImage } from '../src/image/load.js';
import { readPngText } from '../src/image/png-text.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { readCases } from './pipeline-cases.js';
import { fixture, tempDir } from './helpers.js';

/** A private cache home for every CLI run: the optimized-graph cache must not land in the real ~/.cache. */
const cacheHome = tempDir('cnxs-cli-cache-');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CACHE_HOME: cacheHome },
  });

test('cnxs canny writes an edge PNG atomically; errors are one line and a non-zero exit', async () => {
  const dir = tempDir('cnxs-cli-');
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
  const swapped = cli('canny', fixture('canny', 'scene0_64x64.png'), '--out', out, '--low', '300', '--high', '100');
  assert.equal(swapped.status, 2);
  assert.match(swapped.stderr, /^cnxs: --low \(300\) must not be above --high \(100\) \(see cnxs canny --help\)\n$/);
  const help = cli('canny', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /-o, --out FILE\.png/);
  assert.equal(cli('frobnicate').status, 2);
  assert.equal(existsSync(join(dir, 'nope.png')), false);
});

test('cnxs generate on the tiny checkpoint, offline: the same image as the pipeline, with A1111 metadata', async () => {
  const dir = tempDir('cnxs-gen-');
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
    [[...base, '--control', join(D, 'pipeline', 'control.png'), '--scheduler', 'warp-drive'], 2, /unknown --scheduler "warp-drive"/],
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
  const dir = tempDir('cnxs-dev-');
  const D = fixture('tiny-sd-cnxs');
  const args = ['generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'a photo of a bird', '--steps', '2', '--seed', '0'];
  const gpu = cli(...args, '--device', 'webgpu', '--out', join(dir, 'gpu.png'), '--json');
  assert.equal(gpu.status, 0, gpu.stderr);
  const device = (JSON.parse(gpu.stdout) as { device: string }).device;
  const warnings = gpu.stderr.split('\n').filter((l) => l.startsWith('cnxs: warning:'));
  // one line for the whole pipeline, and only when the CPU ran it (Dawn's own Vulkan lines cannot be silenced)
  assert.equal(warnings.length, device === 'cpu' ? 1 : 0, gpu.stderr);
  for (const line of warnings) assert.match(line, /^cnxs: warning: execution provider webgpu is not available here \(.*\); running on the CPU/);
  assert.equal(cli(...args, '--out', join(dir, 'cpu.png')).status, 0);
  assert.deepEqual(readdirSync(dir).sort(), ['cpu.png', 'gpu.png']);
  const [a, b] = [(await loadImage(join(dir, 'gpu.png'))).data, (await loadImage(join(dir, 'cpu.png'))).data];
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) <= 1), 'pixels within one rounding step');
});

test('cnxs help, generate --help and --version: every option with its short form, the scheduler names, the package version', () => {
  const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
  for (const flag of ['--version', '-v']) {
    const r = cli(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
  }
  const help = cli('generate', '--help');
  assert.equal(help.status, 0, help.stderr);
  for (const line of [/-p, --prompt TEXT/, /-c, --control IMAGE/, /-o, --out FILE\.png/, /--max-pixels N/, /^schedulers: ddim \(DDIM\), pndm \(PLMS\), .*euler-a \(Euler a\)/m]) assert.match(help.stdout, line);
  const all = cli('help');
  assert.equal(all.status, 0);
  assert.match(all.stdout, /dpm\+\+2m-karras \(DPM\+\+ 2M Karras\)/);
  const typo = cli('generte');
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /unknown command "generte"; did you mean generate\?/);
});

test('cnxs generate checks every option and the outputs before it resolves or loads a model', () => {
  const dir = tempDir('cnxs-early-');
  mkdirSync(join(dir, 'folder.png'));
  // the model does not exist: each run must stop at the option, not at the model
  const base = ['generate', '--model', join(dir, 'no-such-model'), '--control', join(dir, 'no-such.png'), '--prompt', 'x'];
  const cases: [string[], RegExp][] = [
    [['--steps', '2000'], /--steps must be ≤ 1000/],
    [['--scheduler', 'eular'], /did you mean euler\?/],
    [['--clip-skip', '99'], /--clip-skip must be ≤ 12/],
    [['--control-start', '0.9', '--control-end', '0.1'], /--control-start \(0\.9\) must be below --control-end \(0\.1\)/],
    [['--seed', '99999999999999999999'], /--seed must be ≤ 18446744073709551615/],
    [['--steps', '-5'], /--steps must be ≥ 1, got -5/],
    [['--width', '100000', '--height', '100000'], /over --max-pixels/],
    [['--out', join(dir, 'folder.png')], /cannot write to .*folder\.png: it is a folder/],
  ];
  for (const [extra, message] of cases) {
    const r = cli(...base, ...extra);
    assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /clipSkip|localFilesOnly|bigint|no-such/, 'CLI words, nothing loaded');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const offline = cli('generate', '--model', 'org/not-cached', '--control', fixture('tiny-sd-cnxs', 'pipeline', 'control.png'), '--prompt', 'x', '--offline', '--out', join(dir, 'o.png'));
  assert.equal(offline.status, 1);
  assert.match(offline.stderr, /--offline is set/);
  assert.doesNotMatch(offline.stderr, /localFilesOnly/);
});

test('cnxs generate picks a valid size from any control image, rounds a given one with a note, caps pixels', async () => {
  const dir = tempDir('cnxs-size-');
  const D = fixture('tiny-sd-cnxs');
  // a 50×37 control image (not a multiple of anything): the tiny model's 64² resolution fitted to 4:3 → 64×32·… rounded to 32s
  const odd = new RGBImage(50, 37, new Uint8Array(50 * 37 * 3).map((_, i) => (i * 37) % 251));
  await odd.save(join(dir, 'odd.png'));
  const run = (...extra: string[]) => cli('generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(dir, 'odd.png'), '--prompt', 'x', '--steps', '1', '--seed', '0', ...extra);
  const auto = run('--out', join(dir, 'auto.png'), '--json');
  assert.equal(auto.status, 0, auto.stderr);
  const summary = JSON.parse(auto.stdout) as { width: number; height: number };
  assert.deepEqual([summary.width, summary.height], [64, 64], 'about 64² pixels at 4:3, in multiples of 32');
  const png = await loadImage(join(dir, 'auto.png'));
  assert.deepEqual([png.width, png.height], [64, 64]);
  const given = run('--width', '100', '--height', '40', '--out', join(dir, 'given.png'));
  assert.equal(given.status, 0, given.stderr);
  assert.match(given.stderr, /^cnxs: note: 100×40 px is not a multiple of 32 px for this model; generating 96×32$/m);
  const g = await loadImage(join(dir, 'given.png'));
  assert.deepEqual([g.width, g.height], [96, 32]);
  const capped = run('--width', '4096', '--max-pixels', '100000', '--out', join(dir, 'capped.png'));
  assert.equal(capped.status, 2);
  assert.match(capped.stderr, /4096×3040 px is over --max-pixels 100000/);
  assert.deepEqual(readdirSync(dir).sort(), ['auto.png', 'given.png', 'odd.png'], 'nothing written for the refused size');
});

test('cnxs generate: image k of --num-images has seed + k in its file and reproduces from it alone; Unicode prompts survive', async () => {
  const dir = tempDir('cnxs-seeds-');
  const D = fixture('tiny-sd-cnxs');
  const prompt = 'a bird — 鳥 🐦 “quoted”';
  const args = ['generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', prompt, '--steps', '2', '--scheduler', 'euler-a'];
  assert.equal(cli(...args, '--seed', '9007199254740993', '--num-images', '2', '--out', join(dir, 'batch.png')).status, 0);
  const second = readPngText(readFileSync(join(dir, 'batch-1.png')))['parameters']!;
  assert.match(second, /^a bird — 鳥 🐦 “quoted”\nSteps: 2, Sampler: Euler a, CFG scale: 7\.5, Seed: 9007199254740994, /);
  assert.match(readPngText(readFileSync(join(dir, 'batch-0.png')))['parameters']!, /Seed: 9007199254740993, /);
  // feed the file's own sampler label and seed back
  const sampler = /Sampler: ([^,]+),/.exec(second)![1]!;
  const seed = /Seed: (\d+),/.exec(second)![1]!;
  const again = cli(...args.slice(0, -2), '--scheduler', sampler, '--seed', seed, '--out', join(dir, 'again.png'));
  assert.equal(again.status, 0, again.stderr);
  const [a, b] = [(await loadImage(join(dir, 'batch-1.png'))).data, (await loadImage(join(dir, 'again.png'))).data];
  assert.ok(a.every((v, i) => Math.abs(v - b[i]!) <= 1), 'the second image of the batch is the single image of its seed');
  const [c] = [(await loadImage(join(dir, 'batch-0.png'))).data];
  assert.ok(c.some((v, i) => Math.abs(v - a[i]!) > 8), 'the two images of a batch differ');
});

test("the README's offline command runs as written (from the repository root)", () => {
  const readme = readFileSync('README.md', 'utf8');
  const block = /^npx cnxs generate --model test\/fixtures\/tiny-sd-cnxs[^\n]*\\\n[^\n]*$/m.exec(readme);
  assert.ok(block, 'the README shows the tiny-checkpoint command');
  const words = [...block[0].replace(/\\\n/g, ' ').matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!).slice(2);
  const dir = tempDir('cnxs-readme-');
  const out = words.indexOf('--out');
  assert.ok(out > 0, 'the command names its --out');
  words[out + 1] = join(dir, words[out + 1]!);
  const r = cli(...words);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(dir), ['tiny.png']);
});

test('cnxs generate --device cuda without CUDA: one line that says why, what to do and where it runs; the summary names the device', () => {
  const dir = tempDir('cnxs-cuda-');
  const D = fixture('tiny-sd-cnxs');
  const r = cli('generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'x', '--steps', '1', '--seed', '0', '--device', 'cuda', '--out', join(dir, 'o.png'), '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { device: string }).device, 'cpu');
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^cnxs: warning: execution provider cuda is not available here \(.+\); running on the CPU\. /);
  assert.doesNotMatch(r.stderr, /\x1b\[/, 'no ANSI colours from onnxruntime');
  const plain = cli('generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--prompt', 'x', '--steps', '1', '--seed', '0', '--out', join(dir, 'p.png'));
  assert.match(plain.stdout, /, 1 step \(DDIM\), [\d.]+ s on cpu\n$/);
});

test('cnxs generate --lora FILE:SCALE and A1111 <lora:NAME:SCALE> with --lora-dir give the same image; tags are checked before loading', async () => {
  const dir = tempDir('cnxs-lora-');
  const D = fixture('tiny-sd-cnxs');
  const L = fixture('adapters', 'lora', 'sd');
  const base = ['generate', '--model', D, '--controlnet', join(D, 'controlnet'), '--control', join(D, 'pipeline', 'control.png'), '--steps', '2', '--seed', '3'];
  const flag = cli(...base, '--prompt', 'a photo of a bird', '--lora', `${join(L, 'lora_a_kohya.safetensors')}:0.7`, '--out', join(dir, 'flag.png'));
  assert.equal(flag.status, 0, flag.stderr);
  const tag = cli(...base, '--prompt', 'a photo of a bird <lora:lora_a_kohya:0.7>', '--lora-dir', L, '--out', join(dir, 'tag.png'));
  assert.equal(tag.status, 0, tag.stderr);
  const plain = cli(...base, '--prompt', 'a photo of a bird', '--out', join(dir, 'plain.png'));
  assert.equal(plain.status, 0, plain.stderr);
  const [f, t, p] = await Promise.all(['flag', 'tag', 'plain'].map(async (n) => (await loadImage(join(dir, `${n}.png`))).data));
  assert.ok(f!.every((v, i) => v === t![i]), 'the tag is the flag: same adapter, same weight, same prompt once the tag is removed');
  assert.ok(f!.some((v, i) => Math.abs(v - p![i]!) > 8), 'the LoRA changes the image');
  assert.match(readPngText(readFileSync(join(dir, 'tag.png')))['parameters']!, /^a photo of a bird <lora:lora_a_kohya:0\.7>\n/);
  assert.match(readPngText(readFileSync(join(dir, 'flag.png')))['parameters']!, /, LoRA: lora_a_kohya\.safetensors:0\.7$/);
  // checked before anything loads: the model below does not exist
  const early: [string[], RegExp][] = [
    [['--prompt', 'x <lora:lora_a_kohya:0.5>'], /needs --lora-dir/],
    [['--prompt', 'x <lora:nope:0.5>', '--lora-dir', L], /<lora:nope:0\.5>: no file .*nope\.safetensors/],
    [['--prompt', 'x <lora:lora_a_kohya:0.5:0.3>', '--lora-dir', L], /separate text-encoder and UNet multipliers/],
    [['--prompt', 'x', '--lora', join(dir, 'missing.safetensors')], /--lora .*missing\.safetensors: no such file/],
    [['--prompt', 'x', '--lora-dir', join(dir, 'none')], /--lora-dir .*none: no such folder/],
  ];
  for (const [extra, message] of early) {
    const r = cli('generate', '--model', join(dir, 'no-such-model'), '--control', join(D, 'pipeline', 'control.png'), ...extra, '--out', join(dir, 'x.png'));
    assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});
