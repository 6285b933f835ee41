/**
 * Canny vs OpenCV 4.6 `cv2.Canny(rgb_uint8, low, high, apertureSize=3, L2gradient=...)`: every case of
 * test/fixtures/canny/cases.json must match pixel for pixel.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { InputError } from '../src/errors.js';
import { canny, loadImage, RGBImage } from '../src/image/index.js';
import { fixture } from './helpers.js';

interface CannyCase {
  input: string;
  low_threshold: number;
  high_threshold: number;
  l2_gradient: boolean;
  aperture_size: number;
  output: string;
  edge_pixels: number;
}

const { cases } = JSON.parse(readFileSync(fixture('canny', 'cases.json'), 'utf8')) as { cases: CannyCase[] };

/** A deterministic pseudo-random RGB image (xorshift32). */
function noiseImage(width: number, height: number, seed: number): RGBImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    data[i] = s & 0xff;
  }
  return new RGBImage(width, height, data);
}

describe('canny (OpenCV 4.6 parity)', () => {
  it('has cases to check', () => assert.ok(cases.length >= 12, `only ${cases.length} cases`));

  for (const c of cases) {
    const name = `${c.input} low=${c.low_threshold} high=${c.high_threshold}${c.l2_gradient ? ' L2' : ''}`;
    it(name, async () => {
      assert.equal(c.aperture_size, 3);
      const image = await loadImage(fixture('canny', c.input));
      const expected = await loadImage(fixture('canny', c.output));
      const got = canny(image, { low: c.low_threshold, high: c.high_threshold, l2Gradient: c.l2_gradient });
      assert.equal(got.width, expected.width);
      assert.equal(got.height, expected.height);

      let edges = 0;
      const wrong: string[] = [];
      for (let i = 0; i < got.width * got.height; i++) {
        const v = got.data[i * 3]!;
        assert.ok(v === 0 || v === 255, `pixel ${i} is ${v}`);
        assert.equal(got.data[i * 3 + 1], v);
        assert.equal(got.data[i * 3 + 2], v);
        if (v === 255) edges++;
        if (v !== expected.data[i * 3]) wrong.push(`(${i % got.width}, ${Math.floor(i / got.width)})`);
      }
      assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} pixels differ`);
      assert.equal(edges, c.edge_pixels);
    });
  }

  it('swaps reversed thresholds like OpenCV', async () => {
    const c = cases[0]!;
    const image = await loadImage(fixture('canny', c.input));
    const a = canny(image, { low: c.low_threshold, high: c.high_threshold });
    const b = canny(image, { low: c.high_threshold, high: c.low_threshold });
    assert.deepEqual(b.data, a.data);
  });

  it('a flat image has no edges; thresholds must be finite', () => {
    const flat = new RGBImage(8, 8, new Uint8Array(8 * 8 * 3).fill(77));
    assert.ok(canny(flat, { low: 0, high: 0 }).data.every((v) => v === 0));
    assert.throws(() => canny(flat, { low: Number.NaN, high: 10 }), InputError);
  });

  it('handles 1-pixel-wide and 1-pixel-high images', () => {
    for (const [w, h] of [[1, 1], [1, 9], [9, 1]] as const) {
      const out = canny(noiseImage(w, h, 7), { low: 10, high: 20 });
      assert.equal(out.data.length, w * h * 3);
    }
  });

  it('512x512 timing (printed, not asserted)', () => {
    const image = noiseImage(512, 512, 12345);
    canny(image, { low: 100, high: 200 }); // warm-up
    const t0 = performance.now();
    canny(image, { low: 100, high: 200 });
    const ms = performance.now() - t0;
    console.log(`canny 512x512 (noise, L1): ${ms.toFixed(1)} ms`);
  });
});
