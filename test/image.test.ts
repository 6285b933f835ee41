/**
 * Image loading, Pillow-exact resizing and diffusers' VaeImageProcessor.
 *
 * Goldens: test/fixtures/images/pil_goldens.json (Pillow 12.3.0: `Image.resize`, `.convert("RGB")`)
 * and pipeline-control.safetensors (diffusers 0.33.1 control images and numpy_to_pil output of the
 * tiny-sd-cnxs pipeline cases). See test/fixtures/README.md.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { InputError } from '../src/errors.js';
import {
  floatToByte,
  loadImage,
  pilToTensor,
  resizeImage,
  RGBImage,
  roundHalfEven,
  tensorToImages,
  VaeImageProcessor,
  type ResampleFilter,
} from '../src/image/index.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture } from './helpers.js';

interface Goldens {
  resize: { input: string; filter: ResampleFilter; width: number; height: number; output: string }[];
  load: { input: string; pil_mode: string; expected_rgb: string }[];
}
const goldens = JSON.parse(readFileSync(fixture('images', 'pil_goldens.json'), 'utf8')) as Goldens;
const pipelineTensors = loadSafetensorsSync(fixture('images', 'pipeline-control.safetensors'));

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cnxs-image-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Pixels in a deterministic pattern, `channels` interleaved samples per pixel. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 97 + seed * 31 + ((i * i) >> 3)) & 0xff;
  return out;
}

/** A PNG file with the given IHDR size and no image data: enough to exercise header validation. */
function pngHeaderOnly(width: number, height: number): Uint8Array {
  const chunk = (tag: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(tag, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IEND', Buffer.alloc(0))]);
}

function countDiffs(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Shapes: [B, H, W, C] → [B, C, H, W]. */
function nhwcToNchw(t: Tensor<'float32'>): Tensor<'float32'> {
  const [b, h, w, c] = t.dims as [number, number, number, number];
  const out = new Float32Array(t.data.length);
  for (let n = 0; n < b; n++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) out[((n * c + k) * h + y) * w + x] = t.data[((n * h + y) * w + x) * c + k]!;
  return new Tensor('float32', out, [b, c, h, w]);
}

describe('loadImage', () => {
  for (const c of goldens.load) {
    it(`${c.input} (PIL mode ${c.pil_mode}) equals PIL .convert("RGB")`, async () => {
      const got = await loadImage(fixture('images', c.input));
      const expected = await loadImage(fixture('images', c.expected_rgb));
      assert.equal(got.width, expected.width);
      assert.equal(got.height, expected.height);
      assert.equal(countDiffs(got.data, expected.data), 0);
    });
  }

  it('loads from bytes as from a path', async () => {
    const path = fixture('images', 'control.png');
    const fromPath = await loadImage(path);
    const fromBytes = await loadImage(new Uint8Array(await readFile(path)));
    assert.deepEqual(fromBytes.data, fromPath.data);
  });

  it('RGBA PNG (made with sharp): alpha dropped, colour kept', async () => {
    const rgba = pattern(6 * 4 * 4, 1);
    const png = await sharp(rgba, { raw: { width: 6, height: 4, channels: 4 } }).png().toBuffer();
    const path = join(tmp, 'rgba.png');
    await writeFile(path, png);
    const img = await loadImage(path);
    assert.equal(img.width, 6);
    assert.equal(img.height, 4);
    for (let i = 0; i < 24; i++) assert.deepEqual([...img.data.subarray(i * 3, i * 3 + 3)], [...rgba.subarray(i * 4, i * 4 + 3)]);
  });

  it('grayscale PNG (made with sharp): replicated into R, G, B', async () => {
    const gray = pattern(5 * 3, 2);
    const png = await sharp(gray, { raw: { width: 5, height: 3, channels: 1 } }).toColourspace('b-w').png().toBuffer();
    assert.equal((await sharp(png).metadata()).channels, 1);
    const img = await loadImage(png);
    for (let i = 0; i < 15; i++) assert.deepEqual([...img.data.subarray(i * 3, i * 3 + 3)], [gray[i], gray[i], gray[i]]);
  });

  it('16-bit RGB and gray PNGs (made with sharp) load as 8-bit RGB like PIL', async () => {
    const rgb = pattern(4 * 2 * 3, 3);
    const png16 = await sharp(rgb, { raw: { width: 4, height: 2, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(png16).metadata()).depth, 'ushort');
    const img = await loadImage(png16);
    // sharp widens v to v * 257; PIL keeps the high byte, which is v again.
    assert.deepEqual(img.data, rgb);

    const gray = new Uint8Array([0, 1, 2, 3, 100, 200, 254, 255]);
    const gray16 = await sharp(gray, { raw: { width: 4, height: 2, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    const g = await loadImage(gray16);
    // PIL: mode I;16 → RGB saturates; v * 257 > 255 for every v ≥ 1.
    assert.deepEqual([...g.data].filter((_, i) => i % 3 === 0), [0, 255, 255, 255, 255, 255, 255, 255]);
  });

  it('corrupt bytes, truncated files and empty buffers → InputError', async () => {
    await assert.rejects(loadImage(new TextEncoder().encode('definitely not an image')), InputError);
    await assert.rejects(loadImage(new Uint8Array(0)), InputError);
    const good = await readFile(fixture('images', 'control_128.png'));
    const path = join(tmp, 'truncated.png');
    await writeFile(path, good.subarray(0, Math.floor(good.length / 2)));
    await assert.rejects(loadImage(path), (e: unknown) => e instanceof InputError && e.message.includes(path));
  });

  it('a missing path or a folder → InputError naming the path', async () => {
    const missing = join(tmp, 'nope', 'missing.png');
    await assert.rejects(loadImage(missing), (e: unknown) => e instanceof InputError && e.message.includes(missing));
    await assert.rejects(loadImage(tmp), (e: unknown) => e instanceof InputError && e.message.includes(tmp));
  });

  it('a 0x0 image → InputError', async () => {
    const path = join(tmp, 'zero.png');
    await writeFile(path, pngHeaderOnly(0, 0));
    await assert.rejects(loadImage(path), (e: unknown) => e instanceof InputError && e.message.includes(path));
    assert.throws(() => new RGBImage(0, 0, new Uint8Array(0)), InputError);
    assert.throws(() => new RGBImage(2, 2, new Uint8Array(11)), InputError);
  });
});

describe('RGBImage encode / save', () => {
  it('toPNG round-trips exactly', async () => {
    const img = new RGBImage(7, 5, pattern(7 * 5 * 3, 4));
    const back = await loadImage(await img.toPNG());
    assert.deepEqual(back.data, img.data);
  });

  it('save writes atomically and leaves no temporary file', async () => {
    const dir = join(tmp, 'save');
    await mkdir(dir);
    const img = new RGBImage(9, 4, pattern(9 * 4 * 3, 5));
    const path = join(dir, 'out.png');
    await img.save(path);
    await img.save(path); // overwrite in place
    assert.deepEqual(await readdir(dir), ['out.png']);
    assert.deepEqual((await loadImage(path)).data, img.data);
    await img.save(join(dir, 'out.webp'));
    await img.save(join(dir, 'out.jpg'));
    assert.deepEqual((await readdir(dir)).sort(), ['out.jpg', 'out.png', 'out.webp']);
  });

  it('save fails cleanly on a bad extension or folder', async () => {
    const img = new RGBImage(2, 2, pattern(12, 6));
    await assert.rejects(img.save(join(tmp, 'x.bmp')), InputError);
    const missingDir = join(tmp, 'missing-dir', 'x.png');
    await assert.rejects(img.save(missingDir), (e: unknown) => e instanceof InputError && e.message.includes(missingDir));
  });
});

describe('resizeImage (Pillow-exact)', () => {
  for (const c of goldens.resize) {
    it(`${c.filter} 23x17 → ${c.width}x${c.height} equals PIL Image.resize`, async () => {
      const src = await loadImage(fixture('images', c.input));
      const expected = await loadImage(fixture('images', c.output));
      const got = resizeImage(src, { width: c.width, height: c.height }, { filter: c.filter });
      assert.equal(got.width, c.width);
      assert.equal(got.height, c.height);
      assert.equal(countDiffs(got.data, expected.data), 0);
    });
  }

  it('same size: an identical copy', async () => {
    const src = await loadImage(fixture('images', 'control_128.png'));
    for (const filter of ['lanczos', 'bicubic', 'bilinear', 'nearest'] as const) {
      const out = resizeImage(src, { width: 128, height: 128 }, { filter });
      assert.notEqual(out.data, src.data);
      assert.deepEqual(out.data, src.data);
    }
  });

  it('a constant image stays constant (weights are normalised)', () => {
    const flat = new RGBImage(13, 11, new Uint8Array(13 * 11 * 3).fill(201));
    for (const size of [{ width: 5, height: 4 }, { width: 31, height: 29 }]) {
      assert.ok(resizeImage(flat, size).data.every((v) => v === 201));
    }
  });

  it('bad targets → InputError', () => {
    const img = new RGBImage(4, 4, new Uint8Array(48));
    assert.throws(() => resizeImage(img, { width: 0, height: 4 }), InputError);
    assert.throws(() => resizeImage(img, { width: 2.5, height: 4 }), InputError);
  });
});

describe('VaeImageProcessor', () => {
  const control = new VaeImageProcessor({ vaeScaleFactor: 8, doConvertRgb: true, doNormalize: false });

  it('control image resize path equals diffusers (case o_control_resize: 128px → 64px, PIL LANCZOS)', async () => {
    const img = await loadImage(fixture('images', 'control_128.png'));
    const got = control.preprocess(img, { height: 64, width: 64 });
    const expected = pipelineTensors.read('o_control_resize.control_image');
    assert.deepEqual(got.dims, [1, 3, 64, 64]);
    assert.deepEqual(got.data, expected.data);
  });

  it('control image without resize equals diffusers (case a_default_latents)', async () => {
    const img = await loadImage(fixture('images', 'control.png'));
    const expected = pipelineTensors.read('a_default_latents.control_image');
    assert.deepEqual(control.preprocess(img, { height: 64, width: 64 }).data, expected.data);
    assert.deepEqual(control.preprocess(img).data, expected.data);
  });

  it('getDefaultHeightWidth rounds down to the scale factor', () => {
    const img = RGBImage.blank(100, 70);
    assert.deepEqual(control.getDefaultHeightWidth(img), { height: 64, width: 96 });
    assert.deepEqual(control.getDefaultHeightWidth(img, { height: 65, width: 130 }), { height: 64, width: 128 });
    assert.deepEqual(control.getDefaultHeightWidth(new Tensor('float32', new Float32Array(3 * 17 * 9), [1, 3, 17, 9])), {
      height: 16,
      width: 8,
    });
    assert.throws(() => control.getDefaultHeightWidth(RGBImage.blank(7, 7)), InputError);
  });

  it('images off the grid are resized to the rounded size', async () => {
    const img = await loadImage(fixture('images', 'resize_src_23x17.png'));
    const t = control.preprocess([img, img]);
    assert.deepEqual(t.dims, [2, 3, 16, 16]);
    const direct = pilToTensor(resizeImage(img, { width: 16, height: 16 }));
    assert.deepEqual(t.data.subarray(0, direct.data.length), direct.data);
    // Mixed sizes are resized to one target; without resizing they cannot be stacked.
    assert.deepEqual(control.preprocess([img, RGBImage.blank(8, 8)], { height: 8, width: 8 }).dims, [2, 3, 8, 8]);
    const noResize = new VaeImageProcessor({ doResize: false, doNormalize: false });
    assert.throws(() => noResize.preprocess([img, RGBImage.blank(8, 8)]), InputError);
  });

  it('VAE input: normalised to [-1, 1] as float32 2x - 1', async () => {
    const vae = new VaeImageProcessor();
    const img = await loadImage(fixture('images', 'control.png'));
    const unit = control.preprocess(img);
    const t = vae.preprocess(img);
    assert.deepEqual(t.dims, [1, 3, 64, 64]);
    for (let i = 0; i < t.data.length; i++) assert.equal(t.data[i], Math.fround(2 * unit.data[i]! - 1));
  });

  it('tensor input: latents pass through, [-1, 1] is not normalised again, nearest resize like torch', () => {
    const vae = new VaeImageProcessor();
    const latents = new Tensor('float32', new Float32Array(4 * 8 * 8).fill(3), [1, 4, 8, 8]);
    assert.equal(vae.preprocess(latents).data, latents.data);

    const signed = new Tensor('float32', new Float32Array(3 * 8 * 8).fill(-0.5), [1, 3, 8, 8]);
    assert.ok(vae.preprocess(signed).data.every((v) => v === -0.5));

    // [1, 3, 20, 18] → rounded to 16 x 16; torch nearest picks floor(o * 20/16) and floor(o * 18/16).
    const h = 20;
    const w = 18;
    const src = new Float32Array(3 * h * w).map((_, i) => (i % (h * w)) / (h * w));
    const out = control.preprocess(new Tensor('float32', src, [3, h, w]));
    assert.deepEqual(out.dims, [1, 3, 16, 16]);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        const sy = Math.floor(Math.fround(y * Math.fround(h / 16)));
        const sx = Math.floor(Math.fround(x * Math.fround(w / 16)));
        assert.equal(out.data[y * 16 + x], src[sy * w + sx]);
      }
    }
  });

  it("postprocess 'pil' rounds like numpy: stored images → images_uint8_pil exactly", () => {
    const images = pipelineTensors.readFloat32('a_default_latents.images'); // [1, 64, 64, 3] in [0, 1]
    const expected = pipelineTensors.read('a_default_latents.images_uint8_pil');
    const nchw = nhwcToNchw(images);
    const [pil] = new VaeImageProcessor().postprocess(nchw, 'pil', { doDenormalize: [false] });
    assert.deepEqual(pil!.data, expected.data);
    assert.deepEqual(tensorToImages(nchw)[0]!.data, expected.data);
  });

  it("postprocess 'pil': exact ties x * 255 = k + 0.5 round half to even", () => {
    let ties = 0;
    for (let k = 0; k < 255; k++) {
      const x = Math.fround((k + 0.5) / 255);
      if (Math.fround(x * 255) !== k + 0.5) continue;
      ties++;
      const even = k % 2 === 0 ? k : k + 1;
      assert.equal(floatToByte(x), even, `x*255 = ${k + 0.5}`);
      // Through postprocess: sample s with fround(s / 2 + 0.5) = x, i.e. s = 2x - 1 (exact for x ≥ 0.5).
      if (x >= 0.5) {
        const s = new Tensor('float32', new Float32Array(3).fill(2 * x - 1), [1, 3, 1, 1]);
        assert.equal(new VaeImageProcessor().postprocess(s, 'pil')[0]!.data[0], even);
      }
    }
    assert.ok(ties > 20, `only ${ties} exact ties found`);
    assert.equal(roundHalfEven(0.5), 0);
    assert.equal(roundHalfEven(1.5), 2);
    assert.equal(roundHalfEven(2.5), 2);
    assert.equal(roundHalfEven(-2.5), -2);
    assert.equal(roundHalfEven(2.4999), 2);
  });

  it("postprocess 'np' / 'pt' / 'latent'", () => {
    const vae = new VaeImageProcessor();
    // [1, 3, 1, 2]: channel-major values, some outside [-1, 1].
    const sample = new Tensor('float32', Float32Array.from([-2, -1, 0, 0.5, 1, 3]), [1, 3, 1, 2]);
    const np = vae.postprocess(sample, 'np');
    assert.deepEqual(np.dims, [1, 1, 2, 3]);
    // (x / 2 + 0.5).clamp(0, 1), then NHWC: pixel 0 = (R, G, B) = (-2, 0, 1) → (0, 0.5, 1).
    assert.deepEqual([...np.data], [0, 0.5, 1, 0, 0.75, 1]);
    const pt = vae.postprocess(sample, 'pt');
    assert.deepEqual(pt.dims, [1, 3, 1, 2]);
    assert.deepEqual([...pt.data], [0, 0, 0.5, 0.75, 1, 1]);
    assert.equal(vae.postprocess(sample, 'latent').data, sample.data);
    const [img] = vae.postprocess(sample, 'pil');
    assert.deepEqual([...img!.data], [0, 128, 255, 0, 191, 255]);
    assert.throws(() => vae.postprocess(new Tensor('float32', new Float32Array(4), [1, 4]), 'np'), InputError);
  });
});
