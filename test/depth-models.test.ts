/**
 * The depth models against transformers 4.44 (test/fixtures/depth): `predicted_depth` of the tiny
 * DPT-hybrid and Depth Anything V2 models from each reference case's `pixel_values` (atol 1e-4); the
 * REAL configs of Intel/dpt-hybrid-midas, Intel/dpt-large and Depth-Anything-V2-Small parsed, their
 * module trees key for key and shape for shape against `keys.json`, and traced graphs whose output
 * shape is right (structural, no weights); loading by model_type; bad folders, configs and inputs.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { DepthAnythingForDepthEstimation } from '../src/models/depth-anything.js';
import { parseDepthAnythingConfig } from '../src/models/depth-anything-config.js';
import { loadDepthEstimationModel, type DepthEstimationModel } from '../src/models/depth-estimation.js';
import { DPTForDepthEstimation } from '../src/models/dpt.js';
import { parseDPTConfig } from '../src/models/dpt-config.js';
import { readConfigJson } from '../src/models/loading.js';
import { DepthAnythingNet } from '../src/nn/depth-anything-net.js';
import { bilinearTo } from '../src/nn/dpt-neck.js';
import { DPTForDepthEstimationNet } from '../src/nn/dpt-net.js';
import { ModelSession } from '../src/runtime/session.js';
import { numel, Tensor } from '../src/tensor.js';
import { WeightSource, type ParameterSpec, type WeightRef } from '../src/weights/source.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { depthReference, noWarn } from './depth-cases.js';
import { assertClose, fixture, tempDir } from './helpers.js';

const D = fixture('depth');
const { cases, read } = depthReference('depth');
const tmp = tempDir('cnxs-depth-');

/** Deterministic small values for every parameter of `params`, written as `dir/model.safetensors` next to `config`. */
function writeModel(dir: string, config: Record<string, unknown>, params: Iterable<ParameterSpec>): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  let seed = 1;
  const tensors = [...params].map((p) => ({
    name: p.key,
    dtype: 'F32' as const,
    shape: p.shape,
    bytes: () => {
      const v = Float32Array.from({ length: numel(p.shape) }, () => 0.15 * Math.sin(seed++ * 0.7));
      return new Uint8Array(v.buffer);
    },
  }));
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}


describe('predicted_depth equals transformers 4.44 (atol 1e-4)', () => {
  const models = new Map<string, Promise<DepthEstimationModel>>();
  after(async () => Promise.all([...models.values()].map(async (m) => (await m).release())));
  for (const c of cases) {
    test(c.name, async () => {
      if (!models.has(c.model)) models.set(c.model, loadDepthEstimationModel(join(D, c.model), noWarn));
      const model = await models.get(c.model)!;
      const expected = read(c, 'predicted_depth');
      const depth = await model.forward(read(c, 'pixel_values'));
      assertClose(depth, expected, 1e-4, 'predicted_depth');
    });
  }
});

// ---- real configs: structure without weights ------------------------------------------------

const REAL = {
  hybrid: join(D, 'configs', 'Intel--dpt-hybrid-midas'),
  large: join(D, 'configs', 'Intel--dpt-large'),
  anything: join(D, 'configs', 'depth-anything--Depth-Anything-V2-Small-hf'),
};

interface KeyTable {
  param_count: number;
  keys: { key: string; shape: number[] }[];
}

function expectKeys(params: Iterable<ParameterSpec>, folder: string): void {
  const table = JSON.parse(readFileSync(join(folder, 'keys.json'), 'utf8')) as KeyTable;
  const ours = [...params];
  const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : 1);
  assert.deepEqual(ours.map((p) => ({ key: p.key, shape: [...p.shape] })).sort(byKey), table.keys.map((k) => ({ key: k.key, shape: k.shape })).sort(byKey));
  assert.equal(ours.reduce((n, p) => n + numel(p.shape), 0), table.param_count);
}

