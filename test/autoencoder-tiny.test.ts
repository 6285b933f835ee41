/**
 * AutoencoderTiny (TAESD) against diffusers 0.33.1 on test/fixtures/taesd (tiny-taesd, 8 channels
 * per stage): decode, encode (tolerance max(1e-4, 20 × the fp32-vs-fp64 hint)), scale / unscale and
 * the uint8 quantization (exact), forward's round trip, the real TAESD key layout, the config's
 * behaviours, slicing and diffusers' TAESD tiling, and the parameter-free layers against torch's formulas.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { parseAutoencoderTinyConfig, type AutoencoderTinyConfig } from '../src/models/autoencoder-tiny-config.js';
import { readConfigJson } from '../src/models/loading.js';
import { cropNCHW } from '../src/models/vae-tiling.js';
import { ActivationLayer, UpsampleLayer, type TinyActivation, type TinyUpsample } from '../src/nn/autoencoder-tiny-blocks.js';
import { AutoencoderTinyNet } from '../src/nn/autoencoder-tiny-net.js';
import { Generator, randn } from '../src/random/index.js';
import { ModelSession } from '../src/runtime/session.js';
import { numel, Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { allNodes, assertClose, fixture, maxAbsDiff, tempDir } from './helpers.js';

const D = fixture('taesd');
const TINY = join(D, 'tiny-taesd');
const ref = loadSafetensorsSync(join(D, 'tensors.safetensors'));

interface Case {
  name: string;
  kind: string;
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64?: number;
  code?: string;
  result?: unknown;
}
const cases = JSON.parse(readFileSync(join(D, 'cases.json'), 'utf8')) as Case[];
const ofKind = (kind: string): Case[] => cases.filter((c) => c.kind === kind);
const byName = (name: string): Case => {
  const c = cases.find((x) => x.name === name);
  if (!c) throw new Error(`no case ${name}`);
  return c;
};
const f32 = (key: string): Tensor<'float32'> => ref.read(key) as Tensor<'float32'>;
const tol = (c: Case): number => Math.max(1e-4, 20 * (c.max_abs_diff_fp32_vs_fp64 ?? 0));
const quiet = () => {};

/** The fixture's config with some keys replaced (diffusers' `from_config` with overrides). */
function tinyConfig(overrides: Record<string, unknown> = {}): AutoencoderTinyConfig {
  return parseAutoencoderTinyConfig({ ...readConfigJson(TINY), ...overrides }, `${TINY}/config.json`, quiet);
}

let taesd: AutoencoderTiny;
before(async () => {
  taesd = await AutoencoderTiny.fromPretrained(TINY);
});
after(async () => {
  await taesd.release();
});

describe('AutoencoderTiny equals diffusers', () => {
  for (const c of ofKind('taesd_decode')) {
    test(`${c.name}: decode (3·tanh(z/3), DecoderTiny, ·2 − 1, not clamped)`, async () => {
      const { sample } = await taesd.decode(f32(c.inputs['latents']!));
      assertClose(sample, f32(c.outputs['sample']!), tol(c), c.name);
    });
  }

  for (const c of ofKind('taesd_encode')) {
    test(`${c.name}: encode ([−1, 1] → [0, 1], EncoderTiny, raw latents)`, async () => {
      const { latents } = await taesd.encode(f32(c.inputs['image']!));
      assertClose(latents, f32(c.outputs['latents']!), tol(c), c.name);
    });
  }

  test('scale_unscale_latents: scale, unscale and the uint8 round trip, bit for bit', () => {
    const x = f32('scale.x');
    assert.deepEqual(taesd.scaleLatents(x).data, f32('scale.scaled').data);
    assert.deepEqual(taesd.unscaleLatents(f32('scale.scaled')).data, f32('scale.unscaled').data);
    const q = taesd.quantizeLatents(x);
    assert.equal(q.dtype, 'uint8');
    assert.deepEqual(q.data, ref.read('scale.quantized_u8').data);
    assert.deepEqual(taesd.dequantizeLatents(q).data, f32('scale.unscaled_from_u8').data);
  });

  test('forward_roundtrip: encode, latents stored as uint8 and read back, decode', async () => {
    const c = byName('forward_roundtrip');
    const image = f32(c.inputs['image']!);
    const { latents } = await taesd.encode(image);
    assertClose(latents, f32(c.outputs['latents']!), tol(c), 'forward latents');
    assert.deepEqual(taesd.quantizeLatents(f32(c.outputs['latents']!)).data, ref.read(c.outputs['latents_u8']!).data, 'uint8 latents');
    const fromStored = await taesd.decode(taesd.dequantizeLatents(ref.read(c.outputs['latents_u8']!)));
    assertClose(fromStored.sample, f32(c.outputs['sample']!), tol(c), 'decode of the stored bytes');
    const { sample } = await taesd.forward(image);
    assertClose(sample, f32(c.outputs['sample']!), tol(c), 'forward');
  });
});

