/** Graph structure, without running anything: names, external data, the control/base branches. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GraphBuilder, OPSET, type Value } from '../src/graph/builder.js';
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

test('the typed op layer writes each op with its schema: domain, attribute kinds, optional inputs, names', () => {
  const g = GraphBuilder.create(null);
  const x = g.input('x', OnnxDataType.FLOAT, [1, 4, 2, 2]);
  const b = g.at('block');
  const w = b.constant(new Float32Array(16), [4, 4, 1, 1], 'w');
  const y = b.conv(x, w, null, { kernel_shape: [1, 1], pads: [0, 0, 0, 0], strides: [1, 1] });
  const tokens = b.transpose(b.reshape(y, b.ints([0, 4, -1])), { perm: [0, 2, 1] }); // [1, 4, 4]
  const lin = b.fusedMatMul(tokens, b.constant(new Float32Array(16), [4, 4], 'lin'), { transB: 1, alpha: 1 });
  const normed = b.layerNormalization(lin, b.constant(new Float32Array(4), [4], 'g'), null, { axis: -1, epsilon: 1e-5 });
  const attended = b.multiHeadAttention(normed, normed, normed, null, null, null, { num_heads: 2, scale: 0.5 });
  const [h1, h2] = b.split(attended, { axis: -1, num_outputs: 2 });
  const scales = b.constant(Float32Array.of(1, 1, 2, 2), [4], 'scales');
  g.output(b.mul(h1!, h2!), 'out');
  g.output(b.resize(x, null, scales, null, { mode: 'nearest' }), 'up');
  const m = g.toModel('typed');
  assert.deepEqual(m.opsets, [{ domain: '', version: OPSET }, { domain: 'com.microsoft', version: 1 }]);
  const node = (opType: string) => m.graph.nodes.find((n) => n.opType === opType)!;

  const conv = node('Conv');
  assert.match(conv.name, /^block\/Conv_\d+$/, 'node names carry the module path');
  assert.equal(conv.domain, undefined);
  assert.deepEqual(conv.inputs, ['x', w.name], 'a trailing absent optional input is left out');
  assert.deepEqual(conv.attributes, { kernel_shape: [1, 1], pads: [0, 0, 0, 0], strides: [1, 1] });
  assert.equal(node('Reshape').attributes, undefined, 'no attributes written when none are given');
  // floats are FLOAT attributes even when integral; contrib ops carry their domain
  assert.equal(node('FusedMatMul').domain, 'com.microsoft');
  assert.deepEqual(node('FusedMatMul').attributes, { transB: 1, alpha: { float: 1 } });
  assert.deepEqual(node('LayerNormalization').attributes, { axis: -1, epsilon: { float: 1e-5 } });
  assert.equal(node('LayerNormalization').inputs.length, 2);
  const mha = node('MultiHeadAttention');
  assert.equal(mha.domain, 'com.microsoft');
  assert.deepEqual(mha.inputs, [normed.name, normed.name, normed.name]);
  assert.deepEqual(mha.attributes, { num_heads: 2, scale: { float: 0.5 } });
  const split = node('Split');
  assert.deepEqual(split.outputs, [`${split.name}:0`, `${split.name}:1`]);
  assert.deepEqual(split.attributes, { axis: -1, num_outputs: 2 });
  assert.deepEqual(node('Resize').inputs, ['x', '', scales.name], 'an absent optional input before a given one is an empty name');
  assert.deepEqual(node('Resize').attributes, { mode: 'nearest' });
  assert.deepEqual(m.graph.outputs.map((o) => o.name), ['out', 'up']);
});

// Compile-time checks only (tsc verifies every @ts-expect-error; never run): ops are typed, the string form is gone.
function typedOpsRejectAtCompileTime(b: GraphBuilder, x: Value): void {
  // @ts-expect-error no untyped string form outside the typed layer
  b.op('Add', [x, x]);
  // @ts-expect-error the raw emission is internal to the typed layer
  b.emitNode({ opType: 'Add', domain: '', inputs: [x, x], attributes: {}, outputs: 1 });
  // @ts-expect-error `stride` is not a Conv attribute (`strides` is)
  b.conv(x, x, null, { stride: [2, 2] });
  // @ts-expect-error MultiHeadAttention needs num_heads
  b.multiHeadAttention(x, x, x, null, null, null, { scale: 1 });
  // @ts-expect-error Gelu's approximate is 'none' or 'tanh'
  b.gelu(x, { approximate: 'erf' });
  // @ts-expect-error Concat needs its axis
  b.concat([x, x]);
}
void typedOpsRejectAtCompileTime;

test('model code emits nodes only through the typed op layer (no op type strings outside src/graph/ops.ts)', () => {
  const src = fileURLToPath(new URL('../src', import.meta.url));
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length > 20);
  const raw = [/\.op\(\s*['"`]/, /\bopN\(/, /\.emitNode\(/, /\bopType:\s*['"`]/];
  const offenders = files
    .filter((f) => f !== join('graph', 'ops.ts'))
    .flatMap((f) => readFileSync(join(src, f), 'utf8').split('\n').map((line, i) => ({ where: `src/${f}:${i + 1}`, line })))
    .filter(({ line }) => raw.some((r) => r.test(line)))
    .map(({ where, line }) => `${where}: ${line.trim()}`);
  assert.deepEqual(offenders, []);
});
