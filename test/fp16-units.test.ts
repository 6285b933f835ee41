/**
 * float16 without a GPU: the binary16 encoder against values derived by hand from the IEEE 754 layout,
 * NaN/Infinity detection, the dtype checks (float16 on the CPU, bfloat16, unknown values), and the
 * traced graphs' structure (float32 graphs carry no float16; float16 graphs keep float32 at the
 * boundary, embed timesteps in float32 and upcast exactly where the config says).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../src/errors.js';
import { OnnxDataType, type ModelProto, type NodeProto } from '../src/graph/onnx-proto.js';
import { checkComputeDtype } from '../src/models/compute-dtype.js';
import { NonFiniteOutputError, checkFiniteOutputs, firstNonFinite } from '../src/models/non-finite.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { FLOAT16_MAX, float16Array, fromFloat16Bits, toFloat16Bits } from '../src/util/float16.js';
import { allNodes, fixture } from './helpers.js';

const D = fixture('tiny-sd-cnxs');
const GPU = { runtime: { executionProviders: ['webgpu'] }, warn: () => {} };

describe('binary16 encoding', () => {
  test('exact values, rounding to nearest even, overflow, subnormals and specials', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [65504, 0x7bff], // the largest finite
      [65519.99, 0x7bff], // below the halfway point to 2^16: still finite
      [65520, 0x7c00], // halfway rounds to even: Infinity
      [1e6, 0x7c00],
      [-3.4028234663852886e38, 0xfc00],
      [Infinity, 0x7c00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // exactly half of it: ties to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1 + 2^-10: even is 1
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 1 + 2^-10 (odd) and 1 + 2^-9: up to even
      [0.1, 0x2e66],
      [1.702, 0x3ecf], // 1 + 718.848/1024 → 719
    ];
    for (const [x, bits] of cases) assert.equal(toFloat16Bits(x), bits, `${x} → 0x${toFloat16Bits(x).toString(16)}, want 0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN))));
  });

  test('every finite pattern decodes and re-encodes to itself', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue; // Inf / NaN
      assert.equal(toFloat16Bits(fromFloat16Bits(h)), h === 0x8000 ? 0x8000 : h);
    }
    assert.equal(fromFloat16Bits(0x7bff), FLOAT16_MAX);
    assert.deepEqual([...float16Array([1, -2])], [0x3c00, 0xc000]);
  });
});

describe('NaN / Infinity detection', () => {
  test('firstNonFinite', () => {
    assert.equal(firstNonFinite(Float32Array.of(0, 1, -65504)), -1);
    assert.equal(firstNonFinite(Float32Array.of(0, NaN, Infinity)), 1);
    assert.equal(firstNonFinite(Float32Array.of(0, 1, -Infinity)), 2);
    assert.equal(firstNonFinite(new Float32Array(0)), -1);
  });

  test('checkFiniteOutputs names the model, the output and the place; atStep adds the step', () => {
    const out = { ok: { data: Float32Array.of(1) }, sample: { data: Float32Array.of(1, 2, NaN) }, ids: { data: BigInt64Array.of(1n) } };
    let err: NonFiniteOutputError | null = null;
    try {
      checkFiniteOutputs('UNetControlNetXSModel', out);
    } catch (e) {
      err = e as NonFiniteOutputError;
    }
    assert.ok(err instanceof NonFiniteOutputError);
    assert.deepEqual(err.detail, { model: 'UNetControlNetXSModel', output: 'sample', index: 2, value: NaN });
    assert.match(err.message, /UNetControlNetXSModel: output "sample" holds NaN \(flat index 2\).*float16 overflow.*float32/);
    assert.match(err.atStep(3, 701).message, /at denoising step 3 \(timestep 701\)/);
    assert.doesNotThrow(() => checkFiniteOutputs('m', { ok: { data: Float32Array.of(1) } }));
  });
});

describe('dtype checks', () => {
  test('float32 anywhere; float16 on GPU providers only', () => {
    assert.equal(checkComputeDtype('M', undefined, ['cpu']), 'float32');
    assert.equal(checkComputeDtype('M', 'float32', ['cpu']), 'float32');
    assert.equal(checkComputeDtype('M', 'float16', ['webgpu', 'cpu']), 'float16');
    assert.equal(checkComputeDtype('M', 'float16', ['cuda']), 'float16');
    assert.throws(() => checkComputeDtype('UNet2DConditionModel', 'float16', ['cpu']), (e: unknown) =>
      e instanceof ConfigError && /UNet2DConditionModel: dtype "float16" on the "cpu" execution provider.*"webgpu" or "cuda"/.test(e.message));
    assert.throws(() => checkComputeDtype('M', 'float16', []), /on the "cpu" execution provider/);
    assert.throws(() => checkComputeDtype('M', 'bfloat16', ['webgpu']), (e: unknown) => e instanceof ConfigError && /bfloat16.*not supported/.test(e.message));
    assert.throws(() => checkComputeDtype('M', 'fp16', ['webgpu']), (e: unknown) => e instanceof ConfigError && /dtype "fp16" is not one of "float32", "float16"/.test(e.message));
  });

  test('models and pipelines refuse float16 on the CPU before reading anything', async () => {
    const missing = fixture('no-such-folder');
    await assert.rejects(UNet2DConditionModel.fromPretrained(missing, { dtype: 'float16' }), /UNet2DConditionModel: dtype "float16" on the "cpu"/);
    await assert.rejects(AutoencoderKL.fromPretrained(missing, { dtype: 'float16' }), /AutoencoderKL: dtype "float16" on the "cpu"/);
    // pipelines: before the Hub is asked (an id that does not exist would otherwise be a download error)
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromPretrained('no-org/no-such-repo', { dtype: 'float16', localFilesOnly: true }), (e: unknown) =>
      e instanceof ConfigError && /dtype "float16" on the "cpu"/.test(e.message));
    // a model built from parts checks in its constructor
    const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
    assert.throws(() => UNet2DConditionModel.fromSource(unet.config, unet.source, { dtype: 'float16' }), /UNet2DConditionModel: dtype "float16" on the "cpu"/);
  });
});

/** The node producing each value, and the nodes reading it. */
function index(m: ModelProto): { producer: Map<string, NodeProto>; readers: Map<string, NodeProto[]>; nodes: NodeProto[] } {
  const nodes = allNodes(m.graph);
  const producer = new Map<string, NodeProto>();
  const readers = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) readers.set(i, [...(readers.get(i) ?? []), n]);
  }
  return { producer, readers, nodes };
}
const castTo = (n: NodeProto | undefined, t: OnnxDataType) => n?.opType === 'Cast' && n.attributes?.['to'] === t;

