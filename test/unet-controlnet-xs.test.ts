/**
 * Parity of UNet2DConditionModel, ControlNetXSAdapter and UNetControlNetXSModel with diffusers 0.33.1
 * on the tiny SD checkpoint (test/fixtures/tiny-sd-cnxs): every reference case, whole tensors,
 * tolerance max(1e-4, 20 × the case's fp32-vs-fp64 hint).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GraphBuilder, traceDefaultsFor } from '../src/graph/builder.js';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { fuseWeights, fusedConfig } from '../src/models/controlnet-xs-fusion.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { ModelSession } from '../src/runtime/session.js';
import type { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { allNodes, assertClose, fixture } from './helpers.js';
import { tinySdReference, type TinySdCase } from './tiny-sd-reference.js';

const ref = tinySdReference();
const { dir: D, cases, input, unetArgs, cnxsArgs } = ref;
type Case = TinySdCase;
const byKind = (kind: string) => cases.filter((c) => c.kind === kind);
const tolerance = (c: Case) => Math.max(1e-4, 20 * (c.max_abs_diff_fp32_vs_fp64 ?? 0));

/** A `unet_cnxs_forward` case's inputs through `m`. */
async function forwardCase(m: UNetControlNetXSModel, c: Case): Promise<Tensor<'float32'>> {
  return (await m.forward(cnxsArgs(c))).sample;
}

let unet: UNet2DConditionModel;
let adapter: ControlNetXSAdapter;
let model: UNetControlNetXSModel;
let fused: UNetControlNetXSModel;

before(async () => {
  unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
  adapter = await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`);
  model = await UNetControlNetXSModel.fromUnet(unet, adapter);
  fused = await UNetControlNetXSModel.fromPretrained(`${D}/unet_controlnet_xs`);
});
after(async () => {
  await Promise.all([unet.release(), model.release(), fused.release()]);
});

describe('UNetControlNetXSModel forward equals diffusers', () => {
  for (const c of byKind('unet_cnxs_forward')) {
    test(c.name, async () => {
      const m = c.model_folders[0] === 'unet_controlnet_xs' ? fused : model;
      assertClose(await forwardCase(m, c), ref.read(c.outputs['sample']!), tolerance(c), c.name);
    });
  }
});

describe('the WebGPU trace (standard ops only), run on the CPU, equals diffusers too', () => {
  const trace = traceDefaultsFor(['webgpu']);
  for (const c of byKind('unet_cnxs_forward')) {
    test(c.name, async () => {
      const m =
        c.model_folders[0] === 'unet_controlnet_xs'
          ? await UNetControlNetXSModel.fromPretrained(`${D}/unet_controlnet_xs`, { trace })
          : await UNetControlNetXSModel.fromUnet(unet, adapter, { trace });
      assert.deepEqual(allNodes(m.toOnnx().graph).filter((n) => n.domain === 'com.microsoft'), []);
      assertClose(await forwardCase(m, c), ref.read(c.outputs['sample']!), tolerance(c), c.name);
      await m.release();
    });
  }
});

describe('UNet2DConditionModel forward equals diffusers', () => {
  for (const c of byKind('unet_base_forward')) {
    test(c.name, async () => {
      const { sample } = await unet.forward(unetArgs(c));
      assertClose(sample, ref.read(c.outputs['sample']!), tolerance(c), c.name);
    });
  }

  test('the fused model without control is the plain UNet up to diffusers’ eps quirk (≈4e-5), not bit-equal', async () => {
    const c = byKind('unet_base_forward')[0]!;
    const args = unetArgs(c);
    const base = (await unet.forward(args)).sample;
    const off = (await model.forward({ ...args, applyControl: false })).sample;
    assertClose(off, base, 2e-4, 'applyControl:false vs plain UNet');
    let d = 0;
    for (let i = 0; i < base.data.length; i++) d = Math.max(d, Math.abs(base.data[i]! - off.data[i]!));
    assert.ok(d > 5e-6, `expected the 1e-6 vs 1e-5 eps difference to show, got ${d}`);
  });
});

test('controlnet_cond_embedding equals diffusers (the raw module)', async () => {
  const c = byKind('controlnet_cond_embedding')[0]!;
  const cond = input(c, 'controlnet_cond') as Tensor<'float32'>;
  const [, ch, h, w] = cond.dims as [number, number, number, number];
  const first = { data: cond.data.subarray(0, ch * h * w), dims: [1, ch, h, w] };
  const module = adapter.net.controlnet_cond_embedding;
  const op = GraphBuilder.create(adapter.source.bindStrict(adapter.net.parameters()));
  const x = op.input('cond', OnnxDataType.FLOAT, [1, ch, h, w]);
  op.output(module.build(op, x), 'out');
  const session = await ModelSession.create(op.toModel('controlnet_cond_embedding'));
  try {
    const out = await session.run({ cond: first });
    assertClose(out['out']!, ref.read(c.outputs['out']!), tolerance(c), c.name);
  } finally {
    await session.release();
  }
});

describe('GroupNorm quirk Q2: from_unet and a fused folder build different group counts', () => {
  for (const ratio of ['0.25', '0.5']) {
    test(`size_ratio ${ratio}`, async () => {
      const quirkAdapter = await ControlNetXSAdapter.fromPretrained(`${D}/controlnet_quirk_size_ratio_${ratio}`);
      const fromUnetCase = cases.find((c) => c.name === `quirk_size_ratio_${ratio}_from_unet`)!;
      const fromConfigCase = cases.find((c) => c.name === `quirk_size_ratio_${ratio}_from_config`)!;
      const viaUnet = await UNetControlNetXSModel.fromUnet(unet, quirkAdapter);
      const config = fusedConfig(unet.config, quirkAdapter.config);
      const g = config.ctrlMaxNormNumGroups;
      const viaConfig = UNetControlNetXSModel.fromSource(config, fuseWeights(unet.source, quirkAdapter.source), {
        down: config.downBlockTypes.map(() => g),
        mid: g,
      });
      // the group counts diffusers reported for each path
      const groupsOf = (m: UNetControlNetXSModel, path: string): number => {
        let node: unknown = m.net;
        for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
        return (node as { numGroups: number }).numGroups;
      };
      for (const [path, want] of Object.entries(fromUnetCase.groupnorm_num_groups_that_differ!)) {
        assert.equal(groupsOf(viaUnet, path), want.from_unet, `${path} via from_unet`);
        assert.equal(groupsOf(viaConfig, path), want.from_config, `${path} via config`);
      }
      assertClose((await viaUnet.forward(cnxsArgs(fromUnetCase))).sample, ref.read(fromUnetCase.outputs['sample']!), 1e-4, fromUnetCase.name);
      assertClose((await viaConfig.forward(cnxsArgs(fromConfigCase))).sample, ref.read(fromConfigCase.outputs['sample']!), 1e-4, fromConfigCase.name);
      await Promise.all([viaUnet.release(), viaConfig.release()]);
    });
  }
});

test('an fp16 checkpoint stays fp16 on disk, is cast in-graph, and gives float32 outputs near the fp32 ones', async () => {
  const u16 = await UNet2DConditionModel.fromPretrained(`${D}/unet`, { variant: 'fp16' });
  const a16 = await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`, { variant: 'fp16' });
  const m16 = await UNetControlNetXSModel.fromUnet(u16, a16);
  const onnx = m16.toOnnx();
  const init = onnx.graph.initializers.find((t) => t.name === 'base_conv_in.weight')!;
  assert.equal(init.dataType, OnnxDataType.FLOAT16);
  assert.ok(init.external && init.external.location.endsWith('diffusion_pytorch_model.fp16.safetensors'));
  const c = byKind('unet_cnxs_forward')[0]!;
  const { sample } = await m16.forward(cnxsArgs(c));
  assert.equal(sample.dtype, 'float32');
  // fp16 weight rounding (2^-11 relative) through ~60 layers: stays within a few 1e-2 of fp32.
  assertClose(sample, ref.read(c.outputs['sample']!), 5e-2, 'fp16 weights vs fp32 reference');
  await m16.release();
});

