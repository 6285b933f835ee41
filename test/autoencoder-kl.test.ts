/**
 * AutoencoderKL against diffusers 0.33.1 on the tiny SD VAE (test/fixtures/tiny-sd-cnxs/vae): the
 * `vae_decode` / `vae_encode` reference cases (tolerance max(1e-4, 20 × the fp32-vs-fp64 hint)),
 * then tiling, slicing, the fp16 variant, config defaults and loading errors.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { parseAutoencoderKLConfig, type AutoencoderKLConfig } from '../src/models/autoencoder-kl-config.js';
import { openWeights, readConfigJson } from '../src/models/loading.js';
import { blendH, blendV, concatNCHW, cropNCHW, decodeTilePlan, encodeTilePlan } from '../src/models/vae-tiling.js';
import { Generator, randn } from '../src/random/index.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture, maxAbsDiff } from './helpers.js';

const D = fixture('tiny-sd-cnxs');
const VAE = `${D}/vae`;
const ref = loadSafetensorsSync(`${D}/reference/tensors.safetensors`);

interface Case {
  name: string;
  kind: string;
  inputs: Record<string, string | number>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: number | Record<string, number>;
}
const cases: Case[] = JSON.parse(readFileSync(`${D}/reference/cases.json`, 'utf8'));
const byName = (name: string): Case => cases.find((c) => c.name === name)!;
/** The case's hint may be one number or one per output. */
const tolerance = (c: Case, output: string): number => {
  const hint = typeof c.max_abs_diff_fp32_vs_fp64 === 'number' ? c.max_abs_diff_fp32_vs_fp64 : c.max_abs_diff_fp32_vs_fp64[output]!;
  return Math.max(1e-4, 20 * hint);
};
const f32 = (key: string): Tensor<'float32'> => ref.read(key) as Tensor<'float32'>;

/** The fixture's config with some keys replaced (diffusers would do this with `from_config`). */
function tinyConfig(overrides: Record<string, unknown> = {}): AutoencoderKLConfig {
  return parseAutoencoderKLConfig({ ...readConfigJson(VAE), ...overrides }, `${VAE}/config.json`, () => {});
}

/** Two batch items: the reference latents and a second, different set. */
function stack(a: Tensor<'float32'>, b: Tensor<'float32'>): Tensor<'float32'> {
  const out = new Float32Array(a.data.length + b.data.length);
  out.set(a.data);
  out.set(b.data, a.data.length);
  return new Tensor('float32', out, [2, ...a.dims.slice(1)]);
}

function meanAbsDiff(a: Tensor<'float32'>, b: Tensor<'float32'>): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i]! - b.data[i]!);
  return s / a.data.length;
}

function rms(a: Tensor<'float32'>): number {
  let s = 0;
  for (const v of a.data) s += v * v;
  return Math.sqrt(s / a.data.length);
}

let vae: AutoencoderKL;

before(async () => {
  vae = await AutoencoderKL.fromPretrained(VAE);
});
after(async () => {
  await vae.release();
});

describe('AutoencoderKL equals diffusers', () => {
  test('vae_decode: raw decode (post_quant_conv → decoder, no 1/scaling_factor)', async () => {
    const c = byName('vae_decode');
    const { sample } = await vae.decode(f32(c.inputs['latents'] as string));
    assert.equal(sample.dtype, 'float32');
    assertClose(sample, f32(c.outputs['sample']!), tolerance(c, 'sample'), c.name);
  });

  test('vae_encode: mean, std, logvar and the seeded sample', async () => {
    const c = byName('vae_encode');
    const { latentDist } = await vae.encode(f32(c.inputs['image'] as string));
    for (const k of ['mean', 'std', 'logvar'] as const) {
      assertClose(latentDist[k], f32(c.outputs[k]!), tolerance(c, k), `${c.name}.${k}`);
    }
    assert.equal(latentDist.mode(), latentDist.mean);
    const seed = c.inputs['vae_sample_seed'] as number;
    const sample = latentDist.sample(new Generator(seed));
    assertClose(sample, f32(c.outputs['sample_seeded']!), tolerance(c, 'sample_seeded'), `${c.name}.sample_seeded`);
    // A per-item generator list draws the same noise for a batch of one.
    assert.deepEqual(latentDist.sample([new Generator(seed)]).data, sample.data);
  });

  test('the plain (standard-op) attention gives the same results', async () => {
    const plain = await AutoencoderKL.fromPretrained(VAE, { trace: { attention: 'plain' } });
    const d = byName('vae_decode');
    const e = byName('vae_encode');
    assertClose((await plain.decode(f32('inputs.vae_latents'))).sample, f32(d.outputs['sample']!), tolerance(d, 'sample'), 'plain decode');
    const { latentDist } = await plain.encode(f32('inputs.vae_image'));
    assertClose(latentDist.mean, f32(e.outputs['mean']!), tolerance(e, 'mean'), 'plain encode mean');
    await plain.release();
  });
});

