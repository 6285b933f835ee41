/**
 * TAESD's encoder and decoder (diffusers' vae.py EncoderTiny / DecoderTiny) and their residual block
 * (AutoencoderTinyBlock): plain 3×3 convs and activations, no normalisation, no attention. Both
 * coders are one `nn.Sequential` called `layers`, so parameter-free entries (activations,
 * upsampling) hold an index of their own and the checkpoint keys skip it (`decoder.layers.1` is the
 * first ReLU: `decoder.layers.0` and `decoder.layers.2` have weights).
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import { at } from '../util/at.js';
import { Conv2d } from './layers.js';
import { Module } from './module.js';

/** The activations diffusers' `get_activation` knows (swish is silu). */
export const TINY_ACTIVATIONS = ['relu', 'silu', 'swish', 'gelu', 'mish'] as const;
export type TinyActivation = (typeof TINY_ACTIVATIONS)[number];
/** The `nn.Upsample` modes for 4-d tensors (torch's linear and trilinear are for 3-d and 5-d ones). */
export const TINY_UPSAMPLE_MODES = ['nearest', 'nearest-exact', 'bilinear', 'bicubic'] as const;
export type TinyUpsample = (typeof TINY_UPSAMPLE_MODES)[number];

/** One entry of a `layers` Sequential. */
interface SequentialLayer extends Module {
  build(op: GraphBuilder, x: Value): Value;
}

/** Emit `act` elementwise, as torch's nn.ReLU / SiLU / GELU / Mish. */
function applyActivation(op: GraphBuilder, x: Value, act: TinyActivation): Value {
  switch (act) {
    case 'relu':
      return op.relu(x);
    case 'silu':
    case 'swish':
      return op.mul(x, op.sigmoid(x));
    case 'gelu':
      return op.gelu(x, { approximate: 'none' }); // nn.GELU() is the erf form
    case 'mish':
      return op.mul(x, op.tanh(op.softplus(x))); // x · tanh(ln(1 + eˣ))
  }
}

/** A parameter-free activation slot of a Sequential (`nn.ReLU()` and friends). */
export class ActivationLayer extends Module {
  constructor(
    path: string,
    readonly act: TinyActivation,
  ) {
    super(path);
  }

  /** [B, C, H, W] → same shape */
  build(op: GraphBuilder, x: Value): Value {
    return applyActivation(op.at(this.path), x, this.act);
  }
}

/** `nn.Upsample(scale_factor, mode)`, parameter-free. */
export class UpsampleLayer extends Module {
  constructor(
    path: string,
    readonly scale: number,
    readonly mode: TinyUpsample,
  ) {
    super(path);
  }

  /** [B, C, H, W] → [B, C, s·H, s·W] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const s = this.scale;
    const scales = b.constant(Float32Array.of(1, 1, s, s), [4], 'scales');
    // torch with a scale factor (align_corners unset) maps destination to source pixels as these ONNX modes do:
    // nearest: ⌊dst/s⌋; nearest-exact: ⌊(dst + ½)/s⌋ = round-half-up of the half-pixel source;
    // bilinear and bicubic: half-pixel centres, torch's bicubic A = −0.75 with edge pixels repeated.
    switch (this.mode) {
      case 'nearest':
        return b.resize(x, null, scales, null, { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
      case 'nearest-exact':
        return b.resize(x, null, scales, null, { mode: 'nearest', coordinate_transformation_mode: 'half_pixel', nearest_mode: 'round_prefer_ceil' });
      case 'bilinear':
        return b.resize(x, null, scales, null, { mode: 'linear', coordinate_transformation_mode: 'half_pixel' });
      case 'bicubic':
        return b.resize(x, null, scales, null, { mode: 'cubic', coordinate_transformation_mode: 'half_pixel', cubic_coeff_a: -0.75, exclude_outside: 0 });
    }
  }
}

/**
 * `fuse(conv(x) + skip(x))`: conv is 3×3 → act → 3×3 → act → 3×3 (a Sequential: keys `conv.0`,
 * `conv.2`, `conv.4`), skip a bias-free 1×1 conv when the width changes (never in diffusers'
 * coders), and fuse always a ReLU whatever `act` is.
 */
export class AutoencoderTinyBlock extends Module {
  readonly conv: [Conv2d, ActivationLayer, Conv2d, ActivationLayer, Conv2d];
  readonly skip: Conv2d | null;

  constructor(path: string, inChannels: number, outChannels: number, act: TinyActivation) {
    super(path);
    const conv3 = (p: string, cin: number) => new Conv2d(p, cin, outChannels, { kernel: 3, padding: 1 });
    this.conv = [
      this.child('conv.0', (p) => conv3(p, inChannels)),
      this.child('conv.1', (p) => new ActivationLayer(p, act)),
      this.child('conv.2', (p) => conv3(p, outChannels)),
      this.child('conv.3', (p) => new ActivationLayer(p, act)),
      this.child('conv.4', (p) => conv3(p, outChannels)),
    ];
    this.skip = inChannels !== outChannels ? this.child('skip', (p) => new Conv2d(p, inChannels, outChannels, { kernel: 1, bias: false })) : null;
  }

