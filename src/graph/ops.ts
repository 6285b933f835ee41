/**
 * The typed op layer: one method per ONNX op type this project emits, over one pinned opset
 * (default domain 21, com.microsoft 1). A misspelt op, a missing input or a wrong attribute fails
 * when TypeScript compiles, not when onnxruntime loads the model.
 *
 * Conventions (onnxscript's): a method is the op type in lowerCamelCase (`InstanceNormalization` →
 * `instanceNormalization`); inputs are positional in schema order, an optional one is `Value | null`
 * (a trailing null is left out of the node, as ONNX allows); attributes come last in an options
 * object with the schema's names. Ints are numbers, int lists arrays, booleans `0 | 1`, floats
 * numbers (tagged FLOAT here, so 1.0 never encodes as INT), graphs `GraphProto`. Attributes are
 * written in the order each method lists them.
 *
 * The op type as a string exists only here: `GraphBuilder` implements `emitNode` (naming, scope,
 * storage) and nothing outside this class hierarchy can call it.
 */
import type { Value } from './builder.js';
import type { AttrValue, GraphProto, OnnxDataType } from './onnx-proto.js';

/** The pinned default-domain opset (GroupNormalization-21 has per-channel scale/bias; Gelu is standard since 20). */
export const OPSET = 21;
/** The contrib domain of onnxruntime (MultiHeadAttention, FusedMatMul). */
export const MS_DOMAIN = 'com.microsoft';
/** The com.microsoft contrib opset. */
export const MS_OPSET = 1;
/** Every opset a traced model imports. */
export const OPSETS: readonly { domain: string; version: number }[] = [
  { domain: '', version: OPSET },
  { domain: MS_DOMAIN, version: MS_OPSET },
];

/** Every op type the typed layer emits. */
export type OpType =
  | 'Add' | 'And' | 'ArgMax' | 'Cast' | 'Concat' | 'Conv' | 'ConvTranspose' | 'Cos' | 'Div' | 'Equal' | 'Expand' | 'FusedMatMul' | 'Gather'
  | 'GatherND' | 'Gelu' | 'Identity' | 'If' | 'InstanceNormalization' | 'LayerNormalization' | 'LessOrEqual'
  | 'MatMul' | 'Max' | 'MaxPool' | 'Mul' | 'MultiHeadAttention' | 'Pad' | 'Range' | 'ReduceL2' | 'Relu' | 'Reshape' | 'Resize' | 'Shape' | 'Sigmoid'
  | 'Sin' | 'Slice' | 'Softmax' | 'Softplus' | 'Split' | 'Sqrt' | 'Squeeze' | 'Sub' | 'Tanh' | 'Transpose' | 'Unsqueeze' | 'Where';

/** One node as the typed layer hands it to the graph. */
export interface NodeSpec {
  readonly opType: OpType;
  /** '' is the default ONNX domain. */
  readonly domain: '' | typeof MS_DOMAIN;
  readonly inputs: readonly (Value | null)[];
  /** Attributes to write, in order; none left undefined. */
  readonly attributes: Readonly<Record<string, AttrValue>>;
  readonly outputs: number;
  /** The output's value name (graph outputs, `If` branch results); default: the node name. */
  readonly outName?: string;
}

type Bit = 0 | 1;

export interface ConvAttrs {
  auto_pad?: 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';
  dilations?: readonly number[];
  group?: number;
  kernel_shape?: readonly number[];
  /** Begins of every spatial axis, then ends. */
  pads?: readonly number[];
  strides?: readonly number[];
}

export interface ConvTransposeAttrs {
  auto_pad?: 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';
  dilations?: readonly number[];
  group?: number;
  kernel_shape?: readonly number[];
  output_padding?: readonly number[];
  output_shape?: readonly number[];
  /** Begins of every spatial axis, then ends. */
  pads?: readonly number[];
  strides?: readonly number[];
}

export interface MaxPoolAttrs {
  auto_pad?: 'NOTSET' | 'SAME_UPPER' | 'SAME_LOWER' | 'VALID';
  ceil_mode?: Bit;
  dilations?: readonly number[];
  kernel_shape: readonly number[];
  /** Begins of every spatial axis, then ends. */
  pads?: readonly number[];
  storage_order?: Bit;
  strides?: readonly number[];
}

