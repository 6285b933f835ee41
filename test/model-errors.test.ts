/** Bad input to the core models: each case fails with a named error that says what is wrong. */
import assert from 'node:assert/strict';
import { cpSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { OnnxDataType, type ModelProto } from '../src/graph/onnx-proto.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { ModelSession } from '../src/runtime/session.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { Tensor } from '../src/tensor.js';
import { WeightSource } from '../src/weights/source.js';
import { allNodes, assertClose, fixture, tempDir } from './helpers.js';
import { Generator, randn } from '../src/random/index.js';

const D = fixture('tiny-sd-cnxs');
let unet: UNet2DConditionModel;
let model: UNetControlNetXSModel;

const zeros = (...dims: number[]) => Tensor.zeros(dims);
const ok = () => ({ sample: zeros(1, 4, 8, 8), timestep: 10, encoderHiddenStates: zeros(1, 77, 32), controlnetCond: zeros(1, 3, 64, 64) });

before(async () => {
  unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`, { warn: () => {} });
  model = await UNetControlNetXSModel.fromUnet(unet, await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`));
});
after(() => model.release());

test('missing config.json names the folder', async () => {
  const dir = tempDir('cnxs-model-errors-');
  await assert.rejects(UNet2DConditionModel.fromPretrained(dir), (e: Error) => e instanceof ConfigError && e.message.includes(join(dir, 'config.json')));
  await assert.rejects(ControlNetXSAdapter.fromPretrained(join(dir, 'nope')), (e: Error) => e instanceof ConfigError && /not a model folder/.test(e.message));
});

test('a config value of the wrong kind, and unsupported settings, are named', async () => {
  const dir = tempDir('cnxs-model-errors-');
  cpSync(`${D}/unet`, dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, norm_num_groups: 'eight' }));
  await assert.rejects(UNet2DConditionModel.fromPretrained(dir), /"norm_num_groups" must be like 32, got "eight"/);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, resnet_time_scale_shift: 'scale_shift' }));
  await assert.rejects(UNet2DConditionModel.fromPretrained(dir), /resnet_time_scale_shift="scale_shift" is not supported/);
  const warnings: string[] = [];
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, my_new_key: 1, upcast_attention: null }));
  const m = await UNet2DConditionModel.fromPretrained(dir, { warn: (w) => warnings.push(w) });
  assert.equal(m.config.upcastAttention, false, 'null means the default');
  assert.match(warnings.join('\n'), /unknown config key\(s\) my_new_key/);
});

test('strict loading names missing, unused and mis-shaped keys', () => {
  const entries = [...unet.source.keys()].map((k) => [k, unet.source.get(k)!] as const);
  const without = new WeightSource(new Map(entries.filter(([k]) => k !== 'conv_in.bias')), 'test');
  assert.throws(() => UNet2DConditionModel.fromSource(unet.config, without), (e: Error) => e instanceof WeightLoadError && /missing keys \(1\): conv_in\.bias/.test(e.message));
  const extra = new WeightSource(new Map([...entries, ['conv_in.extra', unet.source.get('conv_in.bias')!]]), 'test');
  assert.throws(() => UNet2DConditionModel.fromSource(unet.config, extra), /unused keys \(1\): conv_in\.extra/);
  const swapped = new WeightSource(new Map(entries.map(([k, v]) => [k, k === 'conv_in.bias' ? unet.source.get('conv_out.bias')! : v])), 'test');
  assert.throws(() => UNet2DConditionModel.fromSource(unet.config, swapped), /mis-shaped keys \(1\): conv_in\.bias: checkpoint has \[4\], model expects \[16\]/);
});

