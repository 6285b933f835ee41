/**
 * Depth-estimation time (issue 17) for `cnxs depth`'s default model, Depth-Anything-V2-Small, with random
 * weights of its real config (every key and shape of its key table, 24.8M parameters, float32 as published),
 * written once into bench/out/; next to Canny's time on the same image. The image is a synthetic 512 × 512
 * photo stand-in (smooth gradients, shapes and noise), which the processor resizes to 518 × 518 (37 × 37
 * patches of 14).
 *
 * Figures: model load (config, processor, safetensors header, module tree), the first run (session open +
 * one estimation), then the median and fastest of `--runs` estimations, split into preprocessing (resize,
 * normalise), the model and postprocessing (bicubic back to 512 × 512, 8-bit); Canny's median and fastest.
 * Prints figures; not a test.
 *
 *   node --import tsx bench/depth.ts [--size 512] [--runs 5] [--threads N] [--out bench/out/depth-anything-v2-small-random]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { canny } from '../src/image/canny.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { DepthEstimationPipeline, depthToImage, interpolateDepth } from '../src/pipelines/depth-estimation.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { uniformFloat32Bytes, xorshift32 } from './xorshift.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REAL = join(HERE, '..', 'test', 'fixtures', 'depth', 'configs', 'depth-anything--Depth-Anything-V2-Small-hf');
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string' },
    out: { type: 'string', default: join(HERE, 'out', 'depth-anything-v2-small-random') },
  },
});

/** The real config and processor with random weights of the real key table, written once. */
function ensureRandomModel(dir: string): void {
  if (existsSync(join(dir, 'model.safetensors'))) return;
  mkdirSync(dir, { recursive: true });
  const table = JSON.parse(readFileSync(join(REAL, 'keys.json'), 'utf8')) as { param_count: number; keys: { key: string; shape: number[] }[] };
  console.error(`writing random Depth-Anything-V2-Small weights (${table.keys.length} keys, ${table.param_count} parameters) to ${dir} …`);
  writeSafetensors(
    join(dir, 'model.safetensors'),
    table.keys.map(({ key, shape }, i) => {
      // norm scales near 1 and layer scales near their 1e-5 … 1 range keep activations finite through 12 layers
      const isScale = /(norm\d?|layernorm)\.weight$/.test(key);
      const isLayerScale = key.endsWith('lambda1');
      return {
        name: key,
        dtype: 'F32' as const,
        shape,
        bytes: () =>
          uniformFloat32Bytes(shape.reduce((a, d) => a * d, 1), i + 1, {
            scale: isScale ? 0.1 : isLayerScale ? 0.05 : 0.02,
            offset: isScale ? 1 : isLayerScale ? 0.1 : 0,
          }),
      };
    }),
  );
  copyFileSync(join(REAL, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(REAL, 'preprocessor_config.json'), join(dir, 'preprocessor_config.json'));
}

/** A deterministic photo stand-in: gradients, a few discs and some noise. Shapes: → [size, size, 3]. */
function testImage(size: number): RGBImage {
  const data = new Uint8Array(size * size * 3);
  const next = xorshift32(12345);
  for (let y = 0; y < size; y++) {
    for (let c = 0; c < size; c++) {
      const x = next();
      const disc = (cx: number, cy: number, r: number) => ((c - cx) ** 2 + (y - cy) ** 2 < r * r ? 80 : 0);
      const base = (y / size) * 120 + disc(size * 0.3, size * 0.4, size * 0.15) + disc(size * 0.7, size * 0.6, size * 0.2);
      const noise = (x % 21) - 10;
      const p = (y * size + c) * 3;
      data[p] = Math.max(0, Math.min(255, base + (c / size) * 60 + noise));
      data[p + 1] = Math.max(0, Math.min(255, base + 20 + noise));
      data[p + 2] = Math.max(0, Math.min(255, 200 - base + noise));
    }
  }
  return new RGBImage(size, size, data);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const size = Number(values.size);
  const runs = Math.max(1, Number(values.runs));
  const dir = values.out;
  ensureRandomModel(dir);
  const image = testImage(size);
  const threads = values.threads ? Number(values.threads) : undefined;

  let t = performance.now();
  const pipe = await DepthEstimationPipeline.fromPretrained(dir, { ...(threads ? { runtime: { intraOpNumThreads: threads } } : {}) });
  const loadMs = performance.now() - t;

  t = performance.now();
  const first = await pipe.run(image);
  const firstMs = performance.now() - t;

  const total: number[] = [];
  const pre: number[] = [];
  const model: number[] = [];
  const post: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const pixels = pipe.processor.preprocess(image);
    const t1 = performance.now();
    const predicted = await pipe.model.forward(pixels);
    const t2 = performance.now();
    depthToImage(interpolateDepth(predicted, { width: size, height: size }));
    const t3 = performance.now();
    pre.push(t1 - t0);
    model.push(t2 - t1);
    post.push(t3 - t2);
    total.push(t3 - t0);
  }
  await pipe.release();

  const cannyMs: number[] = [];
  for (let i = 0; i < Math.max(runs, 5); i++) {
    const t0 = performance.now();
    canny(image, { low: 100, high: 200 });
    cannyMs.push(performance.now() - t0);
  }

  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const [, h, w] = first.predictedDepth.dims;
  console.log(`depth estimation, Depth-Anything-V2-Small (random weights of the real config), ${size}×${size} image → ${w}×${h} model input/output`);
  console.log(`  load (config, processor, weights header, module tree)  ${ms(loadMs)}`);
  console.log(`  first run (session open + one estimation)             ${ms(firstMs)}`);
  console.log(`  estimation, median of ${runs} (fastest)                   ${ms(median(total))} (${ms(Math.min(...total))})`);
  console.log(`    preprocess ${ms(median(pre))}, model ${ms(median(model))}, postprocess ${ms(median(post))}`);
  console.log(`canny on the same image, median (fastest)               ${ms(median(cannyMs))} (${ms(Math.min(...cannyMs))})`);
  console.log(`  depth / canny: ${(median(total) / median(cannyMs)).toFixed(0)}×`);
}

await main();
