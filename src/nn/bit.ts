/**
 * transformers' BiT backbone (modeling_bit.py), the convolutional half of DPT-hybrid: a
 * weight-standardised 7×7 stem with GroupNorm and max-pooling, then stages of bottleneck layers
 * ("bottleneck": conv → norm → act, ResNet v1.5 order; "preactivation": norm → act → conv, v2 order).
 *
 * The hybrid model only runs at its config's image size, so every spatial size is known at trace
 * time: TF-style "SAME" padding (`global_padding`, `embedding_dynamic_padding`), which transformers
 * computes from each input's size, becomes fixed pads here (extra pixel at the end, zeros, as
 * DynamicPad2d).
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { ParameterSpec } from '../weights/source.js';
import { applyActivation, type HFActivation } from './hf-activation.js';
import { GroupNorm } from './layers.js';
import { Identity, Module } from './module.js';

/** The BitConfig fields the backbone reads (camelCased, as a parsed config gives them). */
export interface BitNetConfig {
  readonly numChannels: number;
  readonly embeddingSize: number;
  readonly hiddenSizes: readonly number[];
  readonly depths: readonly number[];
  readonly layerType: 'preactivation' | 'bottleneck';
  readonly hiddenAct: string;
  readonly globalPadding: string | null;
  readonly numGroups: number;
  readonly embeddingDynamicPadding: boolean;
  readonly outputStride: number;
  readonly widthFactor: number;
  /** Indices into ["stem", "stage1", …] of the feature maps the backbone returns, ascending. */
  readonly outIndices: readonly number[];
}

/** Height, width. */
export type Size2 = readonly [number, number];