export interface ResizeAttrs {
  mode?: 'nearest' | 'linear' | 'cubic';
  coordinate_transformation_mode?: 'half_pixel' | 'half_pixel_symmetric' | 'pytorch_half_pixel' | 'align_corners' | 'asymmetric' | 'tf_crop_and_resize';
  nearest_mode?: 'round_prefer_floor' | 'round_prefer_ceil' | 'floor' | 'ceil';
  antialias?: Bit;
  axes?: readonly number[];
  cubic_coeff_a?: number;
  exclude_outside?: Bit;
  extrapolation_value?: number;
  keep_aspect_ratio_policy?: 'stretch' | 'not_larger' | 'not_smaller';
}

export interface ArgMaxAttrs {
  axis?: number;
  keepdims?: Bit;
  select_last_index?: Bit;
}

export interface LayerNormalizationAttrs {
  axis?: number;
  epsilon?: number;
  stash_type?: number;
}

/** com.microsoft FusedMatMul: alpha · op(A) · op(B). */
export interface FusedMatMulAttrs {
  transA?: Bit;
  transB?: Bit;
  alpha?: number;
  transBatchA?: Bit;
  transBatchB?: Bit;
}

/** com.microsoft MultiHeadAttention. */
export interface MultiHeadAttentionAttrs {
  num_heads: number;
  /** Default 1/√head_size. */
  scale?: number;
  mask_filter_value?: number;
  unidirectional?: Bit;
}

/** `undefined` stays undefined (the attribute is left out); a number becomes a FLOAT attribute. */
function float(v: number | undefined): AttrValue | undefined {
  return v === undefined ? undefined : { float: v };
}

export abstract class Ops {
  /** Append one node to the graph under construction and return its outputs. */
  protected abstract emitNode(node: NodeSpec): Value[];