describe('structure', () => {
  test('the real TAESD config builds exactly diffusers’ keys and shapes (2,445,063 parameters)', () => {
    const config = parseAutoencoderTinyConfig(readConfigJson(join(D, 'configs', 'taesd')), 'taesd', quiet);
    const keys = JSON.parse(readFileSync(join(D, 'configs', 'keys.json'), 'utf8')) as { keys: { diffusers_key: string; shape: number[] }[]; param_count: number };
    const ours = [...new AutoencoderTinyNet(config).parameters()];
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : 1);
    assert.deepEqual(
      ours.map((p) => ({ key: p.key, shape: [...p.shape] })).sort(byKey),
      keys.keys.map((k) => ({ key: k.diffusers_key, shape: k.shape })).sort(byKey),
    );
    assert.equal(ours.reduce((s, p) => s + numel(p.shape), 0), keys.param_count);
  });

  test('encoder and decoder are separate graphs, each reading only its own weights', () => {
    const enc = taesd.encoderOnnx().graph;
    const dec = taesd.decoderOnnx().graph;
    const weightNames = (g: typeof enc) => g.initializers.filter((t) => t.external).map((t) => t.name);
    assert.ok(weightNames(enc).length > 0 && weightNames(enc).every((k) => k.startsWith('encoder.')));
    assert.ok(weightNames(dec).length > 0 && weightNames(dec).every((k) => k.startsWith('decoder.')));
    assert.deepEqual(enc.inputs.map((i) => i.name), ['image']);
    assert.deepEqual(dec.outputs.map((i) => i.name), ['sample']);
    // The soft clamp and the ReLUs are where diffusers puts them; node names carry the module path.
    const nodes = allNodes(dec);
    assert.ok(nodes.some((n) => n.opType === 'Tanh'));
    assert.ok(nodes.some((n) => n.opType === 'Relu' && n.name.startsWith('decoder.layers.1')));
    assert.ok(nodes.some((n) => n.opType === 'Resize' && n.name.startsWith('decoder.layers.5')));
  });

  test('prepare() and release(): sessions reopen on use', async () => {
    const t = await AutoencoderTiny.fromPretrained(TINY);
    await t.prepare('both');
    await t.release();
    const c = byName('decode_1x4x8x8');
    assertClose((await t.decode(f32(c.inputs['latents']!))).sample, f32(c.outputs['sample']!), tol(c), 'decode after release');
    await t.release();
  });
});

