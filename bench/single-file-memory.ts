/**
 * What loading a single file costs in memory, measured in fresh processes:
 *
 *   node --import tsx bench/single-file-memory.ts [out-dir]
 *
 * 1. writes (once) a random-weight fp16 single file in the real SD 2.1 layout (every key and shape of
 *    test/fixtures/single-file/real-layouts/sd21-base.json, extras included: 1.3 G parameters, 2.6 GB);
 * 2. `load`: RSS and JS heap added by UNet/VAE/text encoder `fromSingleFile` (headers and key maps
 *    only), for that file and for the tiny SD 1.5 fixture;
 * 3. `session`: the SD 2.1 text encoder (OpenCLIP ViT-H, its fused in_proj split into q/k/v rows)
 *    from the single file, its onnxruntime session created and run once, against the same weights
 *    from a diffusers folder (model.safetensors, q/k/v stored apart) — what the slices cost.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { CLIPTextModel } from '../src/models/clip-text-model.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { Tensor } from '../src/tensor.js';
import { readWeightBytes } from '../src/weights/view.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { tensorStream } from './xorshift.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..');
const LAYOUT = join(REPO, 'test', 'fixtures', 'single-file', 'real-layouts', 'sd21-base.json');
const TINY = join(REPO, 'test', 'fixtures', 'single-file', 'checkpoints', 'tiny-sd15.fp16.safetensors');
const TINY_CONFIG = join(REPO, 'test', 'fixtures', 'tiny-sd-cnxs');
const BUNDLED_SD21_BASE = 'stabilityai/stable-diffusion-2-1-base';

/** Random fp16 bits with magnitudes in [2^-5, 2^0): finite, distinct per tensor, cheap to make. */
function randomHalf(n: number, seed: number): Uint8Array {
  const out = new Uint16Array(n);
  const next = tensorStream(seed);
  for (let i = 0; i < n; i++) {
    const x = next();
    out[i] = (x & 0x8000) | ((10 + ((x >>> 16) % 5)) << 10) | (x & 0x3ff);
  }
  return new Uint8Array(out.buffer);
}

function ensureSingleFile(path: string): void {
  if (existsSync(path)) return;
  const layout = JSON.parse(readFileSync(LAYOUT, 'utf8')) as { columns: string[]; keys: [string, number[]][] };
  console.error(`writing a random SD 2.1-layout single file (${layout.keys.length} keys) to ${path} …`);
  mkdirSync(dirname(path), { recursive: true });
  writeSafetensors(
    path,
    layout.keys.map(([name, shape], i) => ({ name, dtype: 'F16' as const, shape, bytes: () => randomHalf(shape.reduce((a, d) => a * d, 1), i + 1) })),
  );
}

/** The same text encoder weights as a diffusers folder (what the session comparison loads). */
async function ensureTextEncoderFolder(file: string, dir: string): Promise<void> {
  if (existsSync(join(dir, 'model.safetensors'))) return;
  const te = await CLIPTextModel.fromSingleFile(file, { config: BUNDLED_SD21_BASE });
  mkdirSync(dir, { recursive: true });
  writeSafetensors(
    join(dir, 'model.safetensors'),
    [...te.weights.entries()].map(([name, ref]) => ({ name, dtype: ref.info.dtype, shape: ref.info.shape, bytes: () => readWeightBytes(ref) })),
  );
  writeFileSync(join(dir, 'config.json'), readFileSync(join(REPO, 'src', 'models', 'single-file', 'configs', 'sd21-base', 'text_encoder', 'config.json')));
}

const MB = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MB`;

interface Sample {
  rss: number;
  heap: number;
  external: number;
}
function sample(): Sample {
  globalThis.gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

/** Child: one measurement, printed as JSON. */
async function child(mode: string, file: string, extra: string): Promise<void> {
  const before = sample();
  const t0 = performance.now();
  const report: Record<string, unknown> = { mode, file };
  if (mode === 'load') {
    const config = extra || undefined;
    const o = config ? { config } : {};
    const models = [await UNet2DConditionModel.fromSingleFile(file, o), await AutoencoderKL.fromSingleFile(file, o), await CLIPTextModel.fromSingleFile(file, o)];
    report['weights'] = models.reduce((a, m) => a + m.weights.size, 0);
    report['storedBytes'] = models.reduce((a, m) => a + [...m.weights.entries()].reduce((b, [, r]) => b + r.info.byteLength, 0), 0);
  } else {
    const te = mode === 'session-file' ? await CLIPTextModel.fromSingleFile(file, { config: BUNDLED_SD21_BASE }) : await CLIPTextModel.fromPretrained(extra);
    const ids = new Tensor('int64', BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i === 0 ? 49406 : i < 8 ? 320 + i : 49407)), [1, 77]);
    await te.prepare();
    report['sessionMs'] = Math.round(performance.now() - t0);
    const out = await te.forward(ids);
    report['checksum'] = (out.lastHiddenState.data as Float32Array).slice(0, 4).join(',');
  }
  const after = sample();
  report['ms'] = Math.round(performance.now() - t0);
  report['rssAdded'] = after.rss - before.rss;
  report['heapAdded'] = after.heap - before.heap;
  report['externalAdded'] = after.external - before.external;
  report['rss'] = after.rss;
  console.log(JSON.stringify(report));
}

function run(mode: string, file: string, extra = ''): Record<string, number | string> {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, file, extra], { encoding: 'utf8', cwd: REPO });
  if (r.status !== 0) throw new Error(`${mode} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number | string>; // bounds: a child prints one line
}

async function main(): Promise<void> {
  const out = process.argv[2] ?? join(HERE, 'out', 'single-file');
  const file = join(out, 'sd21-random.fp16.safetensors');
  ensureSingleFile(file);
  await ensureTextEncoderFolder(file, join(out, 'text_encoder'));
  const rows: Record<string, number | string>[] = [
    { what: 'tiny SD 1.5 file: unet + vae + text_encoder fromSingleFile', ...run('load', TINY, TINY_CONFIG) },
    { what: 'SD 2.1 file (2.6 GB): unet + vae + text_encoder fromSingleFile', ...run('load', file, BUNDLED_SD21_BASE) },
    { what: 'SD 2.1 text encoder session, from the single file (q/k/v row slices)', ...run('session-file', file) },
    { what: 'SD 2.1 text encoder session, from a diffusers folder (same values)', ...run('session-folder', file, join(out, 'text_encoder')) },
  ];
  for (const r of rows) {
    const extra = 'sessionMs' in r ? `, session ${r['sessionMs']} ms, output ${r['checksum']}` : `, ${r['weights']} weights over ${MB(Number(r['storedBytes']))} of the file`;
    console.log(`${r['what']}: RSS +${MB(Number(r['rssAdded']))} (total ${MB(Number(r['rss']))}), JS heap +${MB(Number(r['heapAdded']))}, buffers +${MB(Number(r['externalAdded']))}, ${r['ms']} ms${extra}`);
  }
}

if (process.argv[2] === '--child') await child(process.argv[3]!, process.argv[4]!, process.argv[5] ?? ''); // bounds: main passes all three
else await main();
