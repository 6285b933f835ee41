/** Graph structure, without running anything: names, external data, the control/base branches. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OPSET } from '../src/graph/builder.js';
import { OnnxDataType, type GraphProto, type NodeProto } from '../src/graph/onnx-proto.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { fixture } from './helpers.js';

const D = fixture('tiny-sd-cnxs');

/** Nodes of a graph (recursively) split into those inside `If` then-branches and all others. */
function partition(g: GraphProto, insideThen = false, out: { then: NodeProto[]; other: NodeProto[] } = { then: [], other: [] }) {
  for (const n of g.nodes) {
    (insideThen ? out.then : out.other).push(n);
    if (n.opType === 'If') {
      partition((n.attributes!['then_branch'] as { graph: GraphProto }).graph, true, out);
      partition((n.attributes!['else_branch'] as { graph: GraphProto }).graph, insideThen, out);
    }
  }
  return out;
}

test('the fused graph: base UNet in the main graph, every control-model node behind an If on apply_control', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
  const model = await UNetControlNetXSModel.fromUnet(unet, await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`));
  const onnx = model.toOnnx();
  assert.deepEqual(onnx.opsets.find((o) => o.domain === '')!.version, OPSET);
  assert.deepEqual(onnx.graph.inputs.map((i) => i.name), ['sample', 'timestep', 'encoder_hidden_states', 'controlnet_cond', 'conditioning_scale', 'apply_control']);
  assert.deepEqual(onnx.graph.inputs.find((i) => i.name === 'sample')!.type.shape, ['batch', 4, 'height', 'width']);
  const ifs = onnx.graph.nodes.filter((n) => n.opType === 'If');
  assert.ok(ifs.length > 10 && ifs.every((n) => n.inputs[0] === 'apply_control'), 'one If per exchange point, all on apply_control');
  const { then: gated, other } = partition(onnx.graph);
  const isCtrl = (n: NodeProto) => /(^|\.)ctrl_|controlnet_cond_embedding|control_to_base|base_to_ctrl|ctrl_to_base/.test(n.name);
  assert.ok(gated.some(isCtrl), 'control work exists');
  // weight preparation (a Linear's transpose, a GroupNorm affine's reshape, an fp16 cast) is constant-folded when the session is created
  const isWeightPrep = (n: NodeProto) => /\.(weight|bias)\/(Transpose|Cast|Reshape)_\d+$/.test(n.name);
  const computed = other.filter((n) => !isWeightPrep(n));
  assert.deepEqual(computed.filter(isCtrl).map((n) => n.name), [], 'no control-model node may run when control is off');
  assert.ok(!computed.some((n) => n.inputs.includes('controlnet_cond') || n.inputs.includes('conditioning_scale')));
  // node names carry the module path; base subblocks are in the main graph
  assert.ok(onnx.graph.nodes.some((n) => n.name.startsWith('down_blocks.0.base_resnets.0.conv1/Conv')));
  assert.ok(gated.some((n) => n.name.startsWith('mid_block.ctrl_midblock.attentions.0.transformer_blocks.0.attn1/MultiHeadAttention')));
});

test('weights are external data pointing into the safetensors files; Linear weights are read in place or transposed once', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
  const onnx = unet.toOnnx();
  const weights = onnx.graph.initializers.filter((t) => t.external);
  assert.equal(weights.length, unet.weights.size);
  for (const w of weights) {
    const ref = unet.weights.get(w.name);
    assert.equal(w.dataType, OnnxDataType.FLOAT);
    assert.equal('/' + w.external!.location, ref.file.realPath);
    assert.equal(w.external!.offset, ref.info.fileOffset);
    assert.equal(w.external!.length, ref.info.byteLength);
    assert.equal(w.raw, undefined, `${w.name} must not be copied into the model`);
  }
  // default: FusedMatMul(transB) on the checkpoint's [out, in] weight, no transposed copy
  const linears = [...unet.net.parameters()].filter((p) => p.shape.length === 2 && p.key.endsWith('.weight')).map((p) => p.key);
  const fused = onnx.graph.nodes.filter((n) => n.opType === 'FusedMatMul');
  assert.deepEqual(new Set(fused.map((n) => n.inputs[1])), new Set(linears), 'every Linear reads its weight in place');
  assert.equal(onnx.graph.nodes.filter((n) => n.opType === 'Transpose' && n.inputs[0]!.endsWith('.weight')).length, 0);
  // 'plain': one transpose per weight, in the root graph, shared by every use
  const plain = UNet2DConditionModel.fromSource(unet.config, unet.source, { trace: { linear: 'plain' } }).toOnnx();
  const transposes = plain.graph.nodes.filter((n) => n.opType === 'Transpose' && n.inputs[0]!.endsWith('.weight'));
  assert.equal(new Set(transposes.map((n) => n.inputs[0])).size, transposes.length);
  assert.equal(transposes.length, linears.length);
});