describe('config (diffusers’ behaviours)', () => {
  test('defaults are diffusers’ AutoencoderTiny() signature', () => {
    const c = parseAutoencoderTinyConfig({}, 'defaults', quiet);
    assert.equal(c.inChannels, 3);
    assert.equal(c.outChannels, 3);
    assert.deepEqual(c.encoderBlockOutChannels, [64, 64, 64, 64]);
    assert.deepEqual(c.decoderBlockOutChannels, [64, 64, 64, 64]);
    assert.equal(c.actFn, 'relu');
    assert.equal(c.upsampleFn, 'nearest');
    assert.equal(c.latentChannels, 4);
    assert.equal(c.upsamplingScalingFactor, 2);
    assert.deepEqual(c.numEncoderBlocks, [1, 3, 3, 3]);
    assert.deepEqual(c.numDecoderBlocks, [3, 3, 3, 1]);
    assert.equal(c.latentMagnitude, 3);
    assert.equal(c.latentShift, 0.5);
    assert.equal(c.scalingFactor, 1.0);
    assert.equal(c.shiftFactor, 0.0);
    assert.equal(c.forceUpcast, false);
  });

  test('behaviour cases: force_upcast forced false, block_out_channels = the decoder’s, non-uniform widths refused', () => {
    for (const c of ofKind('behaviour')) {
      if (c.name === 'behaviour.force_upcast_is_forced_false') {
        assert.equal(parseAutoencoderTinyConfig({ force_upcast: true }, 'x', quiet).forceUpcast, c.result);
      } else if (c.name === 'behaviour.block_out_channels_registered') {
        const cfg = parseAutoencoderTinyConfig({ decoder_block_out_channels: [8, 8, 8, 8], encoder_block_out_channels: [8, 8, 8, 8] }, 'x', quiet);
        assert.deepEqual(cfg.blockOutChannels, c.result);
      } else if (c.name === 'behaviour.nonuniform_encoder_channels') {
        // diffusers builds it and fails on the first call (RuntimeError); refused at load here.
        assert.throws(() => parseAutoencoderTinyConfig({ encoder_block_out_channels: [8, 16, 16, 16] }, 'x', quiet), /encoder_block_out_channels.*must all be equal/);
      } else if (c.name === 'behaviour.nonuniform_decoder_channels') {
        assert.throws(() => parseAutoencoderTinyConfig({ decoder_block_out_channels: [16, 16, 16, 8] }, 'x', quiet), /decoder_block_out_channels.*must all be equal/);
      } else if (c.name === 'behaviour.spatial_scale_factor_attribute') {
        assert.equal(AutoencoderTiny.fromSource(tinyConfig(), taesd.source).spatialScaleFactor, c.result);
      } else {
        assert.fail(`unhandled behaviour case ${c.name}`);
      }
    }
  });

  test('a config’s own block_out_channels is replaced by the decoder’s, as register_to_config does', () => {
    assert.deepEqual(tinyConfig({ block_out_channels: [1, 2] }).blockOutChannels, [8, 8, 8, 8]);
    assert.deepEqual(tinyConfig({ decoder_block_out_channels: [8, 8, 8], num_decoder_blocks: [3, 3, 1] }).blockOutChannels, [8, 8, 8]);
  });

  test('unknown keys warn; bad values are named ConfigErrors', () => {
    const warnings: string[] = [];
    parseAutoencoderTinyConfig({ ...readConfigJson(TINY), something_new: 1 }, 'x', (m) => warnings.push(m));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /something_new/);
    const bad: Record<string, unknown>[] = [
      { num_encoder_blocks: [1, 3, 3] }, // diffusers: "should have the same length"
      { num_decoder_blocks: [3, 3] },
      { act_fn: 'tanh' },
      { upsample_fn: 'linear' },
      { encoder_block_out_channels: [] },
      { num_decoder_blocks: [3, -1, 3, 1] },
      { latent_channels: 0 },
      { upsampling_scaling_factor: 1.5 },
      { scaling_factor: 0 },
      { latent_magnitude: 0 },
    ];
    for (const o of bad) assert.throws(() => tinyConfig(o), ConfigError, JSON.stringify(o));
  });

  test('loading is strict: a config with other stage counts leaves keys unused or missing', () => {
    // the module tree checks its own inputs too (nn/ takes plain objects)
    assert.throws(() => new AutoencoderTinyNet({ ...tinyConfig(), numDecoderBlocks: [3, 3] }), ConfigError);
    assert.throws(() => AutoencoderTiny.fromSource(tinyConfig({ num_decoder_blocks: [3, 3, 3, 2] }), taesd.source), WeightLoadError);
    assert.throws(() => AutoencoderTiny.fromSource(tinyConfig({ num_encoder_blocks: [1, 3, 3, 2] }), taesd.source), WeightLoadError);
  });

  test('bad inputs are InputErrors', async () => {
    await assert.rejects(taesd.decode(randn([1, 3, 8, 8])), InputError);
    await assert.rejects(taesd.encode(randn([1, 4, 64, 64])), InputError);
    await assert.rejects(taesd.decode(new Tensor('float32', new Float32Array(4 * 8 * 8).fill(Number.NaN), [1, 4, 8, 8])), InputError);
    assert.throws(() => taesd.dequantizeLatents(randn([1, 4, 8, 8])), InputError);
  });
});