test('an adapter made for another UNet (SD adapter, SDXL base) is refused before any compute', async () => {
  const sdxlUnet = await UNet2DConditionModel.fromPretrained(fixture('tiny-sdxl-cnxs', 'unet'));
  const sdAdapter = await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`);
  await assert.rejects(UNetControlNetXSModel.fromUnet(sdxlUnet, sdAdapter), (e: Error) => e instanceof ConfigError && /block_out_channels \[16, 32, 32\].*\[16, 32, 64\]/.test(e.message));
  const sdxlAdapter = await ControlNetXSAdapter.fromPretrained(fixture('tiny-sdxl-cnxs', 'controlnet'));
  await assert.rejects(UNetControlNetXSModel.fromUnet(unet, sdxlAdapter), ConfigError);
});

test('inputs: channels, control size, latent size, NaN, missing control', async () => {
  const cases: [string, object, RegExp][] = [
    ['sample without 4 channels', { sample: zeros(1, 3, 8, 8) }, /sample must have shape \[\*, 4, \*, \*\], got \[1, 3, 8, 8\]/],
    ['control image not 8× the latents', { controlnetCond: zeros(1, 3, 32, 32) }, /controlnetCond must have shape \[1, 3, 64, 64\], got \[1, 3, 32, 32\]/],
    ['latents not divisible by 2^(levels−1)', { sample: zeros(1, 4, 6, 8), controlnetCond: zeros(1, 3, 48, 64) }, /6×8 latents.*multiples of 4/],
    ['batch mismatch', { encoderHiddenStates: zeros(2, 77, 32) }, /encoderHiddenStates must have shape \[1, \*, \*\]/],
    ['float64 data', { sample: { data: new Float64Array(256), dims: [1, 4, 8, 8] } }, /sample must hold a Float32Array/],
    ['bad timestep', { timestep: NaN }, /timestep must be finite/],
    ['bad conditioning scale', { conditioningScale: Infinity }, /conditioningScale must be a finite number/],
    ['missing control image', { controlnetCond: undefined }, /controlnetCond is required/],
  ];
  for (const [name, patch, message] of cases) {
    await assert.rejects(model.forward({ ...ok(), ...patch }), (e: Error) => e instanceof InputError && message.test(e.message), name);
  }
  const nan = zeros(1, 4, 8, 8);
  (nan.data as Float32Array)[5] = NaN;
  await assert.rejects(model.forward({ ...ok(), sample: nan }), /sample contains NaN at flat index 5/);
  // control off needs no control image
  const { controlnetCond: _cond, ...noControl } = ok();
  const { sample } = await model.forward({ ...noControl, applyControl: false });
  assert.deepEqual([...sample.dims], [1, 4, 8, 8]);
});

test('the runtime seam validates feeds by name, dtype and symbolic dims', async () => {
  const op = GraphBuilder.create(null);
  const a = op.input('a', OnnxDataType.FLOAT, ['batch', 2]);
  const b = op.input('b', OnnxDataType.FLOAT, ['batch']);
  op.output(op.add(a, op.unsqueeze(b, op.ints([1]))), 'sum');
  const s = await ModelSession.create(op.toModel('toy'));
  const out = await s.run({ a: new Tensor('float32', Float32Array.of(1, 2), [1, 2]), b: Tensor.float32([10], [1]) });
  assert.deepEqual([...out['sum']!.data], [11, 12]);
  await assert.rejects(s.run({ a: Tensor.zeros([1, 2]) }), /toy: missing input "b"/);
  await assert.rejects(s.run({ a: Tensor.zeros([1, 2]), b: Tensor.zeros([1]), c: Tensor.zeros([1]) }), /unknown input\(s\) c/);
  await assert.rejects(s.run({ a: Tensor.zeros([1, 3]), b: Tensor.zeros([1]) }), /"a" dim 1 must be 2, got 3/);
  await assert.rejects(s.run({ a: Tensor.zeros([2, 2]), b: Tensor.zeros([3]) }), /"b" has batch=3 but "a" has batch=2/);
  await assert.rejects(s.run({ a: Tensor.zeros([2]), b: Tensor.zeros([2]) }), /must have rank 2/);
  await assert.rejects(s.run({ a: { data: new BigInt64Array(2), dims: [1, 2] }, b: Tensor.zeros([1]) }), /"a" must be float32, got int64/);
  await s.release();
  await assert.rejects(s.run({}), /released/);
});

test('a corrupt weights file fails at load, naming the file', async () => {
  const dir = tempDir('cnxs-model-errors-');
  cpSync(`${D}/controlnet`, dir, { recursive: true });
  const path = join(dir, 'diffusion_pytorch_model.safetensors');
  const bytes = readFileSync(path);
  writeFileSync(path, bytes.subarray(0, bytes.length - 100));
  await assert.rejects(ControlNetXSAdapter.fromPretrained(dir), (e: Error) => e.message.includes(path) && /past the end/.test(e.message));
});

test('WebGPU gets a graph of standard ops; a provider that cannot start falls back to the CPU with a notice and the CPU graph', async () => {
  const warnings: string[] = [];
  const warn = (m: string) => warnings.push(m);
  const gpu = await UNet2DConditionModel.fromPretrained(`${D}/unet`, { runtime: { executionProviders: ['webgpu', 'cpu'], warn } });
  const contribOps = (m: ModelProto) => [...new Set(allNodes(m.graph).filter((n) => n.domain === 'com.microsoft').map((n) => n.opType))].sort();
  assert.deepEqual(contribOps(gpu.toOnnx()), []);
  assert.deepEqual(contribOps(gpu.toOnnx(gpu.traceOptions(['cpu']))), ['FusedMatMul', 'MultiHeadAttention']);

  // Either way the numbers are the CPU's: on a WebGPU adapter with the standard-op graph, or after the fallback.
  const g = new Generator().manualSeed(4);
  const args = { sample: randn([1, 4, 8, 8], { generator: g }), timestep: 10, encoderHiddenStates: randn([1, 77, 32], { generator: g }) };
  assertClose((await gpu.forward(args)).sample, (await unet.forward(args)).sample, 1e-4, 'webgpu-or-fallback vs cpu');
  if ((await gpu.executionProvider()) === 'cpu') assert.match(warnings.join('\n'), /execution provider webgpu is not available here .*running on the CPU/);
  else assert.deepEqual(warnings, []);
  await gpu.release();

  // The fallback opens the graph made for the CPU (CUDA's libraries come only with ONNXRUNTIME_NODE_INSTALL=cuda12).
  const made: string[] = [];
  const model = unet.toOnnx();
  const s = await ModelSession.create(model, { executionProviders: ['cuda', 'cpu'], warn }, { cpuModel: () => (made.push('cpu'), model) });
  assert.deepEqual(made, s.executionProvider === 'cpu' ? ['cpu'] : []);
  await s.release();

  // A provider this onnxruntime-node build does not have is named too (onnxruntime would drop it quietly).
  warnings.length = 0;
  const none = await ModelSession.create(model, { executionProviders: ['tpu', 'cpu'], warn });
  assert.equal(none.executionProvider, 'cpu');
  assert.match(warnings.join('\n'), /execution provider tpu is not in this onnxruntime-node build \(it has cpu, .*\); running on the CPU/);
  await none.release();
});

test('a pipeline component without the asked variant falls back to its default weights, with a warning', async () => {
  const dir = tempDir('cnxs-variant-');
  for (const p of ['model_index.json', 'unet', 'controlnet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) cpSync(join(D, p), join(dir, p), { recursive: true });
  rmSync(join(dir, 'text_encoder', 'model.fp16.safetensors'));
  const warnings: string[] = [];
  const pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(dir, { variant: 'fp16', warn: (w) => warnings.push(w) });
  assert.match(warnings.join('\n'), /text_encoder: no "fp16" variant weights; loading the default ones/);
  assert.equal(pipe.textEncoder.toOnnx().graph.initializers.find((t) => t.name.endsWith('token_embedding.weight'))!.dataType, OnnxDataType.FLOAT);
  assert.equal(pipe.unet.toOnnx().graph.initializers.find((t) => t.name === 'base_conv_in.weight')!.dataType, OnnxDataType.FLOAT16);
});
