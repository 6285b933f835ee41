/**
 * The graph builder: model code calls typed ops on it (`ops.ts`, which it extends) and gets
 * symbolic values back; nothing runs until the finished ONNX graph reaches onnxruntime. Node names
 * carry the module path (`down_blocks.0.resnets.1.conv1/Conv`), so an ORT profile maps back to the source.
 *
 * Parameters become initializers of the ROOT graph whose bytes stay in the safetensors files
 * (external data). Weight preparation (fp16→fp32 casts, reshapes, transposes) is emitted once in the
 * root graph, so subgraphs (the `If` branches of a ControlNet-XS model) share one copy.
 */
import { OnnxDataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from './onnx-proto.js';
import { OPSETS, Ops, type NodeSpec } from './ops.js';
import { ConfigError, WeightLoadError } from '../errors.js';
import type { BoundWeights, ParameterSpec, WeightRef } from '../weights/source.js';
import { DTYPE_BYTES as ELEMENT_BYTES, classifyStrided, product, stridedExtent } from '../weights/view.js';
import { float16Array } from '../util/float16.js';

export { MS_OPSET, OPSET } from './ops.js';
export const IR_VERSION = 10;

/** A symbolic tensor: the name of a value in the graph under construction. */
export class Value {
  constructor(readonly name: string) {}
}

export type Dim = number | string;

/** The float type a graph computes in (diffusers' `torch_dtype`); graph inputs and outputs stay float32. */
export type ComputeDtype = 'float32' | 'float16';

/**
 * Which part of the plain attention core a float16 graph computes in float32, as diffusers'
 * `Attention(upcast_attention=…, upcast_softmax=…)` does: 'scores' = QKᵀ and the softmax
 * (`upcast_attention`), 'softmax' = the softmax only (`upcast_softmax`).
 */
export type AttentionUpcast = 'scores' | 'softmax';

/** Choices that change the emitted graph but not its meaning. */
export interface TraceOptions {
  /**
   * 'fused': com.microsoft MultiHeadAttention (onnxruntime CPU/CUDA; no score matrix in memory).
   * 'plain': MatMul/Softmax/MatMul from standard ops, for execution providers without it.
   */
  attention: 'fused' | 'plain';
  /** 'fused': com.microsoft FusedMatMul on the untransposed weight; 'plain': MatMul on a transposed copy. */
  linear: 'fused' | 'plain';
  /**
   * diffusers' `fuse_qkv_projections`: each UNet attention computes q, k, v (self-attention) or k, v
   * (cross-attention) with one matmul over its projections' weights concatenated in the root graph
   * (which onnxruntime folds into one new initializer at load: a copy of those weights). Absent: separate.
   */
  fuseQkv?: boolean;
  /**
   * The compute dtype. Absent or 'float32': every float is float32 and no Cast is emitted (graphs
   * are byte-identical to those traced before float16 existed). 'float16': weights are cast once to
   * float16 in the root graph (none for float16 checkpoints), constants are float16, float inputs are
   * cast to float16 after the graph input and outputs back to float32 before the graph output.
   */
  dtype?: ComputeDtype;
  /** float16 graphs only: the plain attention core's float32 part (absent: none). */
  attentionUpcast?: AttentionUpcast;
  /**
   * float16 graphs only: the VAE decoder's up blocks, final norm and conv_out compute in float32, as
   * after diffusers' SDXL `upcast_vae()` with torch 2 attention (post_quant_conv, conv_in and the mid
   * block stay float16).
   */
  upcastVaeDecoder?: boolean;
  /**
   * How a tensor is cut into parts along an axis (`GraphBuilder.chunk`: GEGLU's halves, fused QKV, SwiGLU).
   * Absent or 'split': one Split node. 'slice': one Slice per part, for onnxruntime-web's WebGPU (JSEP):
   * its Split kernel fixes the part sizes when the session opens, from the statically inferred shapes and
   * with the axis as written, so a negative axis, or an axis whose size inference left symbolic, gives
   * parts of size 0 (1.30: the UNet's GEGLU `Split(axis=-1)` of [B, L, 2·inner] gave [B, L, 0] halves,
   * and the ff.net.2 MatMul refused them).
   */
  split?: 'split' | 'slice';
}

export const DEFAULT_TRACE_OPTIONS: TraceOptions = Object.freeze({ attention: 'fused', linear: 'fused' });

/**
 * The trace defaults for a list of execution providers (the first one decides). WebGPU gets standard
 * ops only: onnxruntime-node 1.30's WebGPU MultiHeadAttention returned wrong values once a sequence
 * is longer than 16 (max error 0.05–0.35, measured on Mesa's llvmpipe Vulkan), and it has no
 * FusedMatMul kernel (every Linear would run on the CPU, with copies both ways); with
 * MatMul/Softmax/MatMul every model matched its CPU result within 2.5e-5 there. Parts are Slices
 * (`split: 'slice'`): onnxruntime-web's WebGPU Split gives empty parts (see `TraceOptions.split`);
 * the name 'webgpu' is the same in Node and in the browser, and on Node's WebGPU the slices gave the
 * fused UNet's Split output bit for bit (llvmpipe).
 */
export function traceDefaultsFor(executionProviders: readonly string[]): TraceOptions {
  return executionProviders[0] === 'webgpu' ? { attention: 'plain', linear: 'plain', split: 'slice' } : DEFAULT_TRACE_OPTIONS;
}

/**
 * One LoRA branch on a Linear or Conv2d layer: `up(down(x)) · scaling · s`, where s is the graph input
 * `lora_scale_<adapter>` (a scalar), so adapter weights and the LoRA scale change without a new trace.
 * `down`/`up` point into the LoRA file (external data, like every parameter).
 */
export interface LoraBranch {
  /** Index of the adapter's scale input. */
  readonly adapter: number;
  /** [r, in] or [r, in, kh, kw] */
  readonly down: WeightRef;
  /** [out, r] or [out, r, 1, 1] */
  readonly up: WeightRef;
  /** alpha / rank, folded into the graph as a constant. */
  readonly scaling: number;
}

/** A LoRA merged into a weight (diffusers' fuse_lora): W + factor · up·down, computed in the root graph. */
export interface LoraMerge {
  readonly down: WeightRef;
  readonly up: WeightRef;
  /** alpha / rank × adapter weight × LoRA scale, fixed when fused. */
  readonly factor: number;
}

/**
 * The LoRA of one trace: branches by module path (`adapters` scale inputs are declared), and merges by
 * weight key (`<module>.weight`).
 */
export interface LoraTrace {
  readonly adapters: number;
  readonly branches: ReadonlyMap<string, readonly LoraBranch[]>;
  readonly merges?: ReadonlyMap<string, readonly LoraMerge[]>;
}

/** The LoRA scale input of adapter `i`. */
export function loraScaleInput(i: number): string {
  return `lora_scale_${i}`;
}

/** State shared by a root graph and its subgraphs: unique names and root-level initializers. */
class TraceContext {
  private counter = 0;
  readonly initializers: TensorProto[] = [];
  /** Weight-preparation nodes (casts, transposes), always placed in the root graph. */
  readonly rootNodes: NodeProto[] = [];
  readonly paramCache = new Map<string, Value>();
  /** Each parameter as stored (after its view and any fused LoRA), before the cast to a compute dtype. */
  readonly storedParams = new Map<string, { value: Value; dataType: OnnxDataType }>();
  /** The LoRA scale inputs, by adapter index (declared on the root graph). */
  readonly loraScales: Value[] = [];
  /** Module paths whose LoRA branches were emitted: every branch must be, or the trace fails. */
  readonly loraApplied = new Set<string>();
  constructor(
    readonly weights: BoundWeights | null,
    readonly options: TraceOptions,
    readonly lora: LoraTrace | null,
  ) {}

  fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }
}