describe('slicing and tiling', () => {
  test('sliced decode and encode equal batched ones', async () => {
    const c = byName('decode_2x4x8x12');
    const z = f32(c.inputs['latents']!);
    assertClose((await taesd.decode(z, { sliced: true })).sample, f32(c.outputs['sample']!), tol(c), 'sliced decode');
    const img = randn([2, 3, 32, 40], { generator: new Generator(4) });
    assertClose((await taesd.encode(img, { sliced: true })).latents, (await taesd.encode(img)).latents, 1e-5, 'sliced encode');
  });

  /**
   * diffusers' `_tiled_decode` / `_tiled_encode` written out as they read: every tile run on its own,
   * then written over the output through the product of the row and column ramps (ones for the first
   * row / column of tiles), `m·tile + (1 − m)·out` in float32.
   */
  async function diffusersTinyTiled(
    x: Tensor<'float32'>,
    o: { tileIn: number; step: number; sf: number; outChannels: number; ramp: (k: number) => number; scaleUp: boolean },
    run: (t: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
  ): Promise<Tensor<'float32'>> {
    const [b, , H, W] = x.dims as [number, number, number, number];
    const [oh, ow] = o.scaleUp ? [H * o.sf, W * o.sf] : [Math.floor(H / o.sf), Math.floor(W / o.sf)];
    const out = new Float32Array(b * o.outChannels * oh * ow);
    const place = (v: number) => (o.scaleUp ? v * o.sf : Math.floor(v / o.sf));
    for (let i = 0; i < H; i += o.step) {
      for (let j = 0; j < W; j += o.step) {
        const tile = await run(cropNCHW(x, i, i + o.tileIn, j, j + o.tileIn));
        const [, , h, w] = tile.dims as [number, number, number, number];
        for (let p = 0; p < b * o.outChannels; p++) {
          for (let r = 0; r < h; r++) {
            for (let q = 0; q < w; q++) {
              const mi = i === 0 ? 1 : Math.min(1, Math.max(0, o.ramp(r)));
              const mj = j === 0 ? 1 : Math.min(1, Math.max(0, o.ramp(q)));
              const m = Math.fround(mi * mj);
              const k = (p * oh + place(i) + r) * ow + place(j) + q;
              out[k] = Math.fround(Math.fround(m * tile.data[(p * h + r) * w + q]!) + Math.fround(Math.fround(1 - m) * out[k]!));
            }
          }
        }
      }
    }
    return new Tensor('float32', out, [b, o.outChannels, oh, ow]);
  }

  test('tiled decode within one tile is the plain decode', async () => {
    assert.deepEqual([taesd.tileSampleMinSize, taesd.tileLatentMinSize, taesd.tileOverlapFactor], [512, 64, 0.125]);
    const c = byName('decode_2x4x8x12');
    const z = f32(c.inputs['latents']!);
    assert.deepEqual((await taesd.decode(z, { tiled: true })).sample.data, (await taesd.decode(z)).sample.data);
  });

  test('tiled decode is diffusers’ _tiled_decode (64-latent tiles every 56, a 64 px ramp), batch 2, uneven edges', async () => {
    const z = randn([2, 4, 70, 61], { generator: new Generator(11) });
    const tiled = (await taesd.decode(z, { tiled: true })).sample;
    assert.deepEqual(tiled.dims, [2, 3, 560, 488]);
    const expected = await diffusersTinyTiled(z, { tileIn: 64, step: 56, sf: 8, outChannels: 3, ramp: (k) => Math.fround(k / 63), scaleUp: true }, async (t) => (await taesd.decode(t)).sample);
    assert.equal(maxAbsDiff(tiled, expected), 0);
    // the blend did something: the tiles disagree with the untiled decode near the seams only
    assert.ok(maxAbsDiff(tiled, (await taesd.decode(z)).sample) > 0);
  });

  test('tiled encode is diffusers’ _tiled_encode (512 px tiles every 448, an 8-latent ramp)', async () => {
    const img = randn([1, 3, 600, 520], { generator: new Generator(12) });
    const { latents } = await taesd.encode(img, { tiled: true });
    assert.deepEqual(latents.dims, [1, 4, 75, 65]);
    const expected = await diffusersTinyTiled(img, { tileIn: 512, step: 448, sf: 8, outChannels: 4, ramp: (k) => Math.fround(k / 7), scaleUp: false }, async (t) => (await taesd.encode(t)).latents);
    assert.equal(maxAbsDiff(latents, expected), 0);
  });

  test('tiled encode where diffusers fails (a tile side not a multiple of 8) is an InputError', async () => {
    await assert.rejects(taesd.encode(randn([1, 3, 60, 64]), { tiled: true }), InputError);
    await assert.rejects(taesd.encode(randn([1, 3, 64, 470]), { tiled: true }), InputError); // last tile 22 px
  });
});

describe('parameter-free layers against torch’s formulas', () => {
  async function runLayer(layer: ActivationLayer | UpsampleLayer, x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const op = GraphBuilder.create(null);
    const input = op.input('x', OnnxDataType.FLOAT, x.dims);
    op.output(layer.build(op, input), 'y');
    const session = await ModelSession.create(op.toModel('layer'));
    try {
      return (await session.run({ x })).y as Tensor<'float32'>;
    } finally {
      await session.release();
    }
  }

  const erf = (v: number): number => {
    // Abramowitz–Stegun 7.1.26 is too coarse for 1e-6; use the series / continued fraction split instead.
    const a = Math.abs(v);
    let r: number;
    if (a < 2.5) {
      let term = a;
      let sum = a;
      for (let n = 1; n < 60; n++) {
        term *= (-a * a) / n;
        sum += term / (2 * n + 1);
      }
      r = (2 / Math.sqrt(Math.PI)) * sum;
    } else {
      let f = 0;
      for (let n = 60; n >= 1; n--) f = n / 2 / (a + f);
      r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
    }
    return v < 0 ? -r : r;
  };
  const torchActs: Record<TinyActivation, (v: number) => number> = {
    relu: (v) => Math.max(0, v),
    silu: (v) => v / (1 + Math.exp(-v)),
    swish: (v) => v / (1 + Math.exp(-v)),
    gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
    mish: (v) => v * Math.tanh(Math.log1p(Math.exp(v))),
  };

  for (const [act, f] of Object.entries(torchActs) as [TinyActivation, (v: number) => number][]) {
    test(`activation ${act}`, async () => {
      const x = randn([1, 2, 5, 7], { generator: new Generator(3) });
      for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! * 4;
      const y = await runLayer(new ActivationLayer('a', act), x);
      assertClose(y, new Tensor('float32', Float32Array.from(x.data, f), x.dims), 2e-6, act);
    });
  }

  /** torch's CPU upsampling with a scale factor (align_corners unset): each output pixel from its source pixels. */
  function torchUpsample(x: Tensor<'float32'>, s: number, mode: TinyUpsample): Tensor<'float32'> {
    const [b, c, h, w] = x.dims as [number, number, number, number];
    const [H, W] = [h * s, w * s];
    const out = new Float32Array(b * c * H * W);
    const at = (p: number, y: number, xx: number) => x.data[(p * h + Math.min(Math.max(y, 0), h - 1)) * w + Math.min(Math.max(xx, 0), w - 1)]!;
    const cubic = (t: number): number[] => {
      const A = -0.75;
      const c1 = (d: number) => ((A + 2) * d - (A + 3)) * d * d + 1; // |d| ≤ 1
      const c2 = (d: number) => ((A * d - 5 * A) * d + 8 * A) * d - 4 * A; // 1 < |d| < 2
      return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)];
    };
    for (let p = 0; p < b * c; p++) {
      for (let Y = 0; Y < H; Y++) {
        for (let X = 0; X < W; X++) {
          let v: number;
          if (mode === 'nearest') v = at(p, Math.floor(Y / s), Math.floor(X / s));
          else if (mode === 'nearest-exact') v = at(p, Math.floor((Y + 0.5) / s), Math.floor((X + 0.5) / s));
          else if (mode === 'bilinear') {
            const sy = Math.max(0, (Y + 0.5) / s - 0.5);
            const sx = Math.max(0, (X + 0.5) / s - 0.5);
            const [y0, x0] = [Math.floor(sy), Math.floor(sx)];
            const [ly, lx] = [sy - y0, sx - x0];
            v = (1 - ly) * ((1 - lx) * at(p, y0, x0) + lx * at(p, y0, x0 + 1)) + ly * ((1 - lx) * at(p, y0 + 1, x0) + lx * at(p, y0 + 1, x0 + 1));
          } else {
            const sy = (Y + 0.5) / s - 0.5;
            const sx = (X + 0.5) / s - 0.5;
            const [y0, x0] = [Math.floor(sy), Math.floor(sx)];
            const [wy, wx] = [cubic(sy - y0), cubic(sx - x0)];
            v = 0;
            for (let a = 0; a < 4; a++) for (let k = 0; k < 4; k++) v += wy[a]! * wx[k]! * at(p, y0 - 1 + a, x0 - 1 + k);
          }
          out[(p * H + Y) * W + X] = v;
        }
      }
    }
    return new Tensor('float32', out, [b, c, H, W]);
  }

  for (const mode of ['nearest', 'nearest-exact', 'bilinear', 'bicubic'] as const) {
    for (const s of [2, 3]) {
      test(`upsample ${mode} ×${s}`, async () => {
        const x = randn([1, 2, 5, 6], { generator: new Generator(8) });
        const y = await runLayer(new UpsampleLayer('u', s, mode), x);
        // ×3 puts sources at thirds: onnxruntime's float32 weights are a few ulps off the exact ones
        assertClose(y, torchUpsample(x, s, mode), 1e-5, `${mode} ×${s}`);
      });
    }
  }
});

