/**
 * `cnxs depth` (and `cnxs generate --depth`) run as a user would, on the tiny depth models of
 * test/fixtures/depth: the written PNG is transformers' pipeline `depth` (the reference `depth_u8`);
 * bad command lines fail with one line, before any model loads, and write nothing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { assertBytesNear, depthReference } from './depth-cases.js';
import { fixture, tempDir } from './helpers.js';

const { dir: D, cases, bytes } = depthReference('depth');
/** A private cache home: neither the graph cache nor the Hub cache may land in the real ~/.cache. */
const cacheHome = tempDir('cnxs-depth-cli-cache-');
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CACHE_HOME: cacheHome, HF_HOME: join(cacheHome, 'hf'), HF_HUB_OFFLINE: '1' },
  });

/** The gray bytes of a PNG as written (one channel). */
async function grayBytes(path: string): Promise<{ channels: number | undefined; data: Uint8Array; width: number; height: number }> {
  const meta = await sharp(path).metadata();
  const { data, info } = await sharp(path).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  return { channels: meta.channels, data: new Uint8Array(data), width: info.width, height: info.height };
}

describe('cnxs depth writes the pipeline depth as a gray PNG', () => {
  // one image per model: the RGBA one for DPT-hybrid (alpha dropped), the tall one for Depth Anything (aspect kept)
  for (const name of ['tiny-dpt-hybrid.p1_rgba_45x37', 'tiny-depth-anything-v2.p3_rgb_100x40']) {
    test(name, async () => {
      const c = cases.find((x) => x.name === name)!;
      const dir = tempDir('cnxs-depth-cli-');
      const out = join(dir, 'depth.png');
      const r = cli('depth', join(D, c.image_file), '--out', out, '--model', join(D, c.model));
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^wrote .*depth\.png \(\d+×\d+, [\d.]+ s\)\n$/);
      const png = await grayBytes(out);
      assert.equal(png.channels, 1, 'mode L');
      assert.deepEqual([png.height, png.width], c.size_hw);
      assertBytesNear(png.data, bytes(c, 'depth_u8'), 'depth_u8');
      assert.deepEqual(readdirSync(dir), ['depth.png'], 'no temp file left behind');
    });
  }
});

describe('cnxs depth refuses bad command lines before loading, writing nothing', () => {
  const dir = tempDir('cnxs-depth-cli-bad-');
  const image = join(D, 'images', 'p0_rgb_48x80.png');
  const model = join(D, 'tiny-dpt-hybrid');
  const notAnImage = join(dir, 'notes.png');
  mkdirSync(join(dir, 'folder.png'));
  const unet = join(dir, 'unet');
  mkdirSync(unet);
  test('each failure: exit code, one line naming what is wrong', () => {
    writeFileSync(notAnImage, 'not a png');
    copyFileSync(fixture('tiny-sd-cnxs', 'unet', 'config.json'), join(unet, 'config.json'));
    copyFileSync(join(model, 'preprocessor_config.json'), join(unet, 'preprocessor_config.json'));
    const out = join(dir, 'out.png');
    const runs: [string[], number, RegExp][] = [
      [['depth', image], 2, /depth needs --out/],
      [['depth', '--out', out], 2, /exactly one input image/],
      [['depth', join(dir, 'nope.png'), '--out', out, '--model', model], 1, /nope\.png: cannot open image \(no such file\)/],
      [['depth', notAnImage, '--out', out, '--model', model], 1, /notes\.png: not a readable image/],
      [['depth', image, '--out', join(dir, 'folder.png'), '--model', model], 2, /folder\.png is a folder/],
      [['depth', image, '--out', join(dir, 'no-such-dir', 'o.png'), '--model', model], 2, /does not exist/],
      [['depth', image, '--out', join(dir, 'o.gif'), '--model', model], 2, /cannot tell the image format from "\.gif"/],
      [['depth', image, '--out', out, '--model', model, '--device', 'tpu'], 2, /--device must be one of cpu, cuda, webgpu, got "tpu"/],
      [['depth', image, '--out', out, '--model', unet], 1, /not a depth-estimation model \(a diffusers UNet2DConditionModel\)/],
      [['depth', image, '--out', out, '--model', 'org/not-cached', '--offline'], 1, /org\/not-cached.*--offline is set/],
      [['depth', image, '--out', out, '--modl', model], 2, /unknown option --modl; did you mean --model\?/],
    ];
    for (const [args, status, message] of runs) {
      const r = cli(...args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    assert.deepEqual(readdirSync(dir).sort(), ['folder.png', 'notes.png', 'unet'], 'nothing written');
  });

  test('--help lists the options; cnxs help lists the command', () => {
    const help = cli('depth', '--help');
    assert.equal(help.status, 0);
    for (const line of [/-o, --out FILE\.png/, /-m, --model ID\|DIR/, /depth-anything\/Depth-Anything-V2-Small-hf/, /--offline/, /--device cpu\|cuda\|webgpu/]) assert.match(help.stdout, line);
    assert.match(cli('help').stdout, /^ {2}depth {5}depth map of a photo/m);
  });
});

describe('cnxs generate --depth', () => {
  const SD = fixture('tiny-sd-cnxs');
  const photo = join(D, 'images', 'p0_rgb_48x80.png');
  const depthModel = join(D, 'tiny-depth-anything-v2');
  const generate = (...args: string[]) => cli('generate', '--model', SD, '--controlnet', join(SD, 'controlnet'), '--prompt', 'a photo of a bird', '--steps', '1', '--seed', '0', ...args);

  test('uses the depth map as the control image: the same image as cnxs depth, then generate with its PNG', async () => {
    const dir = tempDir('cnxs-depth-gen-');
    const depthPng = join(dir, 'depth.png');
    assert.equal(cli('depth', photo, '--out', depthPng, '--model', depthModel).status, 0);
    const viaFile = generate('--control', depthPng, '--out', join(dir, 'a.png'));
    assert.equal(viaFile.status, 0, viaFile.stderr);
    const direct = generate('--control', photo, '--depth', '--depth-model', depthModel, '--out', join(dir, 'b.png'));
    assert.equal(direct.status, 0, direct.stderr);
    const [a, b] = await Promise.all(['a.png', 'b.png'].map((f) => sharp(join(dir, f)).raw().toBuffer()));
    assert.ok(a!.equals(b!), 'generate --depth equals generate on the cnxs depth PNG');
    // and it is not simply the photo: the photo itself as the control image gives another picture
    const plain = generate('--control', photo, '--out', join(dir, 'c.png'));
    assert.equal(plain.status, 0, plain.stderr);
    assert.ok(!(await sharp(join(dir, 'c.png')).raw().toBuffer()).equals(a!), 'the depth map, not the photo, steers the image');
  });

  test('--depth with --canny, or --depth-model without --depth, is a usage error', () => {
    const dir = tempDir('cnxs-depth-gen-bad-');
    const both = generate('--control', photo, '--depth', '--canny', '--out', join(dir, 'x.png'));
    assert.equal(both.status, 2);
    assert.match(both.stderr, /--canny and --depth/);
    const alone = generate('--control', photo, '--depth-model', depthModel, '--out', join(dir, 'x.png'));
    assert.equal(alone.status, 2);
    assert.match(alone.stderr, /--depth-model needs --depth/);
    const notDepth = generate('--control', photo, '--depth', '--depth-model', join(SD, 'unet'), '--out', join(dir, 'x.png'));
    assert.equal(notDepth.status, 1);
    assert.match(notDepth.stderr, /not a depth-estimation model/);
    assert.deepEqual(readdirSync(dir), [], 'nothing written');
  });
});