/** A weight source whose refs point at no bytes: enough to trace a graph (nothing is read). */
function virtualSource(params: Iterable<ParameterSpec>): WeightSource {
  const file = { path: 'virtual', realPath: 'virtual', readBytes: (): Uint8Array => assert.fail('read'), readRange: (): Uint8Array => assert.fail('read') };
  const map = new Map<string, WeightRef>();
  for (const p of params) map.set(p.key, { file, info: { name: p.key, dtype: 'F32', shape: p.shape, fileOffset: 0, byteLength: numel(p.shape) * 4 } });
  return new WeightSource(map, 'virtual');
}

function tracedIO(model: DPTForDepthEstimation | DepthAnythingForDepthEstimation): { inputs: unknown[]; outputs: unknown[]; ops: Set<string> } {
  const g = model.toOnnx().graph;
  const io = (v: { name: string; type: { shape?: readonly (string | number)[] } }) => ({ name: v.name, shape: v.type.shape });
  return { inputs: g.inputs.map(io), outputs: g.outputs.map(io), ops: new Set(g.nodes.map((n) => n.opType)) };
}

describe('real configs (structure, no weights)', () => {
  test('Intel/dpt-hybrid-midas: BiT-R50 hybrid, 122,377,985 parameters, key for key; 384×384 → 384×384', () => {
    const config = parseDPTConfig(readConfigJson(REAL.hybrid), REAL.hybrid, noWarn.warn);
    assert.equal(config.isHybrid, true);
    assert.deepEqual(config.bit?.outIndices, [1, 2, 3]);
    assert.equal(config.bit?.globalPadding, 'SAME');
    const net = new DPTForDepthEstimationNet(config, REAL.hybrid);
    expectKeys(net.parameters(), REAL.hybrid);
    assert.deepEqual(net.taps, [8, 11]); // backbone_out_indices [2, 5, 8, 11][2:]
    const model = DPTForDepthEstimation.fromSource(config, virtualSource(net.parameters()));
    const io = tracedIO(model);
    assert.deepEqual(io.inputs, [{ name: 'pixel_values', shape: ['batch', 3, 384, 384] }]);
    assert.deepEqual(io.outputs, [{ name: 'predicted_depth', shape: ['batch', 'depth_height', 'depth_width'] }]);
    assert.ok(io.ops.has('MaxPool') && io.ops.has('ConvTranspose') === false); // hybrid factors [1, 1, 1, 0.5]: no transposed conv
    assert.deepEqual(model.predictedDepthSize(384, 384), [384, 384]);
    assert.throws(() => model.checkInputSize(384, 512), (e: unknown) => e instanceof InputError && /384×512.*image_size 384/.test(e.message));
  });

  test('a hybrid config without backbone_config gets DPTConfig’s default BiT (the same 122,377,985 keys)', () => {
    const { backbone_config: _b, ...raw } = readConfigJson(REAL.hybrid);
    const config = parseDPTConfig(raw, REAL.hybrid, noWarn.warn);
    expectKeys(new DPTForDepthEstimationNet(config, REAL.hybrid).parameters(), REAL.hybrid);
  });

  test('a pre-activation BiT (BitConfig’s default layer type) has transformers’ v2 layout and runs', async () => {
    const raw = readConfigJson(join(D, 'tiny-dpt-hybrid'));
    const bit = { ...(raw['backbone_config'] as Record<string, unknown>), layer_type: 'preactivation', global_padding: null };
    const keys = [...new DPTForDepthEstimationNet(parseDPTConfig({ ...raw, backbone_config: bit }, 'preact', noWarn.warn), 'preact').parameters()];
    const shape = (k: string) => keys.find((p) => p.key === `dpt.embeddings.backbone.bit.${k}`)?.shape;
    assert.deepEqual(shape('encoder.stages.1.layers.0.norm1.weight'), [16]); // before conv1, on the stage's input
    assert.deepEqual(shape('encoder.stages.1.layers.0.norm3.weight'), [8]); // on the bottleneck width
    assert.equal(shape('encoder.stages.1.layers.0.downsample.norm.weight'), undefined); // the shortcut has no norm
    assert.equal(shape('embedder.norm.weight'), undefined);
    assert.deepEqual(shape('norm.weight'), [128]); // bit.norm over hidden_sizes[-1]
    // With "SAME" padding the stem and stages keep the 4×4 token grid at 64 px; random weights, shape and ReLU range only.
    const same = { ...raw, backbone_config: { ...bit, global_padding: 'SAME' } };
    const dir = writeModel(join(tmp, 'preact'), same, new DPTForDepthEstimationNet(parseDPTConfig(same, 'preact', noWarn.warn), 'preact').parameters());
    const model = await loadDepthEstimationModel(dir, noWarn);
    const depth = await model.forward(Tensor.float32(Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.sin(i * 0.03)), [1, 3, 64, 64]));
    assert.deepEqual(depth.dims, [1, 64, 64]);
    assert.ok(depth.data.every((v) => Number.isFinite(v) && v >= 0));
    await model.release();
  });

  test('Intel/dpt-large: plain ViT-L/16, 343,030,465 parameters, key for key; 384×384 → 384×384', () => {
    const config = parseDPTConfig(readConfigJson(REAL.large), REAL.large, noWarn.warn);
    const net = new DPTForDepthEstimationNet(config, REAL.large);
    expectKeys(net.parameters(), REAL.large);
    assert.deepEqual(net.taps, [5, 11, 17, 23]);
    const model = DPTForDepthEstimation.fromSource(config, virtualSource(net.parameters()));
    const io = tracedIO(model);
    assert.deepEqual(io.inputs, [{ name: 'pixel_values', shape: ['batch', 3, 'height', 'width'] }]);
    assert.ok(io.ops.has('ConvTranspose') && !io.ops.has('MaxPool'));
    assert.deepEqual(model.predictedDepthSize(384, 384), [384, 384]);
    assert.deepEqual(model.predictedDepthSize(512, 512), [512, 512]);
    assert.throws(() => model.checkInputSize(384, 512), (e: unknown) => e instanceof InputError && /24×32.*not square/.test(e.message));
  });

  test('Depth-Anything-V2-Small: Dinov2 ViT-S/14, 24,785,089 parameters, key for key; 518×518 and aspect-kept sizes', () => {
    const config = parseDepthAnythingConfig(readConfigJson(REAL.anything), REAL.anything, noWarn.warn);
    assert.deepEqual(config.backbone.outIndices, [3, 6, 9, 12]);
    assert.equal(config.backbone.numHiddenLayers, 12); // the default, not in the file
    const net = new DepthAnythingNet(config, REAL.anything);
    expectKeys(net.parameters(), REAL.anything);
    const model = DepthAnythingForDepthEstimation.fromSource(config, virtualSource(net.parameters()));
    const io = tracedIO(model);
    assert.deepEqual(io.inputs, [{ name: 'pixel_values', shape: ['batch', 3, 'height', 'width'] }]);
    assert.ok(io.ops.has('Resize') && io.ops.has('ConvTranspose'));
    assert.deepEqual(model.predictedDepthSize(518, 518), [518, 518]);
    assert.deepEqual(model.predictedDepthSize(518, 686), [518, 686]); // 518 × 686 = 37 × 49 patches
    assert.deepEqual(model.predictedDepthSize(520, 690), [518, 686]); // the remainder is dropped, as transformers' conv does
  });
});