/** timm's make_div: `v` rounded to a multiple of 8, never more than 10 % below it. */
export function makeDiv(v: number, divisor = 8): number {
  let n = Math.max(divisor, Math.floor(Math.trunc(v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/** transformers' get_padding_value: symmetric pads, or null for TF "SAME" padding computed per input. */
function staticPadding(padding: string | null, kernel: number, stride: number, dilation: number): number | null {
  const symmetric = Math.floor((stride - 1 + dilation * (kernel - 1)) / 2);
  if (padding === null) return symmetric;
  const p = padding.toLowerCase();
  if (p === 'same') return stride === 1 && (dilation * (kernel - 1)) % 2 === 0 ? symmetric : null;
  if (p === 'valid') return 0;
  return symmetric;
}

/** DynamicPad2d's pads for one axis of size `x`: [begin, end], the odd pixel at the end. */
function samePads(x: number, kernel: number, stride: number, dilation: number): [number, number] {
  const total = Math.max((Math.ceil(x / stride) - 1) * stride + (kernel - 1) * dilation + 1 - x, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function outSize(x: number, kernel: number, stride: number, dilation: number, pads: readonly [number, number]): number {
  return Math.floor((x + pads[0] + pads[1] - dilation * (kernel - 1) - 1) / stride) + 1;
}

export interface WSConvOptions {
  kernel: number;
  stride?: number;
  dilation?: number;
  groups?: number;
  /** BitConfig.global_padding. */
  padding: string | null;
  eps: number;
}

/**
 * WeightStandardizedConv2d (no bias): each output filter standardised over its inputs and taps,
 * (w − mean) / √(var + eps) with the biased variance (torch's batch_norm in training mode), then a conv.
 */
export class WeightStandardizedConv2d extends Module {
  readonly weight: ParameterSpec;

  constructor(
    path: string,
    readonly inChannels: number,
    readonly outChannels: number,
    readonly opts: WSConvOptions,
  ) {
    super(path);
    const groups = opts.groups ?? 1;
    if (inChannels % groups !== 0 || outChannels % groups !== 0) throw new ConfigError(`${path}: ${inChannels} → ${outChannels} channels do not split into ${groups} groups`);
    this.weight = this.param('weight', [outChannels, inChannels / groups, opts.kernel, opts.kernel]);
  }

  /** [B, Cin, h, w] → [B, Cout, h', w'] with the output size. */
  build(op: GraphBuilder, x: Value, size: Size2): { y: Value; size: Size2 } {
    const b = op.at(this.path);
    const { kernel: k, eps } = this.opts;
    const s = this.opts.stride ?? 1;
    const d = this.opts.dilation ?? 1;
    const fixed = staticPadding(this.opts.padding, k, s, d);
    const padH = fixed === null ? samePads(size[0], k, s, d) : ([fixed, fixed] as const);
    const padW = fixed === null ? samePads(size[1], k, s, d) : ([fixed, fixed] as const);
    const o = this.outChannels;
    const flat = b.reshape(b.param(this.weight), b.ints([1, o, -1])); // [O, I, k, k] → [1, O, I·k·k]
    const ones = b.constant(new Float32Array(o).fill(1), [o], 'ones');
    const zeros = b.constant(new Float32Array(o), [o], 'zeros');
    const standardised = b.instanceNormalization(flat, ones, zeros, { epsilon: eps }); // per filter: (w − mean) / √(var + eps)
    const w = b.reshape(standardised, b.ints([o, -1, k, k])); // → [O, I, k, k]; constant-folded by onnxruntime
    const y = b.conv(x, w, null, {
      kernel_shape: [k, k],
      strides: [s, s],
      dilations: [d, d],
      group: this.opts.groups ?? 1,
      pads: [padH[0], padW[0], padH[1], padW[1]],
    });
    return { y, size: [outSize(size[0], k, s, d, padH), outSize(size[1], k, s, d, padW)] };
  }
}

/** BitGroupNormActivation: GroupNorm (eps 1e-5), then the config's activation unless it is a pre-residual norm. */
export class BitGroupNormActivation extends GroupNorm {
  constructor(
    path: string,
    numGroups: number,
    channels: number,
    readonly act: HFActivation | null,
  ) {
    super(path, numGroups, channels, 1e-5);
  }

  override build(op: GraphBuilder, x: Value): Value {
    const y = super.build(op, x);
    return this.act === null ? y : applyActivation(op.at(this.path), y, this.act);
  }
}

/** Zero padding [top, bottom] × [left, right] of a [B, C, h, w] map. */
function zeroPad(op: GraphBuilder, x: Value, h: readonly [number, number], w: readonly [number, number]): Value {
  if (h[0] + h[1] + w[0] + w[1] === 0) return x;
  return op.pad(x, op.ints([0, 0, h[0], w[0], 0, 0, h[1], w[1]]), op.scalar(0));
}

interface BitContext {
  readonly config: BitNetConfig;
  readonly act: HFActivation;
}

/** The stem: `embedder.convolution` (7×7 stride 2), optional pad, `embedder.norm`, 3×3 stride-2 max pool. */
export class BitEmbeddings extends Module {
  readonly convolution: WeightStandardizedConv2d;
  readonly norm: BitGroupNormActivation | Identity;

  constructor(
    path: string,
    readonly ctx: BitContext,
  ) {
    super(path);
    const c = ctx.config;
    this.convolution = this.child('convolution', (p) => new WeightStandardizedConv2d(p, c.numChannels, c.embeddingSize, { kernel: 7, stride: 2, eps: 1e-8, padding: c.globalPadding }));
    this.norm =
      c.layerType === 'preactivation'
        ? this.child('norm', (p) => new Identity(p))
        : this.child('norm', (p) => new BitGroupNormActivation(p, c.numGroups, c.embeddingSize, ctx.act));
  }

  build(op: GraphBuilder, x: Value, size: Size2): { y: Value; size: Size2 } {
    const b = op.at(this.path);
    const c = this.ctx.config;
    let { y, size: s } = this.convolution.build(op, x, size);
    if (c.globalPadding === null || c.globalPadding.toUpperCase() !== 'SAME') {
      y = zeroPad(b, y, [1, 1], [1, 1]); // ConstantPad2d(1)
      s = [s[0] + 2, s[1] + 2];
    }
    if (this.norm instanceof BitGroupNormActivation) y = this.norm.build(op, y);
    // BitMaxPool2d: DynamicPad2d pads with zeros (not −inf) before the pool.
    const ph = c.embeddingDynamicPadding ? samePads(s[0], 3, 2, 1) : ([0, 0] as const);
    const pw = c.embeddingDynamicPadding ? samePads(s[1], 3, 2, 1) : ([0, 0] as const);
    const pooled = b.maxPool(zeroPad(b, y, ph, pw), { kernel_shape: [3, 3], strides: [2, 2] });
    return { y: pooled, size: [outSize(s[0], 3, 2, 1, ph), outSize(s[1], 3, 2, 1, pw)] };
  }
}

interface LayerPlan {
  inChannels: number;
  outChannels: number;
  stride: number;
  dilation: number;
  firstDilation: number;
  first: boolean;
}

/** BitDownsampleConv: the shortcut's 1×1 conv (+ GroupNorm without activation, bottleneck layers only). */
export class BitDownsampleConv extends Module {
  readonly conv: WeightStandardizedConv2d;
  readonly norm: BitGroupNormActivation | null;

  constructor(path: string, ctx: BitContext, plan: LayerPlan, preact: boolean) {
    super(path);
    const c = ctx.config;
    this.conv = this.child('conv', (p) => new WeightStandardizedConv2d(p, plan.inChannels, plan.outChannels, { kernel: 1, stride: plan.stride, eps: 1e-8, padding: c.globalPadding }));
    this.norm = preact ? null : this.child('norm', (p) => new BitGroupNormActivation(p, c.numGroups, plan.outChannels, null));
  }

  build(op: GraphBuilder, x: Value, size: Size2): Value {
    const { y } = this.conv.build(op, x, size);
    return this.norm === null ? y : this.norm.build(op, y);
  }
}

/** BitBottleneckLayer (conv → norm order; the residual sum then the activation) or BitPreActivationBottleneckLayer. */
export class BitBottleneckLayer extends Module {
  readonly downsample: BitDownsampleConv | null;
  readonly norm1: BitGroupNormActivation;
  readonly conv1: WeightStandardizedConv2d;
  readonly norm2: BitGroupNormActivation;
  readonly conv2: WeightStandardizedConv2d;
  readonly norm3: BitGroupNormActivation;
  readonly conv3: WeightStandardizedConv2d;

  constructor(
    path: string,
    readonly ctx: BitContext,
    plan: LayerPlan,
  ) {
    super(path);
    const c = ctx.config;
    const preact = c.layerType === 'preactivation';
    const mid = makeDiv(plan.outChannels * 0.25);
    const ws = (cin: number, cout: number, kernel: number, extra: Partial<WSConvOptions> = {}) => (p: string) =>
      new WeightStandardizedConv2d(p, cin, cout, { kernel, eps: 1e-8, padding: c.globalPadding, ...extra });
    const gn = (ch: number, act: HFActivation | null) => (p: string) => new BitGroupNormActivation(p, c.numGroups, ch, act);
    this.downsample = plan.first ? this.child('downsample', (p) => new BitDownsampleConv(p, ctx, plan, preact)) : null;
    if (preact) {
      this.norm1 = this.child('norm1', gn(plan.inChannels, ctx.act));
      this.conv1 = this.child('conv1', ws(plan.inChannels, mid, 1));
      this.norm2 = this.child('norm2', gn(mid, ctx.act));
      this.conv2 = this.child('conv2', ws(mid, mid, 3, { stride: plan.stride })); // no dilation in the v2 layer
      this.norm3 = this.child('norm3', gn(mid, ctx.act));
      this.conv3 = this.child('conv3', ws(mid, plan.outChannels, 1));
    } else {
      this.conv1 = this.child('conv1', ws(plan.inChannels, mid, 1));
      this.norm1 = this.child('norm1', gn(mid, ctx.act));
      this.conv2 = this.child('conv2', ws(mid, mid, 3, { stride: plan.stride, dilation: plan.firstDilation }));
      this.norm2 = this.child('norm2', gn(mid, ctx.act));
      this.conv3 = this.child('conv3', ws(mid, plan.outChannels, 1));
      this.norm3 = this.child('norm3', gn(plan.outChannels, null));
    }
  }

  build(op: GraphBuilder, x: Value, size: Size2): { y: Value; size: Size2 } {
    const b = op.at(this.path);
    if (this.ctx.config.layerType === 'preactivation') {
      const pre = this.norm1.build(op, x);
      const shortcut = this.downsample === null ? x : this.downsample.build(op, pre, size);
      const h1 = this.conv1.build(op, pre, size);
      const h2 = this.conv2.build(op, this.norm2.build(op, h1.y), h1.size);
      const h3 = this.conv3.build(op, this.norm3.build(op, h2.y), h2.size);
      return { y: b.add(h3.y, shortcut), size: h3.size };
    }
    const shortcut = this.downsample === null ? x : this.downsample.build(op, x, size);
    const h1 = this.conv1.build(op, x, size);
    const h2 = this.conv2.build(op, this.norm1.build(op, h1.y), h1.size);
    const h3 = this.conv3.build(op, this.norm2.build(op, h2.y), h2.size);
    return { y: applyActivation(b, b.add(this.norm3.build(op, h3.y), shortcut), this.ctx.act), size: h3.size };
  }
}

/** `bit.*`: embedder, encoder stages, and (pre-activation models) the final `norm`, which no feature map passes. */
export class BitModel extends Module {
  readonly embedder: BitEmbeddings;
  readonly stages: BitBottleneckLayer[][];
  readonly norm: BitGroupNormActivation | null;
  /** Output channels of the stem and of each stage. */
  readonly channels: readonly number[];

  constructor(path: string, config: BitNetConfig, act: HFActivation) {
    super(path);
    const ctx: BitContext = { config, act };
    this.embedder = this.child('embedder', (p) => new BitEmbeddings(p, ctx));
    const channels = [config.embeddingSize];
    const stages: BitBottleneckLayer[][] = [];
    let prev = config.embeddingSize;
    let currentStride = 4;
    let dilation = 1;
    const n = Math.min(config.depths.length, config.hiddenSizes.length); // zip(depths, hidden_sizes)
    for (let s = 0; s < n; s++) {
      const out = makeDiv(config.hiddenSizes[s]! * config.widthFactor);
      let stride = s === 0 ? 1 : 2;
      if (currentStride >= config.outputStride) {
        dilation *= stride;
        stride = 1;
      }
      let firstDilation = dilation === 1 || dilation === 2 ? 1 : 2;
      const layers: BitBottleneckLayer[] = [];
      for (let l = 0; l < config.depths[s]!; l++) {
        const plan: LayerPlan = { inChannels: prev, outChannels: out, stride: l === 0 ? stride : 1, dilation, firstDilation, first: l === 0 };
        layers.push(this.child(`encoder.stages.${s}.layers.${l}`, (p) => new BitBottleneckLayer(p, ctx, plan)));
        prev = out;
        firstDilation = dilation;
      }
      stages.push(layers);
      channels.push(out);
      currentStride *= stride;
    }
    this.stages = stages;
    this.channels = channels;
    const last = config.hiddenSizes[config.hiddenSizes.length - 1]!;
    this.norm = config.layerType === 'preactivation' ? this.child('norm', (p) => new BitGroupNormActivation(p, config.numGroups, last, act)) : null;
  }

  /** pixels [B, C, H, W] of static size → the stem's and every stage's output, with sizes. */
  build(op: GraphBuilder, x: Value, size: Size2): { y: Value; size: Size2 }[] {
    let h = this.embedder.build(op, x, size);
    const all = [h];
    for (const stage of this.stages) {
      for (const layer of stage) h = layer.build(op, h.y, h.size);
      all.push(h);
    }
    return all;
  }
}

/** BitBackbone (`…backbone.bit`): the feature maps at `outIndices`, in stage order. */
export class BitBackbone extends Module {
  readonly bit: BitModel;

  constructor(
    path: string,
    readonly config: BitNetConfig,
    act: HFActivation,
  ) {
    super(path);
    this.bit = this.child('bit', (p) => new BitModel(p, config, act));
  }

  /** Channels of each returned feature map. */
  get featureChannels(): number[] {
    return this.config.outIndices.map((i) => this.bit.channels[i]!);
  }

  build(op: GraphBuilder, x: Value, size: Size2): { y: Value; size: Size2 }[] {
    const all = this.bit.build(op, x, size);
    return this.config.outIndices.map((i) => all[i]!);
  }
}