describe('sessions', () => {
  test('encoder and decoder are separate graphs, each reading only its own weights', () => {
    const enc = vae.encoderOnnx().graph;
    const dec = vae.decoderOnnx().graph;
    const weightNames = (g: typeof enc) => g.initializers.filter((t) => t.external).map((t) => t.name);
    assert.ok(weightNames(enc).every((k) => k.startsWith('encoder.') || k.startsWith('quant_conv.')));
    assert.ok(weightNames(dec).every((k) => k.startsWith('decoder.') || k.startsWith('post_quant_conv.')));
    assert.deepEqual(enc.inputs.map((i) => i.name), ['image']);
    assert.deepEqual(dec.inputs.map((i) => i.name), ['latents']);
  });

  test('prepare() opens the decoder session up front; release() frees both and they reopen on use', async () => {
    const v = await AutoencoderKL.fromPretrained(VAE);
    await v.prepare();
    await v.prepare('both');
    await v.release();
    const { sample } = await v.decode(f32('inputs.vae_latents'));
    assertClose(sample, f32('vae_decode.sample'), tolerance(byName('vae_decode'), 'sample'), 'decode after release');
    await v.release();
  });
});

describe('slicing (diffusers enable_slicing)', () => {
  const z2 = () => {
    const z = f32('inputs.vae_latents');
    return stack(z, new Tensor('float32', z.data.map((v) => 0.5 - v), z.dims));
  };

  test('sliced decode equals unsliced, and each item equals its own decode', async () => {
    const z = z2();
    const whole = (await vae.decode(z)).sample;
    const sliced = (await vae.decode(z, { sliced: true })).sample;
    assert.deepEqual(sliced.dims, [2, 3, 64, 64]);
    assertClose(sliced, whole, 1e-5, 'sliced vs batched decode');
    const first = (await vae.decode(f32('inputs.vae_latents'))).sample;
    assert.deepEqual(sliced.data.subarray(0, first.data.length), first.data, 'sliced item 0 is the single decode');
  });

  test('sliced encode equals unsliced', async () => {
    const img = f32('inputs.vae_image');
    const x = stack(img, new Tensor('float32', img.data.map((v) => -v), img.dims));
    const whole = (await vae.encode(x)).latentDist;
    const sliced = (await vae.encode(x, { sliced: true })).latentDist;
    assertClose(sliced.mean, whole.mean, 1e-5, 'sliced vs batched mean');
    assertClose(sliced.logvar, whole.logvar, 1e-5, 'sliced vs batched logvar');
  });
});

/**
 * diffusers' tiled_decode / _tiled_encode written out literally: every tile is run first and kept,
 * then the tiles are blended in place row by row and cropped. The implementation under test runs
 * and blends one row at a time; the two must agree exactly.
 */