// ---- plain-ViT DPT (dpt-large layout, small) at run time ----------------------------------------

/** The held-back plain-ViT case's layout: 5 layers, patch 8, a 64-px position table, out indices [0, 2, 3, 4]. */
const PLAIN_VIT = {
  model_type: 'dpt',
  architectures: ['DPTForDepthEstimation'],
  hidden_size: 32,
  num_hidden_layers: 5,
  num_attention_heads: 4,
  intermediate_size: 64,
  image_size: 64,
  patch_size: 8,
  backbone_out_indices: [0, 2, 3, 4],
  neck_hidden_sizes: [8, 16, 32, 32],
  reassemble_factors: [4, 2, 1, 0.5],
  fusion_hidden_size: 16,
};

function plainVitFolder(name: string, overrides: Record<string, unknown> = {}): string {
  const raw = { ...PLAIN_VIT, ...overrides };
  const config = parseDPTConfig(raw, name, noWarn.warn);
  return writeModel(join(tmp, name), raw, new DPTForDepthEstimationNet(config, name).parameters());
}


describe('plain-ViT DPT', () => {
  test('40×40 with patch 8 (a 5×5 grid, position table resized from 8×8): predicted_depth 96×96, finite and ≥ 0', async () => {
    const model = await loadDepthEstimationModel(plainVitFolder('vit-project'), noWarn);
    assert.ok(model instanceof DPTForDepthEstimation);
    assert.deepEqual(model.predictedDepthSize?.(40, 40), [96, 96]);
    const x = Tensor.float32(Float32Array.from({ length: 3 * 40 * 40 }, (_, i) => Math.cos(i * 0.01)), [1, 3, 40, 40]);
    const depth = await model.forward(x);
    assert.deepEqual(depth.dims, [1, 96, 96]);
    assert.ok(depth.data.every((v) => Number.isFinite(v) && v >= 0), 'ReLU output');
    // 64×64 is the table's own 8×8 grid (no resize): 8 → 4 by the last factor, × 2⁵ through fusion and head
    assert.deepEqual(model.predictedDepthSize?.(64, 64), [128, 128]);
    assert.deepEqual((await model.forward(Tensor.zeros([1, 3, 64, 64]))).dims, [1, 128, 128]);
    await assert.rejects(model.forward(Tensor.zeros([1, 3, 40, 48])), (e: unknown) => e instanceof InputError && /40×48.*5×6.*not square/.test(e.message));
    await assert.rejects(model.forward(Tensor.zeros([1, 3, 4, 4])), (e: unknown) => e instanceof InputError && /smaller than one 8×8 patch/.test(e.message));
    await model.release();
  });

  test('readout "add" and "ignore" have no readout_projects; BatchNorm residual units and the head projection bind their keys', () => {
    for (const readout of ['add', 'ignore']) {
      const c = parseDPTConfig({ ...PLAIN_VIT, readout_type: readout }, readout, noWarn.warn);
      assert.ok(![...new DPTForDepthEstimationNet(c, readout).parameters()].some((p) => p.key.includes('readout_projects')));
    }
    const bn = parseDPTConfig({ ...PLAIN_VIT, use_batch_norm_in_fusion_residual: true }, 'bn', noWarn.warn);
    const keys = [...new DPTForDepthEstimationNet(bn, 'bn').parameters()].map((p) => p.key);
    assert.ok(keys.includes('neck.fusion_stage.layers.0.residual_layer1.batch_norm2.running_var'));
    assert.ok(!keys.includes('neck.fusion_stage.layers.0.residual_layer1.convolution1.bias')); // bias follows `not use_batch_norm`
    const proj = parseDPTConfig({ ...PLAIN_VIT, fusion_hidden_size: 256, add_projection: true }, 'proj', noWarn.warn);
    assert.ok([...new DPTForDepthEstimationNet(proj, 'proj').parameters()].some((p) => p.key === 'head.projection.weight'));
  });
});