test('SDXL: text_time addition embedding, learned control time embedding, 2-layer transformers (first UNet call of pipeline case A)', async () => {
  const X = fixture('tiny-sdxl-cnxs');
  const pipe = loadSafetensorsSync(`${X}/pipeline/tensors.safetensors`);
  const k = (s: string) => pipe.read(`A_default_latents.${s}`);
  const xlUnet = await UNet2DConditionModel.fromPretrained(`${X}/unet`);
  const xl = await UNetControlNetXSModel.fromUnet(xlUnet, await ControlNetXSAdapter.fromPretrained(`${X}/controlnet`));
  const cond = k('control_image') as Tensor<'float32'>; // [1,3,64,64], duplicated for CFG
  const cond2 = new Float32Array(cond.data.length * 2);
  cond2.set(cond.data);
  cond2.set(cond.data, cond.data.length);
  const { sample } = await xl.forward({
    sample: k('unet_step0.sample'),
    timestep: 751,
    encoderHiddenStates: k('unet_step0.encoder_hidden_states'),
    controlnetCond: { data: cond2, dims: [2, ...cond.dims.slice(1)] },
    addedCondKwargs: { textEmbeds: k('unet_step0.added_cond.text_embeds'), timeIds: k('unet_step0.added_cond.time_ids') },
  });
  assertClose(sample, k('unet_step0.noise_pred_raw'), 1e-4, 'SDXL unet step 0');
  await assert.rejects(
    xl.forward({ sample: k('unet_step0.sample'), timestep: 751, encoderHiddenStates: k('unet_step0.encoder_hidden_states'), controlnetCond: { data: cond2, dims: [2, 3, 64, 64] } }),
    /addedCondKwargs/,
  );
  await xl.release();
});