test('other activations and upsampling modes run end to end (random weights of a small config)', async () => {
  const dir = tempDir('cnxs-taesd-variants-');
  const config = { ...readConfigJson(TINY), act_fn: 'mish', upsample_fn: 'bicubic', upsampling_scaling_factor: 3, num_decoder_blocks: [1, 1, 1], decoder_block_out_channels: [8, 8, 8] };
  const params = [...new AutoencoderTinyNet(parseAutoencoderTinyConfig(config, 'variant', quiet)).parameters()];
  writeSafetensors(
    join(dir, 'diffusion_pytorch_model.safetensors'),
    params.map((p, i) => ({
      name: p.key,
      dtype: 'F32' as const,
      shape: p.shape,
      bytes: () => new Uint8Array(Float32Array.from(randn([numel(p.shape)], { generator: new Generator(i + 1) }).data, (v) => v * 0.1).buffer),
    })),
  );
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const t = await AutoencoderTiny.fromPretrained(dir);
  const { sample } = await t.decode(randn([1, 4, 4, 5], { generator: new Generator(2) }));
  assert.deepEqual(sample.dims, [1, 3, 36, 45]); // 3² upscaling over two upsampling stages
  assert.ok(sample.data.every(Number.isFinite));
  const ops = new Set(allNodes(t.decoderOnnx().graph).map((n) => n.opType));
  assert.ok(ops.has('Softplus') && ops.has('Relu'), 'Mish in the blocks, a ReLU as each block’s fuse');
  // tiling needs the 8× decoder diffusers' tiling assumes
  await assert.rejects(t.decode(randn([1, 4, 4, 5]), { tiled: true }), InputError);
  await t.release();
});