// ---- building blocks -------------------------------------------------------------------------

/** torch.nn.functional.interpolate(mode="bilinear", align_corners=False) of one plane, written from its definition. */
function torchBilinear(x: Float32Array, ih: number, iw: number, oh: number, ow: number): Float32Array {
  const src = (d: number, i: number, o: number) => Math.max(((d + 0.5) * i) / o - 0.5, 0); // clamped below at 0
  const out = new Float32Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let xx = 0; xx < ow; xx++) {
      const sy = src(y, ih, oh);
      const sx = src(xx, iw, ow);
      const [y0, x0] = [Math.floor(sy), Math.floor(sx)];
      const [y1, x1] = [Math.min(y0 + 1, ih - 1), Math.min(x0 + 1, iw - 1)];
      const [ly, lx] = [sy - y0, sx - x0];
      const at = (r: number, c: number) => x[r * iw + c]!;
      out[y * ow + xx] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
    }
  }
  return out;
}

test('bilinear resizes (position table, fusion residuals) equal torch’s align_corners=False definition', async () => {
  // DPT's position table 8 → 5 (the held-back grid) and 24 → 32; a fusion residual 5 → 6 (odd grids)
  for (const [ih, iw, oh, ow] of [[8, 8, 5, 5], [24, 24, 32, 32], [5, 5, 6, 6], [3, 4, 12, 7]] as const) {
    const op = GraphBuilder.create(null);
    const x = op.input('x', OnnxDataType.FLOAT, [1, 1, ih, iw]);
    op.output(bilinearTo(op, x, op.ints([1, 1, oh, ow]), false), 'y');
    const session = await ModelSession.create(op.toModel('bilinear'), {});
    const data = Float32Array.from({ length: ih * iw }, (_, i) => Math.sin(i * 1.7) * 3);
    const y = (await session.run({ x: new Tensor('float32', data, [1, 1, ih, iw]) }))['y']!;
    await session.release();
    assertClose(y, new Tensor('float32', torchBilinear(data, ih, iw, oh, ow), [1, 1, oh, ow]), 1e-5, `${ih}×${iw} → ${oh}×${ow}`);
  }
});