describe('traced graphs', () => {
  test('float32 graphs hold no float16 (every float16 checkpoint weight cast to float32 once)', async () => {
    const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
    const m = unet.toOnnx();
    assert.ok(!m.graph.initializers.some((t) => t.dataType === OnnxDataType.FLOAT16));
    assert.ok(!index(m).nodes.some((n) => castTo(n, OnnxDataType.FLOAT16)));
    // the CPU fallback of a float16 model traces float32
    const half = UNet2DConditionModel.fromSource(unet.config, unet.source, { ...GPU, dtype: 'float16' });
    assert.equal(half.traceOptions(['cpu']).dtype, undefined);
    assert.equal(half.traceOptions().dtype, 'float16');
  });

  test('float16 UNet: float32 at the boundary, timesteps embedded in float32, weights cast once', async () => {
    const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`, { ...GPU, dtype: 'float16' });
    const m = unet.toOnnx();
    for (const v of [...m.graph.inputs, ...m.graph.outputs]) assert.equal(v.type.elemType, OnnxDataType.FLOAT, v.name);
    const { producer, readers } = index(m);
    for (const name of ['sample', 'encoder_hidden_states']) assert.ok(readers.get(name)!.every((n) => castTo(n, OnnxDataType.FLOAT16)), name);
    assert.ok(!readers.get('timestep')!.some((n) => castTo(n, OnnxDataType.FLOAT16)), 'timestep stays float32 into the sinusoidal embedding');
    assert.ok(castTo(producer.get(m.graph.outputs[0]!.name) && producer.get(producer.get(m.graph.outputs[0]!.name)!.inputs[0]!), OnnxDataType.FLOAT));
    // float32 weights: one Cast to float16 each, in the root graph
    const weights = m.graph.initializers.filter((t) => t.external !== undefined);
    assert.ok(weights.length > 0 && weights.every((t) => t.dataType === OnnxDataType.FLOAT));
    for (const w of weights) assert.deepEqual(readers.get(w.name)!.map((n) => castTo(n, OnnxDataType.FLOAT16)), [true], w.name);
    // no upcast_attention in this config: softmax in float16
    assert.ok(index(m).nodes.filter((n) => n.opType === 'Softmax').every((n) => !castTo(producer.get(n.inputs[0]!), OnnxDataType.FLOAT)));
  });

  test('upcast_attention: QKᵀ and the softmax in float32; the VAE: the softmax in float32', async () => {
    const base = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
    const unet = UNet2DConditionModel.fromSource({ ...base.config, upcastAttention: true }, base.source, { ...GPU, dtype: 'float16' });
    let g = index(unet.toOnnx());
    const softmaxes = g.nodes.filter((n) => n.opType === 'Softmax');
    assert.ok(softmaxes.length > 0);
    for (const s of softmaxes) {
      const mul = g.producer.get(s.inputs[0]!)!; // scores · scale, in float32
      const product = g.producer.get(mul.inputs[0]!)!;
      assert.equal(product.opType, 'MatMul');
      for (const side of product.inputs) {
        let n = g.producer.get(side);
        while (n && (n.opType === 'Transpose' || n.opType === 'Reshape')) n = g.producer.get(n.inputs[0]!); // back through the head split
        assert.ok(castTo(n, OnnxDataType.FLOAT), 'q, k cast to float32 before the head split');
      }
      assert.ok(g.readers.get(s.outputs[0]!)!.every((n) => castTo(n, OnnxDataType.FLOAT16)));
    }
    const vae = await AutoencoderKL.fromPretrained(`${D}/vae`, { ...GPU, dtype: 'float16' });
    g = index(vae.decoderOnnx());
    const vs = g.nodes.filter((n) => n.opType === 'Softmax');
    assert.ok(vs.length > 0);
    for (const s of vs) {
      assert.ok(castTo(g.producer.get(s.inputs[0]!), OnnxDataType.FLOAT));
      assert.ok(g.readers.get(s.outputs[0]!)!.every((n) => castTo(n, OnnxDataType.FLOAT16)));
    }
  });

  test('force_upcast: the SDXL decode graph runs the up blocks in float32, the mid block in float16', async () => {
    const vae = await AutoencoderKL.fromPretrained(fixture('tiny-sdxl-cnxs', 'vae'), { ...GPU, dtype: 'float16' });
    assert.equal(vae.config.forceUpcast, true);
    const up = vae.forDecodeUpcast();
    assert.notEqual(up, vae);
    assert.equal(vae.forDecodeUpcast(), up, 'made once');
    const m = up.decoderOnnx();
    const { readers } = index(m);
    const readBy = (key: string) => (readers.get(key) ?? []).map((n) => (n.opType === 'Cast' ? `Cast:${String(n.attributes?.['to'])}` : n.opType));
    // the checkpoint is float32: float32 layers read their weights as stored, float16 ones through one Cast
    assert.deepEqual(readBy('decoder.up_blocks.0.resnets.0.conv1.weight'), ['Conv']);
    assert.deepEqual(readBy('decoder.conv_out.weight'), ['Conv']);
    assert.deepEqual(readBy('decoder.mid_block.resnets.0.conv1.weight'), [`Cast:${OnnxDataType.FLOAT16}`]);
    assert.deepEqual(readBy('post_quant_conv.weight'), [`Cast:${OnnxDataType.FLOAT16}`]);
    // a float32 VAE, or one without force_upcast, is its own decoder
    const plain = await AutoencoderKL.fromPretrained(fixture('tiny-sdxl-cnxs', 'vae'));
    assert.equal(plain.forDecodeUpcast(), plain);
  });
});