const DTYPE_BYTES: Record<string, OnnxDataType> = {
  F32: OnnxDataType.FLOAT,
  F16: OnnxDataType.FLOAT16,
  BF16: OnnxDataType.BFLOAT16,
  F64: OnnxDataType.DOUBLE,
  I64: OnnxDataType.INT64,
};

export class GraphBuilder extends Ops {
  private readonly nodes: NodeProto[];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];

  private constructor(
    private readonly ctx: TraceContext,
    private readonly scope: string,
    private readonly isRoot: boolean,
    nodes?: NodeProto[],
    /** This view's float type: the graph's, or float32 inside an upcast region (`float32()`). */
    readonly dtype: ComputeDtype = ctx.options.dtype ?? 'float32',
  ) {
    super();
    this.nodes = nodes ?? [];
  }

  /** A new root graph. `weights` backs `param()`; pass null for graphs without parameters. */
  static create(weights: BoundWeights | null, options: Partial<TraceOptions> = {}, lora: LoraTrace | null = null): GraphBuilder {
    const root = new GraphBuilder(new TraceContext(weights, { ...DEFAULT_TRACE_OPTIONS, ...options }, lora), '', true);
    for (let i = 0; i < (lora?.adapters ?? 0); i++) root.ctx.loraScales.push(root.input(loraScaleInput(i), OnnxDataType.FLOAT, []));
    return root;
  }

  get options(): TraceOptions {
    return this.ctx.options;
  }

  /** A view of this graph whose node names start with `path` (a module path). */
  at(path: string): GraphBuilder {
    const view = new GraphBuilder(this.ctx, path, this.isRoot, this.nodes, this.dtype);
    return view;
  }

  // ---- compute dtype ---------------------------------------------------------------------

  /** Whether the graph computes in float16 (some regions may still be float32). */
  get halfPrecision(): boolean {
    return this.ctx.options.dtype === 'float16';
  }

  /** The ONNX element type of this view's floats. */
  get floatType(): OnnxDataType {
    return this.dtype === 'float16' ? OnnxDataType.FLOAT16 : OnnxDataType.FLOAT;
  }

  /**
   * A view of this graph (same scope, same nodes) that computes in float32: its constants and
   * parameters are float32. Values from outside enter through `toFloatType`, and leave through the
   * outer view's `toFloatType`.
   */
  float32(): GraphBuilder {
    return this.dtype === 'float32' ? this : new GraphBuilder(this.ctx, this.scope, this.isRoot, this.nodes, 'float32');
  }

  /**
   * `v` (a float of either precision) as this view's float type: a Cast in float16 graphs, `v` itself in
   * float32 graphs (no node, so those stay as they were).
   */
  toFloatType(v: Value): Value {
    return this.halfPrecision ? this.cast(v, { to: this.floatType }) : v;
  }

  // ---- graph interface -------------------------------------------------------------------

  /**
   * A graph input. In a float16 graph a float32 input comes back cast to float16, unless `keepFloat32`
   * (timesteps and SDXL's size ids, which diffusers embeds in float32 whatever the model's dtype).
   */
  input(name: string, elemType: OnnxDataType, shape: readonly Dim[], o: { keepFloat32?: boolean } = {}): Value {
    this.inputs.push({ name, type: { elemType, shape } });
    const v = new Value(name);
    return elemType === OnnxDataType.FLOAT && !o.keepFloat32 ? this.toFloatType(v) : v;
  }

  /** Expose `v` as a graph output called `name` (a float16 graph's floats cast back to float32 first). */
  output(v: Value, name: string, elemType: OnnxDataType = OnnxDataType.FLOAT, shape?: readonly Dim[]): void {
    const value = elemType === OnnxDataType.FLOAT && this.halfPrecision ? this.cast(v, { to: OnnxDataType.FLOAT }) : v;
    const out = this.identity(value, name);
    this.outputs.push({ name: out.name, type: shape ? { elemType, shape } : { elemType } });
  }

  /** Finish a root graph into a model. */
  toModel(name: string): ModelProto {
    if (!this.isRoot) throw new Error('toModel() on a subgraph');
    const targets = [...(this.ctx.lora?.branches.keys() ?? []), ...(this.ctx.lora?.merges?.keys() ?? [])];
    const skipped = targets.filter((path) => !this.ctx.loraApplied.has(path));
    if (skipped.length > 0) {
      // A layer computed some other way (fused QKV projections) would silently drop its LoRA.
      throw new ConfigError(`${name}: LoRA layers not applied in this graph: ${skipped.slice(0, 8).join(', ')}${skipped.length > 8 ? ', …' : ''}`);
    }
    const graph: GraphProto = {
      name,
      nodes: [...this.ctx.rootNodes, ...this.nodes],
      initializers: this.ctx.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
    };
    return {
      irVersion: IR_VERSION,
      opsets: OPSETS,
      producerName: 'controlnet-xs',
      graph,
    };
  }

  // ---- node emission ---------------------------------------------------------------------

  /** The typed ops' one way in: the node is named `<module path>/<OpType>_<n>`, its outputs after it. */
  protected override emitNode(spec: NodeSpec): Value[] {
    const { opType, outputs: n, outName } = spec;
    const nodeName = this.ctx.fresh(this.scope ? `${this.scope}/${opType}` : opType);
    const outputs = Array.from({ length: n }, (_, i) => outName ?? (n === 1 ? nodeName : `${nodeName}:${i}`));
    this.nodes.push({
      name: nodeName,
      opType,
      inputs: spec.inputs.map((v) => (v === null ? '' : v.name)),
      outputs,
      ...(spec.domain ? { domain: spec.domain } : {}),
      ...(Object.keys(spec.attributes).length > 0 ? { attributes: spec.attributes } : {}),
    });
    return outputs.map((o) => new Value(o));
  }

  /** A small constant (shape vectors, scalars, frequency tables), stored inline. */
  constant(data: Float32Array | BigInt64Array | Uint8Array, dims: readonly number[], hint = 'const'): Value {
    const name = this.ctx.fresh(this.scope ? `${this.scope}/${hint}` : hint);
    const dataType =
      data instanceof Float32Array ? OnnxDataType.FLOAT : data instanceof BigInt64Array ? OnnxDataType.INT64 : OnnxDataType.BOOL;
    const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.ctx.initializers.push({ name, dataType, dims, raw });
    return new Value(name);
  }

  ints(values: readonly number[]): Value {
    return this.constant(BigInt64Array.from(values.map((v) => BigInt(v))), [values.length], 'ints');
  }

  /** A scalar of this view's float type (float16 rounds it; finite values beyond ±65504 become ±Infinity). */
  scalar(v: number): Value {
    return this.floatConstant(Float32Array.of(v), [], 'scalar');
  }

  /**
   * A float constant of this view's float type (`constant` keeps float32, as Resize's `scales` must).
   */
  floatConstant(data: Float32Array, dims: readonly number[], hint = 'const'): Value {
    if (this.dtype === 'float32') return this.constant(data, dims, hint);
    const name = this.ctx.fresh(this.scope ? `${this.scope}/${hint}` : hint);
    const half = float16Array(data);
    this.ctx.initializers.push({ name, dataType: OnnxDataType.FLOAT16, dims, raw: new Uint8Array(half.buffer) });
    return new Value(name);
  }

  /**
   * `input` cut along `axis` into consecutive parts of `sizes` (equal, as torch's `chunk`): one Split,
   * or one Slice per part under `TraceOptions.split: 'slice'`. [..., Σsizes, ...] → n × [..., size_i, ...]
   */
  chunk(input: Value, o: { axis: number; sizes: readonly number[] }): Value[] {
    if (this.ctx.options.split !== 'slice') {
      if (o.sizes.some((s) => s !== o.sizes[0])) throw new ConfigError(`${this.scope}: chunk sizes must be equal, got [${o.sizes.join(', ')}]`);
      return this.split(input, { axis: o.axis, num_outputs: o.sizes.length });
    }
    const axes = this.ints([o.axis]);
    let start = 0;
    return o.sizes.map((size) => {
      const part = this.slice(input, this.ints([start]), this.ints([start + size]), axes);
      start += size;
      return part;
    });
  }

  /**
   * A module parameter as a value of this view's float type. The initializer is named by its
   * checkpoint key and points into the checkpoint file (the stored region its view reads, no more); a
   * view (a torch tensor strided over a storage, a transposed key) and the cast to the compute dtype
   * (none when the checkpoint stores it) are weight preparation in the root graph, folded once by
   * onnxruntime when the session opens.
   */
  param(p: ParameterSpec): Value {
    const key = this.cacheKey(p.key);
    const cached = this.ctx.paramCache.get(key);
    if (cached) return cached;
    const stored = this.storedParam(p);
    const v = stored.dataType === this.floatType ? stored.value : this.weightPrep(p).cast(stored.value, { to: this.floatType });
    this.ctx.paramCache.set(key, v);
    return v;
  }

  /** Parameter caches are per float type: a view computing in float32 inside a float16 graph has its own casts. */
  private cacheKey(key: string): string {
    return this.dtype === (this.ctx.options.dtype ?? 'float32') ? key : `${key}#${this.dtype}`;
  }

  /** The parameter's initializer (once per key) through its view; with fused LoRA the merged weight, in float32. */
  private storedParam(p: ParameterSpec): { value: Value; dataType: OnnxDataType } {
    const known = this.ctx.storedParams.get(p.key);
    if (known) return known;
    const weights = this.ctx.weights;
    if (weights === null) throw new Error(`graph has no weights, cannot read ${p.key}`);
    const ref = weights.get(p.key);
    const dataType = DTYPE_BYTES[ref.info.dtype];
    if (dataType === undefined) throw new Error(`${p.key}: dtype ${ref.info.dtype} cannot be a weight`);
    const prep = this.weightPrep(p);
    const stored = (dims: readonly number[], elemOffset: number): Value => {
      const eb = ELEMENT_BYTES[ref.info.dtype];
      const length = dims.reduce((a, d) => a * d, 1) * eb;
      if ((elemOffset * eb + length) > ref.info.byteLength) {
        throw new WeightLoadError(`${ref.file.path}: "${p.key}" reads past its stored region of ${ref.info.byteLength} bytes`);
      }
      const offset = ref.info.fileOffset + elemOffset * eb;
      this.ctx.initializers.push({ name: p.key, dataType, dims, external: { location: externalLocation(ref.file.realPath), offset, length } });
      return new Value(p.key);
    };
    let v: Value;
    const view = ref.view;
    if (view === undefined) {
      v = stored(ref.info.shape, 0);
    } else if (view.kind === 'transpose') {
      v = prep.transpose(stored(ref.info.shape, 0), { perm: view.perm }); // stored → the model's axis order
    } else {
      const layout = classifyStrided(view.shape, view.strides, view.offset);
      if (stridedExtent(view.shape, view.strides, view.offset) > product(ref.info.shape)) {
        throw new WeightLoadError(`${ref.file.path}: "${p.key}" strided view reads past its stored region of ${ref.info.byteLength} bytes`);
      }
      if (layout.kind === 'contiguous') v = stored(view.shape, layout.offset);
      else if (layout.kind === 'permuted') v = prep.transpose(stored(layout.storedShape, layout.offset), { perm: layout.perm });
      else v = this.gatherStrided(prep, stored(ref.info.shape, 0), p.key, view.shape, view.strides, view.offset);
    }
    let out = { value: v, dataType };
    if ((this.ctx.lora?.merges?.get(p.key)?.length ?? 0) > 0) {
      // fused LoRA is merged in float32 whatever the compute dtype (fp16/bf16 → float32 first)
      const w = dataType === OnnxDataType.FLOAT ? v : prep.cast(v, { to: OnnxDataType.FLOAT });
      out = { value: this.mergeLora(prep.float32(), p, w), dataType: OnnxDataType.FLOAT };
    }
    this.ctx.storedParams.set(p.key, out);
    return out;
  }

  /**
   * Fused LoRA: W + Σ factor · up·down as weight preparation in the root graph, which onnxruntime folds into
   * one initializer when the session opens (no cost per run). Conv: up [out, r, 1, 1] · down [r, in·kh·kw],
   * reshaped back to [out, in, kh, kw]. Every use of the weight (plain, transposed, concatenated for fused
   * QKV projections) reads the merged value.
   */
  private mergeLora(prep: GraphBuilder, p: ParameterSpec, w: Value): Value {
    const merges = this.ctx.lora?.merges?.get(p.key);
    if (merges === undefined || merges.length === 0) return w;
    let out = w;
    merges.forEach((m, i) => {
      const key = `lora_merge.${i}.${p.key}`;
      const up = this.loraWeight(`${key}.up`, m.up, OnnxDataType.FLOAT), down = this.loraWeight(`${key}.down`, m.down, OnnxDataType.FLOAT);
      const r = m.down.info.shape[0]!;
      const up2 = prep.reshape(up, this.constantRoot(BigInt64Array.of(BigInt(p.shape[0]!), BigInt(r)), [2], `${key}/up_shape`)); // [out, r]
      const down2 = prep.reshape(down, this.constantRoot(BigInt64Array.of(BigInt(r), -1n), [2], `${key}/down_shape`)); // [r, in·kh·kw]
      const delta = prep.reshape(prep.matMul(up2, down2), this.constantRoot(BigInt64Array.from(p.shape.map((d) => BigInt(d))), [p.shape.length], `${key}/shape`)); // → W's shape
      out = prep.add(out, prep.mul(delta, prep.scalar(m.factor)));
    });
    this.ctx.loraApplied.add(p.key);
    return out;
  }

  /**
   * The general strided view: flat[offset + Σ i_k·stride_k] as one Gather. The index tensor is a
   * broadcast sum of one small per-axis constant (i·stride_k along axis k), so the graph stays small
   * whatever the tensor's size; onnxruntime folds it once.
   */
  private gatherStrided(
    prep: GraphBuilder,
    region: Value,
    key: string,
    shape: readonly number[],
    strides: readonly number[],
    offset: number,
  ): Value {
    const flat = prep.reshape(region, this.constantRoot(BigInt64Array.of(-1n), [1], `${key}/flat`)); // [n]
    let index = this.constantRoot(BigInt64Array.of(BigInt(offset)), [], `${key}/offset`);
    shape.forEach((d, k) => {
      const along = BigInt64Array.from({ length: d }, (_, i) => BigInt(i * strides[k]!)); // bounds: k < rank
      const dims = shape.map((_, j) => (j === k ? d : 1)); // [1, …, d, …, 1]
      index = prep.add(index, this.constantRoot(along, dims, `${key}/stride${k}`));
    });
    return prep.gather(flat, index, { axis: 0 }); // [...shape]
  }
  /**
   * The LoRA branches of the layer at this builder's scope (a Linear or Conv2d that computed `y` from
   * `x`), added to `y`: `y + Σ up(down(x)) · scaling · lora_scale_<adapter>`. The scale multiplies the
   * rank-r intermediate (fewer elements than the output). Without branches `y` comes back unchanged, so
   * graphs without LoRA are untouched.
   */
  lora(x: Value, y: Value, layer: { kind: 'linear' } | { kind: 'conv'; kernel: number; padding: number; stride: number }): Value {
    const branches = this.ctx.lora?.branches.get(this.scope);
    if (branches === undefined || branches.length === 0) return y;
    this.ctx.loraApplied.add(this.scope);
    let out = y;
    for (const br of branches) {
      const scaleIn = this.ctx.loraScales[br.adapter];
      if (scaleIn === undefined) throw new ConfigError(`${this.scope}: LoRA adapter ${br.adapter} has no scale input`);
      const key = `lora.${br.adapter}.${this.scope}`;
      const down = this.loraWeight(`${key}.down`, br.down, this.floatType);
      const up = this.loraWeight(`${key}.up`, br.up, this.floatType);
      const s = this.mul(scaleIn, this.scalar(br.scaling)); // [] the branch's whole factor
      let t: Value;
      if (layer.kind === 'linear') {
        const lin = (v: Value, w: Value) =>
          this.ctx.options.linear === 'fused' ? this.fusedMatMul(v, w, { transB: 1, alpha: 1 }) : this.matMul(v, this.transpose(w, { perm: [1, 0] }));
        t = this.mul(lin(x, down), s); // [..., in] → [..., r]
        t = lin(t, up); // [..., r] → [..., out]
      } else {
        const { kernel: k, padding: p, stride: st } = layer;
        t = this.conv(x, down, null, { kernel_shape: [k, k], pads: [p, p, p, p], strides: [st, st] }); // [B, in, H, W] → [B, r, H', W']
        t = this.conv(this.mul(t, s), up, null, { kernel_shape: [1, 1], pads: [0, 0, 0, 0], strides: [1, 1] }); // → [B, out, H', W']
      }
      out = this.add(out, t);
    }
    return out;
  }

  /** A LoRA matrix as an initializer pointing into its file, cast to `to` in the root graph when stored otherwise. */
  private loraWeight(key: string, ref: WeightRef, to: OnnxDataType): Value {
    const cached = this.ctx.paramCache.get(key);
    if (cached) return cached;
    const dataType = DTYPE_BYTES[ref.info.dtype];
    if (dataType === undefined || dataType === OnnxDataType.INT64 || ref.view !== undefined) {
      throw new WeightLoadError(`${ref.file.path}: LoRA matrix "${ref.info.name}" (${ref.info.dtype}) cannot be a weight`);
    }
    const { fileOffset: offset, byteLength: length } = ref.info;
    this.ctx.initializers.push({ name: key, dataType, dims: ref.info.shape, external: { location: externalLocation(ref.file.realPath), offset, length } });
    let v = new Value(key);
    if (dataType !== to) v = new GraphBuilder(this.ctx, key, true, this.ctx.rootNodes).cast(v, { to });
    this.ctx.paramCache.set(key, v);
    return v;
  }

  /** A 2-D parameter transposed once in the root graph (Linear weights: [out,in] → [in,out]). */
  paramTransposed(p: ParameterSpec): Value {
    const key = this.cacheKey(`${p.key}#T`);
    const cached = this.ctx.paramCache.get(key);
    if (cached) return cached;
    const v = this.weightPrep(p).transpose(this.param(p), { perm: [1, 0] }); // [out, in] → [in, out]
    this.ctx.paramCache.set(key, v);
    return v;
  }

  /**
   * Parameters concatenated along axis 0 once in the root graph, named `key` (a fused projection's weight,
   * `…attn1.to_qkv.weight`: [Σ out, in]); `transposed` adds one Transpose after it ([in, Σ out], for MatMul).
   * onnxruntime folds the result into a new initializer when the session opens.
   */
  paramConcat(specs: readonly ParameterSpec[], key: string, o: { transposed?: boolean } = {}): Value {
    const cacheKey = this.cacheKey(o.transposed ? `${key}#T` : key);
    const cached = this.ctx.paramCache.get(cacheKey);
    if (cached) return cached;
    const prep = new GraphBuilder(this.ctx, key, true, this.ctx.rootNodes);
    let joined = this.ctx.paramCache.get(this.cacheKey(key));
    if (!joined) {
      joined = prep.concat(specs.map((p) => this.param(p)), { axis: 0 }); // [out₁, in] ‖ [out₂, in] ‖ … → [Σ out, in]
      this.ctx.paramCache.set(this.cacheKey(key), joined);
    }
    const v = o.transposed ? prep.transpose(joined, { perm: [1, 0] }) : joined; // → [in, Σ out]
    this.ctx.paramCache.set(cacheKey, v);
    return v;
  }

  /** A parameter reshaped once in the root graph (GroupNorm's [C] → [C, 1, 1] for NCHW broadcasting). */
  paramReshaped(p: ParameterSpec, shape: readonly number[]): Value {
    const key = this.cacheKey(`${p.key}#R${shape.join(',')}`);
    const cached = this.ctx.paramCache.get(key);
    if (cached) return cached;
    const dims = this.constantRoot(BigInt64Array.from(shape.map((d) => BigInt(d))), [shape.length], `${p.key}/shape`);
    const v = this.weightPrep(p).reshape(this.param(p), dims);
    this.ctx.paramCache.set(key, v);
    return v;
  }

  private constantRoot(data: BigInt64Array, dims: readonly number[], name: string): Value {
    const unique = this.ctx.fresh(name);
    this.ctx.initializers.push({ name: unique, dataType: OnnxDataType.INT64, dims, raw: new Uint8Array(data.buffer.slice(0)) });
    return new Value(unique);
  }

  /** A view that emits weight preparation for `p` into the root graph, named `<key>/<OpType>_<n>`. */
  private weightPrep(p: ParameterSpec): GraphBuilder {
    return new GraphBuilder(this.ctx, p.key, true, this.ctx.rootNodes);
  }

  /**
   * ONNX `If`: both branches are traced now into subgraphs sharing this graph's values and
   * initializers; only the taken branch runs.
   */
  ifElse(cond: Value, thenBranch: (b: GraphBuilder) => Value[], elseBranch: (b: GraphBuilder) => Value[], nOut: number): Value[] {
    const sub = (label: string, fn: (b: GraphBuilder) => Value[]): GraphProto => {
      const b = new GraphBuilder(this.ctx, this.scope, false, undefined, this.dtype);
      const outs = fn(b);
      if (outs.length !== nOut) throw new Error(`If branch ${label} returned ${outs.length} values, expected ${nOut}`);
      const finals = outs.map((o) => b.identity(o, this.ctx.fresh(`${label}_out`)));
      return {
        name: this.ctx.fresh(label),
        nodes: b.nodes,
        initializers: [],
        inputs: [],
        outputs: finals.map((f) => ({ name: f.name, type: { elemType: this.floatType } })), // branch results are features of this view's type
      };
    };
    const thenGraph = sub('then', thenBranch);
    const elseGraph = sub('else', elseBranch);
    return this.if(cond, { then_branch: thenGraph, else_branch: elseGraph });
  }
}

/**
 * External data is resolved against the session's external-data folder, which is `/`:
 * a real (symlink-free) absolute path minus its leading slash.
 */
export function externalLocation(realPath: string): string {
  return realPath.replace(/^\/+/, '');
}
export const EXTERNAL_DATA_FOLDER = '/';