  private node(
    opType: OpType,
    inputs: readonly (Value | null)[],
    attrs: Readonly<Record<string, AttrValue | undefined>> = {},
    more: { domain?: '' | typeof MS_DOMAIN; outputs?: number; outName?: string } = {},
  ): Value[] {
    const attributes: Record<string, AttrValue> = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) attributes[k] = v;
    let n = inputs.length;
    while (n > 0 && inputs[n - 1] === null) n--;
    const spec: NodeSpec = { opType, domain: more.domain ?? '', inputs: inputs.slice(0, n), attributes, outputs: more.outputs ?? 1 };
    return this.emitNode(more.outName === undefined ? spec : { ...spec, outName: more.outName });
  }

  private node1(opType: OpType, inputs: readonly (Value | null)[], attrs?: Readonly<Record<string, AttrValue | undefined>>): Value {
    return this.node(opType, inputs, attrs)[0]!;
  }

  // ---- element-wise ----------------------------------------------------------------------

  add(a: Value, b: Value): Value {
    return this.node1('Add', [a, b]);
  }

  sub(a: Value, b: Value): Value {
    return this.node1('Sub', [a, b]);
  }

  mul(a: Value, b: Value): Value {
    return this.node1('Mul', [a, b]);
  }

  div(a: Value, b: Value): Value {
    return this.node1('Div', [a, b]);
  }

  /** Element-wise maximum of its inputs, broadcast (variadic in the schema; two are all this project needs). */
  max(a: Value, b: Value): Value {
    return this.node1('Max', [a, b]);
  }

  and(a: Value, b: Value): Value {
    return this.node1('And', [a, b]);
  }

  equal(a: Value, b: Value): Value {
    return this.node1('Equal', [a, b]);
  }

  lessOrEqual(a: Value, b: Value): Value {
    return this.node1('LessOrEqual', [a, b]);
  }

  where(condition: Value, x: Value, y: Value): Value {
    return this.node1('Where', [condition, x, y]);
  }

  sin(x: Value): Value {
    return this.node1('Sin', [x]);
  }

  cos(x: Value): Value {
    return this.node1('Cos', [x]);
  }

  sigmoid(x: Value): Value {
    return this.node1('Sigmoid', [x]);
  }

  sqrt(x: Value): Value {
    return this.node1('Sqrt', [x]);
  }

  relu(x: Value): Value {
    return this.node1('Relu', [x]);
  }

  tanh(x: Value): Value {
    return this.node1('Tanh', [x]);
  }

  softplus(x: Value): Value {
    return this.node1('Softplus', [x]);
  }

  gelu(x: Value, attrs: { approximate?: 'none' | 'tanh' } = {}): Value {
    return this.node1('Gelu', [x], { approximate: attrs.approximate });
  }

  cast(x: Value, attrs: { to: OnnxDataType; saturate?: Bit }): Value {
    return this.node1('Cast', [x], { to: attrs.to, saturate: attrs.saturate });
  }

  /** `outName` names the output value (a graph output, an `If` branch result). */
  identity(x: Value, outName?: string): Value {
    return this.node('Identity', [x], {}, outName === undefined ? {} : { outName })[0]!;
  }

  // ---- shapes and layout -----------------------------------------------------------------

  shape(data: Value, attrs: { start?: number; end?: number } = {}): Value {
    return this.node1('Shape', [data], { start: attrs.start, end: attrs.end });
  }

  reshape(data: Value, shape: Value, attrs: { allowzero?: Bit } = {}): Value {
    return this.node1('Reshape', [data, shape], { allowzero: attrs.allowzero });
  }

  transpose(data: Value, attrs: { perm?: readonly number[] } = {}): Value {
    return this.node1('Transpose', [data], { perm: attrs.perm });
  }

  unsqueeze(data: Value, axes: Value): Value {
    return this.node1('Unsqueeze', [data, axes]);
  }

  squeeze(data: Value, axes: Value | null = null): Value {
    return this.node1('Squeeze', [data, axes]);
  }

  /** Broadcast `input` to `shape` (an int64 vector), numpy-style: a dim of 1 stretches. */
  expand(input: Value, shape: Value): Value {
    return this.node1('Expand', [input, shape]);
  }

  concat(inputs: readonly Value[], attrs: { axis: number }): Value {
    return this.node1('Concat', inputs, { axis: attrs.axis });
  }

  /** Split into `num_outputs` equal parts (the `split` sizes input is not needed here, so not offered). */
  split(input: Value, attrs: { axis?: number; num_outputs: number }): Value[] {
    return this.node('Split', [input], { axis: attrs.axis, num_outputs: attrs.num_outputs }, { outputs: attrs.num_outputs });
  }

  slice(data: Value, starts: Value, ends: Value, axes: Value | null = null, steps: Value | null = null): Value {
    return this.node1('Slice', [data, starts, ends, axes, steps]);
  }

  gather(data: Value, indices: Value, attrs: { axis?: number } = {}): Value {
    return this.node1('Gather', [data, indices], { axis: attrs.axis });
  }

  gatherND(data: Value, indices: Value, attrs: { batch_dims?: number } = {}): Value {
    return this.node1('GatherND', [data, indices], { batch_dims: attrs.batch_dims });
  }

  range(start: Value, limit: Value, delta: Value): Value {
    return this.node1('Range', [start, limit, delta]);
  }

  argMax(data: Value, attrs: ArgMaxAttrs = {}): Value {
    return this.node1('ArgMax', [data], { axis: attrs.axis, keepdims: attrs.keepdims, select_last_index: attrs.select_last_index });
  }

  pad(
    data: Value,
    pads: Value,
    constantValue: Value | null = null,
    axes: Value | null = null,
    attrs: { mode?: 'constant' | 'reflect' | 'edge' | 'wrap' } = {},
  ): Value {
    return this.node1('Pad', [data, pads, constantValue, axes], { mode: attrs.mode });
  }

  resize(x: Value, roi: Value | null, scales: Value | null, sizes: Value | null, attrs: ResizeAttrs = {}): Value {
    return this.node1('Resize', [x, roi, scales, sizes], {
      mode: attrs.mode,
      coordinate_transformation_mode: attrs.coordinate_transformation_mode,
      nearest_mode: attrs.nearest_mode,
      antialias: attrs.antialias,
      axes: attrs.axes,
      cubic_coeff_a: float(attrs.cubic_coeff_a),
      exclude_outside: attrs.exclude_outside,
      extrapolation_value: float(attrs.extrapolation_value),
      keep_aspect_ratio_policy: attrs.keep_aspect_ratio_policy,
    });
  }

  // ---- compute ---------------------------------------------------------------------------

  /** √(Σ x²) over `axes` (an int64 vector; null: all axes, unless `noop_with_empty_axes`). */
  reduceL2(data: Value, axes: Value | null = null, attrs: { keepdims?: Bit; noop_with_empty_axes?: Bit } = {}): Value {
    return this.node1('ReduceL2', [data, axes], { keepdims: attrs.keepdims, noop_with_empty_axes: attrs.noop_with_empty_axes });
  }

  matMul(a: Value, b: Value): Value {
    return this.node1('MatMul', [a, b]);
  }

  fusedMatMul(a: Value, b: Value, attrs: FusedMatMulAttrs = {}): Value {
    const { transA, transB, alpha, transBatchA, transBatchB } = attrs;
    return this.node('FusedMatMul', [a, b], { transA, transB, alpha: float(alpha), transBatchA, transBatchB }, { domain: MS_DOMAIN })[0]!;
  }

  conv(x: Value, w: Value, b: Value | null = null, attrs: ConvAttrs = {}): Value {
    return this.node1('Conv', [x, w, b], {
      auto_pad: attrs.auto_pad,
      dilations: attrs.dilations,
      group: attrs.group,
      kernel_shape: attrs.kernel_shape,
      pads: attrs.pads,
      strides: attrs.strides,
    });
  }

  /** The weight is [Cin, Cout / group, kH, kW] (PyTorch's ConvTranspose2d layout). */
  convTranspose(x: Value, w: Value, b: Value | null = null, attrs: ConvTransposeAttrs = {}): Value {
    return this.node1('ConvTranspose', [x, w, b], {
      auto_pad: attrs.auto_pad,
      dilations: attrs.dilations,
      group: attrs.group,
      kernel_shape: attrs.kernel_shape,
      output_padding: attrs.output_padding,
      output_shape: attrs.output_shape,
      pads: attrs.pads,
      strides: attrs.strides,
    });
  }

  /** Only the pooled values (the optional Indices output is not requested). */
  maxPool(x: Value, attrs: MaxPoolAttrs): Value {
    return this.node1('MaxPool', [x], {
      auto_pad: attrs.auto_pad,
      ceil_mode: attrs.ceil_mode,
      dilations: attrs.dilations,
      kernel_shape: attrs.kernel_shape,
      pads: attrs.pads,
      storage_order: attrs.storage_order,
      strides: attrs.strides,
    });
  }

  softmax(input: Value, attrs: { axis?: number } = {}): Value {
    return this.node1('Softmax', [input], { axis: attrs.axis });
  }

  instanceNormalization(input: Value, scale: Value, bias: Value, attrs: { epsilon?: number } = {}): Value {
    return this.node1('InstanceNormalization', [input, scale, bias], { epsilon: float(attrs.epsilon) });
  }

  layerNormalization(x: Value, scale: Value, bias: Value | null = null, attrs: LayerNormalizationAttrs = {}): Value {
    return this.node1('LayerNormalization', [x, scale, bias], { axis: attrs.axis, epsilon: float(attrs.epsilon), stash_type: attrs.stash_type });
  }

  /**
   * com.microsoft MultiHeadAttention: query [B, S, H·Dh], key/value [B, L, H·Dh] → [B, S, H·Dh].
   * `attentionBias` [B|1, H|1, S, L] is added to the scores. (The decoding inputs after it — past
   * key/value, cache indirection — are not used here, so not offered.)
   */
  multiHeadAttention(
    query: Value,
    key: Value | null,
    value: Value | null,
    bias: Value | null,
    keyPaddingMask: Value | null,
    attentionBias: Value | null,
    attrs: MultiHeadAttentionAttrs,
  ): Value {
    const { num_heads, scale, mask_filter_value, unidirectional } = attrs;
    return this.node(
      'MultiHeadAttention',
      [query, key, value, bias, keyPaddingMask, attentionBias],
      { num_heads, scale: float(scale), mask_filter_value: float(mask_filter_value), unidirectional },
      { domain: MS_DOMAIN },
    )[0]!;
  }

  /** ONNX If: the outputs of whichever branch `cond` selects (both branches have the same output count). */
  if(cond: Value, attrs: { then_branch: GraphProto; else_branch: GraphProto }): Value[] {
    const outputs = attrs.then_branch.outputs.length;
    return this.node('If', [cond], { then_branch: { graph: attrs.then_branch }, else_branch: { graph: attrs.else_branch } }, { outputs });
  }
}