// ---- loading and bad input -------------------------------------------------------------------

describe('loading and bad input', () => {
  test('loadDepthEstimationModel picks the class from model_type', async () => {
    const dpt = await loadDepthEstimationModel(join(D, 'tiny-dpt-hybrid'), noWarn);
    const da = await loadDepthEstimationModel(join(D, 'tiny-depth-anything-v2'), noWarn);
    assert.ok(dpt instanceof DPTForDepthEstimation && dpt.config.isHybrid);
    assert.ok(da instanceof DepthAnythingForDepthEstimation);
    assert.equal(da.config.patchSize, 14);
  });

  test('a folder of another architecture is refused naming the file and its type', async () => {
    const unet = fixture('tiny-sd-cnxs', 'unet');
    await assert.rejects(
      loadDepthEstimationModel(unet, noWarn),
      (e: unknown) => e instanceof ConfigError && e.message.includes(join(unet, 'config.json')) && /not a depth-estimation model \(a diffusers UNet2DConditionModel\)/.test(e.message),
    );
    const dir = join(tmp, 'segformer');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'glpn', architectures: ['GLPNForDepthEstimation'] }));
    await assert.rejects(loadDepthEstimationModel(dir, noWarn), (e: unknown) => e instanceof ConfigError && /model_type "glpn"/.test(e.message) && /GLPNForDepthEstimation/.test(e.message));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...PLAIN_VIT, architectures: ['DPTForSemanticSegmentation'] }));
    await assert.rejects(loadDepthEstimationModel(dir, noWarn), (e: unknown) => e instanceof ConfigError && /\["DPTForSemanticSegmentation"\] is not a depth-estimation model/.test(e.message));
  });

  test('a config whose sizes do not match the weights: the strict-binding error names the key and both shapes', async () => {
    const dir = join(tmp, 'mismatch');
    mkdirSync(dir);
    const raw = JSON.parse(readFileSync(join(D, 'tiny-depth-anything-v2', 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, head_hidden_size: 12 }));
    copyFileSync(join(D, 'tiny-depth-anything-v2', 'model.safetensors'), join(dir, 'model.safetensors'));
    await assert.rejects(
      loadDepthEstimationModel(dir, noWarn),
      (e: unknown) => e instanceof WeightLoadError && /head\.conv2\.weight: checkpoint has \[8, 8, 3, 3\], model expects \[12, 8, 3, 3\]/.test(e.message),
    );
  });

  test('inputs the models cannot take are refused before running, naming the size', async () => {
    const dpt = await loadDepthEstimationModel(join(D, 'tiny-dpt-hybrid'), noWarn);
    await assert.rejects(dpt.forward(Tensor.zeros([1, 3, 56, 56])), (e: unknown) => e instanceof InputError && /56×56.*only runs at its image_size 64×64/.test(e.message));
    await assert.rejects(dpt.forward(Tensor.zeros([1, 4, 64, 64])), (e: unknown) => e instanceof InputError && /pixel_values must have shape \[\*, 3, \*, \*\]/.test(e.message));
    const da = await loadDepthEstimationModel(join(D, 'tiny-depth-anything-v2'), noWarn);
    await assert.rejects(da.forward(Tensor.zeros([1, 3, 13, 56])), (e: unknown) => e instanceof InputError && /13×56, smaller than one 14×14 patch/.test(e.message));
    const nan = Tensor.zeros([1, 3, 56, 56]);
    nan.data[5] = Number.NaN;
    await assert.rejects(da.forward(nan), (e: unknown) => e instanceof InputError && /NaN/.test(e.message));
  });

  test('configs transformers would not run are refused by name', () => {
    const da = JSON.parse(readFileSync(join(D, 'tiny-depth-anything-v2', 'config.json'), 'utf8')) as { backbone_config: Record<string, unknown> };
    const withBackbone = (b: Record<string, unknown>) => ({ ...da, backbone_config: { ...da.backbone_config, ...b } });
    const refuses = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof ConfigError && re.test(e.message));
    refuses(() => parseDepthAnythingConfig(withBackbone({ reshape_hidden_states: true }), 'da', noWarn.warn), /reshape_hidden_states must be false/);
    refuses(() => parseDepthAnythingConfig(withBackbone({ patch_size: 7 }), 'da', noWarn.warn), /patch_size 14 differs from the backbone's patch_size 7/);
    refuses(() => parseDepthAnythingConfig(withBackbone({ model_type: 'swinv2' }), 'da', noWarn.warn), /"swinv2": only a Dinov2 backbone/);
    refuses(() => parseDepthAnythingConfig(withBackbone({ out_indices: [4, 2], out_features: null }), 'da', noWarn.warn), /must be unique and in stage order/);
    refuses(() => new DepthAnythingNet(parseDepthAnythingConfig(withBackbone({ out_indices: [1, 2, 3], out_features: null }), 'da', noWarn.warn), 'da'), /3 feature maps .* neck_hidden_sizes has 4/);
    refuses(() => parseDPTConfig({ ...PLAIN_VIT, backbone_config: { model_type: 'dinov2' } }, 'dpt', noWarn.warn), /"dinov2" backbone_config \(not is_hybrid\) is not supported/);
    refuses(() => parseDPTConfig({ ...PLAIN_VIT, readout_type: 'concat' }, 'dpt', noWarn.warn), /readout_type "concat"/);
    refuses(() => parseDPTConfig({ ...PLAIN_VIT, reassemble_factors: [4, 2, 1.5, 0.5] }, 'dpt', noWarn.warn), /reassemble_factors\[2\] = 1.5/);
    refuses(() => new DPTForDepthEstimationNet(parseDPTConfig({ ...PLAIN_VIT, backbone_out_indices: [0, 2, 3, 9] }, 'dpt', noWarn.warn), 'dpt'), /select 3 feature maps for 5 layers, but neck_hidden_sizes has 4/);
    refuses(() => parseDPTConfig({ ...PLAIN_VIT, hidden_act: 'mish' }, 'dpt', noWarn.warn), /hidden_act="mish" is not supported/);
  });
});
