/**
 * The DPT neck both depth architectures share (transformers' modeling_dpt.py and
 * modeling_depth_anything.py): reassemble layers (1×1 projection, then a transposed conv, nothing or a
 * strided conv by the stage's factor), `convs.{i}` to the fusion width, and the fusion stage run
 * from the coarsest map up, each layer adding a residual unit of the next map and upsampling.
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { ParameterSpec } from '../weights/source.js';
import { Conv2d } from './layers.js';
import { Identity, Module } from './module.js';

/** nn.ConvTranspose2d(C, C, kernel = stride = factor): each pixel becomes a factor × factor block. */
export class ConvTranspose2d extends Module {
  readonly weight: ParameterSpec;
  readonly bias: ParameterSpec;

  constructor(
    path: string,
    readonly channels: number,
    readonly factor: number,
  ) {
    super(path);
    this.weight = this.param('weight', [channels, channels, factor, factor]); // [Cin, Cout, k, k]
    this.bias = this.param('bias', [channels]);
  }

  /** [B, C, h, w] → [B, C, h·f, w·f] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const f = this.factor;
    return b.convTranspose(x, b.param(this.weight), b.param(this.bias), { kernel_shape: [f, f], strides: [f, f], pads: [0, 0, 0, 0] });
  }
}

/** A reassemble factor as transformers reads it: > 1 transposed conv (integer), 1 nothing, < 1 a 3×3 conv of stride int(1/factor). */
export function checkReassembleFactor(origin: string, i: number, factor: number): void {
  if (!(factor > 0)) throw new ConfigError(`${origin}: reassemble_factors[${i}] must be > 0, got ${factor}`);
  if (factor > 1 && !Number.isInteger(factor)) throw new ConfigError(`${origin}: reassemble_factors[${i}] = ${factor}: factors above 1 must be whole numbers (the kernel of a transposed conv)`);
  if (factor < 1 && Math.trunc(1 / factor) < 1) throw new ConfigError(`${origin}: reassemble_factors[${i}] = ${factor} gives no stride`);
}

/** `reassemble_stage.layers.{i}`: `projection` (1×1, hidden → channels), then `resize` by the factor. */
export class ReassembleLayer extends Module {
  readonly projection: Conv2d;
  readonly resize: ConvTranspose2d | Conv2d | Identity;

  constructor(path: string, hidden: number, channels: number, factor: number) {
    super(path);
    this.projection = this.child('projection', (p) => new Conv2d(p, hidden, channels, { kernel: 1 }));
    if (factor > 1) this.resize = this.child('resize', (p) => new ConvTranspose2d(p, channels, factor));
    else if (factor === 1) this.resize = this.child('resize', (p) => new Identity(p));
    else this.resize = this.child('resize', (p) => new Conv2d(p, channels, channels, { kernel: 3, stride: Math.trunc(1 / factor), padding: 1 }));
  }

  /** [B, hidden, h, w] → [B, channels, h', w'] */
  build(op: GraphBuilder, x: Value): Value {
    const y = this.projection.build(op, x);
    return this.resize instanceof Identity ? y : this.resize.build(op, y);
  }
}

/** Eval-mode nn.BatchNorm2d (`weight`, `bias`, `running_mean`, `running_var`, and the unused `num_batches_tracked`). */
export class BatchNorm2d extends Module {
  readonly weight: ParameterSpec;
  readonly bias: ParameterSpec;
  readonly running_mean: ParameterSpec;
  readonly running_var: ParameterSpec;
  readonly num_batches_tracked: ParameterSpec;

  constructor(
    path: string,
    readonly channels: number,
    readonly eps = 1e-5,
  ) {
    super(path);
    this.weight = this.param('weight', [channels]);
    this.bias = this.param('bias', [channels]);
    this.running_mean = this.param('running_mean', [channels]);
    this.running_var = this.param('running_var', [channels]);
    this.num_batches_tracked = this.param('num_batches_tracked', []);
  }

  /** [B, C, h, w]: (x − mean) / √(var + eps) · γ + β per channel */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const r = (p: ParameterSpec) => b.paramReshaped(p, [-1, 1, 1]);
    const std = b.sqrt(b.add(r(this.running_var), b.scalar(this.eps)));
    return b.add(b.mul(b.div(b.sub(x, r(this.running_mean)), std), r(this.weight)), r(this.bias));
  }
}

export interface ResidualUnitOptions {
  features: number;
  bias: boolean;
  batchNorm: boolean;
}

/** DPTPreActResidualLayer: x + conv2(relu(bn?(conv1(relu(x))))) (BatchNorm after each conv when asked). */
export class PreActResidualLayer extends Module {
  readonly convolution1: Conv2d;
  readonly convolution2: Conv2d;
  readonly batch_norm1: BatchNorm2d | null;
  readonly batch_norm2: BatchNorm2d | null;