  /** [B, Cin, H, W] → [B, Cout, H, W] */
  build(op: GraphBuilder, x: Value): Value {
    let h = x;
    for (const layer of this.conv) h = layer.build(op, h);
    const skip = this.skip ? this.skip.build(op, x) : x;
    const b = op.at(this.path);
    return b.relu(b.add(h, skip));
  }
}

/** One width per stage, as many as stages, at least one: the stage lists must line up. */
function stageWidths(path: string, o: TinyCoderOptions): readonly number[] {
  if (o.blockOutChannels.length === 0 || o.blockOutChannels.length !== o.numBlocks.length) {
    throw new ConfigError(`${path}: ${o.blockOutChannels.length} stage widths for ${o.numBlocks.length} stages`);
  }
  return o.blockOutChannels;
}

export interface TinyCoderOptions {
  /** Image channels (encoder) or latent channels (decoder). */
  inChannels: number;
  /** Latent channels (encoder) or image channels (decoder). */
  outChannels: number;
  /** One width per stage; all equal (the config parser checks). */
  blockOutChannels: readonly number[];
  /** AutoencoderTinyBlocks per stage. */
  numBlocks: readonly number[];
  act: TinyActivation;
}

/**
 * Per stage i: a 3×3 conv (stage 0: image → width, with bias; later stages: stride 2, bias-free),
 * then `numBlocks[i]` blocks; finally a 3×3 conv to the latent channels. Input images in [−1, 1]
 * are mapped to TAESD's [0, 1] first.
 */
export class EncoderTiny extends Module {
  readonly layers: SequentialLayer[];

  constructor(path: string, o: TinyCoderOptions) {
    super(path);
    const widths = stageWidths(path, o);
    const make: ((p: string) => SequentialLayer)[] = [];
    o.numBlocks.forEach((n, i) => {
      const ch = at(widths, i);
      make.push(i === 0 ? (p) => new Conv2d(p, o.inChannels, ch, { kernel: 3, padding: 1 }) : (p) => new Conv2d(p, ch, ch, { kernel: 3, padding: 1, stride: 2, bias: false }));
      for (let k = 0; k < n; k++) make.push((p) => new AutoencoderTinyBlock(p, ch, ch, o.act));
    });
    make.push((p) => new Conv2d(p, at(widths, widths.length - 1), o.outChannels, { kernel: 3, padding: 1 }));
    this.layers = make.map((m, i) => this.child(`layers.${i}`, m));
  }

  /** image [B, Cin, H, W] in [−1, 1] → latents [B, latent, H/2^(stages−1), W/2^(stages−1)] (each stride-2 conv: ⌈n/2⌉) */
  build(op: GraphBuilder, image: Value): Value {
    const b = op.at(this.path);
    let h = b.div(b.add(image, b.scalar(1)), b.scalar(2)); // [−1, 1] → [0, 1]
    for (const layer of this.layers) h = layer.build(op, h);
    return h;
  }
}

export interface TinyDecoderOptions extends TinyCoderOptions {
  upsamplingScalingFactor: number;
  upsampleFn: TinyUpsample;
}

/**
 * A 3×3 conv from the latents and an activation; per stage i: `numBlocks[i]` blocks, then (all but
 * the last stage) upsampling and a bias-free 3×3 conv, (the last stage) a 3×3 conv with bias to the
 * image channels. Latents are soft-clamped to (−3, 3) first, and the [0, 1] output is mapped to
 * diffusers' [−1, 1] (not clamped).
 */
export class DecoderTiny extends Module {
  readonly layers: SequentialLayer[];

  constructor(path: string, o: TinyDecoderOptions) {
    super(path);
    const widths = stageWidths(path, o);
    const make: ((p: string) => SequentialLayer)[] = [
      (p) => new Conv2d(p, o.inChannels, at(widths, 0), { kernel: 3, padding: 1 }),
      (p) => new ActivationLayer(p, o.act),
    ];
    const stages = o.numBlocks.length;
    o.numBlocks.forEach((n, i) => {
      const ch = at(widths, i);
      for (let k = 0; k < n; k++) make.push((p) => new AutoencoderTinyBlock(p, ch, ch, o.act));
      const isFinal = i === stages - 1;
      if (!isFinal) make.push((p) => new UpsampleLayer(p, o.upsamplingScalingFactor, o.upsampleFn));
      make.push((p) => new Conv2d(p, ch, isFinal ? o.outChannels : ch, { kernel: 3, padding: 1, bias: isFinal }));
    });
    this.layers = make.map((m, i) => this.child(`layers.${i}`, m));
  }

  /** latents [B, latent, h, w] → image [B, Cout, h·s^(stages−1), w·s^(stages−1)], about [−1, 1] */
  build(op: GraphBuilder, latents: Value): Value {
    const b = op.at(this.path);
    const three = b.scalar(3);
    let h = b.mul(b.tanh(b.div(latents, three)), three); // soft clamp: 3·tanh(z/3)
    for (const layer of this.layers) h = layer.build(op, h);
    return b.sub(b.mul(h, b.scalar(2)), b.scalar(1)); // [0, 1] → [−1, 1]
  }
}