async function diffusersTiled(
  x: Tensor<'float32'>,
  plan: { tile: number; stride: number; blendExtent: number; rowLimit: number },
  run: (t: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  const rows: Tensor<'float32'>[][] = [];
  for (let i = 0; i < x.dims[2]!; i += plan.stride) {
    const row: Tensor<'float32'>[] = [];
    for (let j = 0; j < x.dims[3]!; j += plan.stride) {
      const out = await run(cropNCHW(x, i, i + plan.tile, j, j + plan.tile));
      row.push(new Tensor('float32', Float32Array.from(out.data), out.dims));
    }
    rows.push(row);
  }
  const strips = rows.map((row, i) =>
    concatNCHW(
      row.map((tile, j) => {
        if (i > 0) blendV(rows[i - 1]![j]!, tile, plan.blendExtent);
        if (j > 0) blendH(row[j - 1]!, tile, plan.blendExtent);
        return cropNCHW(tile, 0, plan.rowLimit, 0, plan.rowLimit);
      }),
      3,
    ),
  );
  return concatNCHW(strips, 2);
}

describe('tiling (diffusers enable_tiling)', () => {
  let small: AutoencoderKL;
  let sample128: AutoencoderKL;
  before(async () => {
    const source = await openWeights(VAE, 'diffusion_pytorch_model');
    small = AutoencoderKL.fromSource(tinyConfig({ sample_size: 64 }), source);
    sample128 = AutoencoderKL.fromSource(tinyConfig({ sample_size: 128 }), source);
  });
  after(async () => {
    await Promise.all([small.release(), sample128.release()]);
  });

  test('tile sizes follow diffusers: sample_size and sample_size / 2^(levels-1)', () => {
    assert.equal(small.tileSampleMinSize, 64);
    assert.equal(small.tileLatentMinSize, 8);
    assert.equal(small.tileOverlapFactor, 0.25);
    assert.deepEqual(decodeTilePlan({ sample: 64, latent: 8 }), { tile: 8, stride: 6, blendExtent: 16, rowLimit: 48 });
    assert.deepEqual(encodeTilePlan({ sample: 64, latent: 8 }), { tile: 64, stride: 48, blendExtent: 2, rowLimit: 6 });
    assert.equal(AutoencoderKL.fromSource(tinyConfig({ sample_size: [96, 80] }), vae.source).tileLatentMinSize, 12);
  });

  test('input no larger than one tile: tiled decode is the plain decode', async () => {
    const z = f32('inputs.vae_latents'); // 8×8 = tile_latent_min_size
    assert.deepEqual((await small.decode(z, { tiled: true })).sample.data, (await small.decode(z)).sample.data);
  });

  test('tiled decode is diffusers’ tiled_decode exactly (odd sizes, edge tiles, batch 2)', async () => {
    const z = randn([2, 4, 25, 21], { generator: new Generator(5) });
    const tiled = (await small.decode(z, { tiled: true })).sample;
    assert.deepEqual(tiled.dims, [2, 3, 200, 168]);
    const expected = await diffusersTiled(z, decodeTilePlan({ sample: 64, latent: 8 }), async (t) => (await small.decode(t)).sample);
    assert.equal(maxAbsDiff(tiled, expected), 0);
  });

  test('tiled encode is diffusers’ _tiled_encode exactly, then the same posterior', async () => {
    const img = randn([1, 3, 160, 176], { generator: new Generator(6) });
    const { latentDist } = await small.encode(img, { tiled: true });
    assert.deepEqual(latentDist.mean.dims, [1, 4, 20, 22]);
    const moments = await diffusersTiled(img, encodeTilePlan({ sample: 64, latent: 8 }), async (t) => (await small.encode(t)).latentDist.moments);
    assert.equal(maxAbsDiff(latentDist.moments, moments), 0);
  });

  test('an edge tile too small for the encoder is a named InputError', async () => {
    const img = randn([1, 3, 64, 198], { generator: new Generator(7) }); // last tile column is 6 px wide: 6 → 3 → 1 → nothing
    await assert.rejects(small.encode(img, { tiled: true }), InputError);
    await assert.rejects(small.encode(randn([1, 3, 4, 4])), InputError);
  });

  // The tiny VAE's random weights and per-tile GroupNorm statistics / attention make tiles disagree
  // far more than a trained VAE's would; the bound documents the measured gap (≈0.08 mean, 11% of
  // the RMS, on this 2×2-tile case) rather than claiming near-equality.
  test('tiled decode of 1×4×24×24 (2×2 tiles of 16) stays near the untiled decode', async () => {
    const z = randn([1, 4, 24, 24], { generator: new Generator(3) });
    const full = (await sample128.decode(z)).sample;
    const tiled = (await sample128.decode(z, { tiled: true })).sample;
    assert.deepEqual(tiled.dims, full.dims);
    const gap = meanAbsDiff(tiled, full);
    assert.ok(gap > 0, 'tiling took effect');
    assert.ok(gap < 0.15 * rms(full), `mean |tiled − untiled| ${gap} vs RMS ${rms(full)}`);
    assert.ok(maxAbsDiff(tiled, full) < 1.5);
  });

  test('tiled and sliced together: each batch item tiled on its own', async () => {
    const z = randn([2, 4, 12, 12], { generator: new Generator(9) });
    const both = (await small.decode(z, { tiled: true, sliced: true })).sample;
    assertClose(both, (await small.decode(z, { tiled: true })).sample, 1e-5, 'tiled+sliced vs tiled');
  });
});

test('fp16 variant: fp16 stays on disk, is cast in-graph, and stays near fp32', async () => {
  const v16 = await AutoencoderKL.fromPretrained(VAE, { variant: 'fp16' });
  const init = v16.decoderOnnx().graph.initializers.find((t) => t.name === 'decoder.conv_in.weight')!;
  assert.equal(init.dataType, OnnxDataType.FLOAT16);
  assert.ok(init.external?.location.endsWith('diffusion_pytorch_model.fp16.safetensors'));
  const { sample } = await v16.decode(f32('inputs.vae_latents'));
  assert.equal(sample.dtype, 'float32');
  // fp16 weight rounding (2^-11 relative) through ~30 layers; measured 4.7e-3 on decode, 2.2e-3 on the encoder mean.
  assertClose(sample, f32('vae_decode.sample'), 2e-2, 'fp16 decode vs fp32 reference');
  const { latentDist } = await v16.encode(f32('inputs.vae_image'));
  assertClose(latentDist.mean, f32('vae_encode.mean'), 2e-2, 'fp16 encode mean vs fp32 reference');
  await v16.release();
});

describe('config and loading', () => {
  test('diffusers’ defaults, camelCased', () => {
    const c = parseAutoencoderKLConfig({}, 'defaults', () => {});
    assert.equal(c.inChannels, 3);
    assert.equal(c.outChannels, 3);
    assert.deepEqual(c.downBlockTypes, ['DownEncoderBlock2D']);
    assert.deepEqual(c.upBlockTypes, ['UpDecoderBlock2D']);
    assert.deepEqual(c.blockOutChannels, [64]);
    assert.equal(c.layersPerBlock, 1);
    assert.equal(c.actFn, 'silu');
    assert.equal(c.latentChannels, 4);
    assert.equal(c.normNumGroups, 32);
    assert.equal(c.sampleSize, 32);
    assert.equal(c.scalingFactor, 0.18215);
    assert.equal(c.shiftFactor, null);
    assert.equal(c.latentsMean, null);
    assert.equal(c.latentsStd, null);
    assert.equal(c.forceUpcast, true);
    assert.equal(c.useQuantConv, true);
    assert.equal(c.usePostQuantConv, true);
    assert.equal(c.midBlockAddAttention, true);
  });

  test('the fixture config', () => {
    assert.deepEqual(vae.config.blockOutChannels, [8, 8, 16, 16]);
    assert.equal(vae.config.normNumGroups, 4);
    assert.equal(vae.config.scalingFactor, 0.18215);
    assert.equal(vae.config.shiftFactor, null);
    assert.equal(vae.config.forceUpcast, true);
  });

  test('unknown keys warn; unsupported block types are a ConfigError', () => {
    const warnings: string[] = [];
    parseAutoencoderKLConfig({ ...readConfigJson(VAE), something_new: 1 }, 'x', (m) => warnings.push(m));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /something_new/);
    assert.throws(() => tinyConfig({ up_block_types: ['AttnUpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'] }), ConfigError);
    assert.throws(() => tinyConfig({ block_out_channels: [8, 16] }), ConfigError);
    assert.throws(() => tinyConfig({ act_fn: 'gelu' }), ConfigError);
  });

  test('a folder without config.json is a ConfigError; a missing folder too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vae-no-config-'));
    try {
      copyFileSync(`${VAE}/diffusion_pytorch_model.safetensors`, join(dir, 'diffusion_pytorch_model.safetensors'));
      await assert.rejects(AutoencoderKL.fromPretrained(dir), (e: unknown) => e instanceof ConfigError && /config\.json/.test(e.message));
      await assert.rejects(AutoencoderKL.fromPretrained(dir, { subfolder: 'vae' }), ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('loading is strict: a config without mid-block attention leaves checkpoint keys unused', () => {
    assert.throws(
      () => AutoencoderKL.fromSource(tinyConfig({ mid_block_add_attention: false }), vae.source),
      (e: unknown) => e instanceof WeightLoadError && /unused keys.*mid_block\.attentions\.0/s.test(e.message),
    );
  });

  test('a missing variant is a WeightLoadError; bad inputs are InputErrors', async () => {
    await assert.rejects(AutoencoderKL.fromPretrained(VAE, { variant: 'bf16' }), WeightLoadError);
    await assert.rejects(vae.decode(randn([1, 3, 8, 8])), InputError);
    await assert.rejects(vae.encode(randn([1, 4, 64, 64])), InputError);
    const nan = new Tensor('float32', new Float32Array(4 * 8 * 8).fill(Number.NaN), [1, 4, 8, 8]);
    await assert.rejects(vae.decode(nan), InputError);
  });
});