  constructor(path: string, o: ResidualUnitOptions) {
    super(path);
    const conv = (p: string) => new Conv2d(p, o.features, o.features, { kernel: 3, padding: 1, bias: o.bias });
    this.convolution1 = this.child('convolution1', conv);
    this.convolution2 = this.child('convolution2', conv);
    this.batch_norm1 = o.batchNorm ? this.child('batch_norm1', (p) => new BatchNorm2d(p, o.features)) : null;
    this.batch_norm2 = o.batchNorm ? this.child('batch_norm2', (p) => new BatchNorm2d(p, o.features)) : null;
  }

  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    let h = this.convolution1.build(op, b.relu(x));
    if (this.batch_norm1) h = this.batch_norm1.build(op, h);
    h = this.convolution2.build(op, b.relu(h));
    if (this.batch_norm2) h = this.batch_norm2.build(op, h);
    return b.add(h, x);
  }
}

/** Bilinear resize of [B, C, h, w] to `sizes` (int64 [4]) as torch's `interpolate(mode="bilinear")`. */
export function bilinearTo(op: GraphBuilder, x: Value, sizes: Value, alignCorners: boolean): Value {
  return op.resize(x, null, null, sizes, { mode: 'linear', coordinate_transformation_mode: alignCorners ? 'align_corners' : 'half_pixel' });
}

/** Bilinear ×2 with align_corners=True (nn.Upsample / interpolate(scale_factor=2)). */
export function upsample2x(op: GraphBuilder, x: Value): Value {
  return op.resize(x, null, op.constant(Float32Array.of(1, 1, 2, 2), [4], 'scales'), null, { mode: 'linear', coordinate_transformation_mode: 'align_corners' });
}

/**
 * DPTFeatureFusionLayer / DepthAnythingFeatureFusionLayer: h (+ residual_layer1(residual), the residual
 * resized bilinearly to h's size first if they differ), residual_layer2, upsample (×2, or to `size`,
 * align_corners=True), then the 1×1 `projection`.
 */
export class FeatureFusionLayer extends Module {
  readonly projection: Conv2d;
  readonly residual_layer1: PreActResidualLayer;
  readonly residual_layer2: PreActResidualLayer;

  constructor(path: string, o: ResidualUnitOptions) {
    super(path);
    this.projection = this.child('projection', (p) => new Conv2d(p, o.features, o.features, { kernel: 1 }));
    this.residual_layer1 = this.child('residual_layer1', (p) => new PreActResidualLayer(p, o));
    this.residual_layer2 = this.child('residual_layer2', (p) => new PreActResidualLayer(p, o));
  }

  /** `size`: int64 [4] target shape of the upsampling (null: ×2). */
  build(op: GraphBuilder, h: Value, residual: Value | null, size: Value | null): Value {
    const b = op.at(this.path);
    let x = h;
    if (residual !== null) {
      // Resizing to the same size is the identity, so the shape test transformers makes is not needed.
      const matched = bilinearTo(b, residual, b.shape(h), false);
      x = b.add(x, this.residual_layer1.build(op, matched));
    }
    x = this.residual_layer2.build(op, x);
    x = size === null ? upsample2x(b, x) : bilinearTo(b, x, size, true);
    return this.projection.build(op, x);
  }
}

export interface DPTNeckOptions {
  /** Channels of each map entering `convs` (neck_hidden_sizes). */
  neckHiddenSizes: readonly number[];
  fusionHiddenSize: number;
  residual: ResidualUnitOptions;
}

/** `neck.convs.{i}` (3×3, no bias) and `neck.fusion_stage.layers.{i}`; the reassemble stage is the caller's. */
export class DPTNeckTail extends Module {
  readonly convs: Conv2d[];
  readonly fusion: FeatureFusionLayer[];

  constructor(path: string, o: DPTNeckOptions) {
    super(path);
    this.convs = o.neckHiddenSizes.map((c, i) => this.child(`convs.${i}`, (p) => new Conv2d(p, c, o.fusionHiddenSize, { kernel: 3, padding: 1, bias: false })));
    this.fusion = this.list('fusion_stage.layers', o.neckHiddenSizes.length, (p) => new FeatureFusionLayer(p, o.residual));
  }

  /**
   * Reassembled maps (finest first) → the fused maps, coarsest-first order as transformers returns
   * them. `toNextSize` (Depth Anything): upsample each fused map to the next map's size instead of ×2
   * (the last one still ×2).
   */
  build(op: GraphBuilder, maps: readonly Value[], toNextSize: boolean): Value[] {
    const features = maps.map((m, i) => this.convs[i]!.build(op, m)).reverse();
    const fused: Value[] = [];
    let h: Value | null = null;
    features.forEach((f, i) => {
      const next = features[i + 1];
      const size = toNextSize && next !== undefined ? op.at(this.path).shape(next) : null;
      const layer = this.fusion[i]!;
      h = h === null ? layer.build(op, f, null, size) : layer.build(op, h, f, size);
      fused.push(h);
    });
    return fused;
  }
}

/** transformers' `hidden_states[head_in_index]` (negative counts from the end). */
export function pickHeadInput<T>(fused: readonly T[], index: number, origin: string): T {
  const v = fused[index < 0 ? fused.length + index : index];
  if (v === undefined) throw new ConfigError(`${origin}: head_in_index ${index} is outside the ${fused.length} fused feature maps`);
  return v;
}
