/** ResnetBlock2D and the resampling convolutions of SD UNets (diffusers' resnet.py / downsampling / upsampling). */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Conv2d, GroupNorm, Linear, silu } from './layers.js';
import { Identity, Module } from './module.js';

export interface ResnetOptions {
  inChannels: number;
  outChannels: number;
  /** Width of the time embedding; null for blocks without one (the VAE's: no `time_emb_proj`). */
  tembChannels: number | null;
  groups: number;
  /** Groups of norm2; defaults to `groups`. */
  groupsOut?: number;
  eps: number;
  outputScaleFactor?: number;
}

/**
 * norm1 → SiLU → conv1 → + time_emb_proj(SiLU(temb)) → norm2 → SiLU → (dropout) → conv2,
 * plus the (1×1-projected) input; `time_embedding_norm: "default"`. With `tembChannels: null`
 * there is no time_emb_proj and the time term is left out.
 */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear | null;
  readonly norm2: GroupNorm;
  readonly dropout: Identity;
  readonly conv2: Conv2d;
  readonly conv_shortcut: Conv2d | null;

  constructor(
    path: string,
    readonly opts: ResnetOptions,
  ) {
    super(path);
    const { inChannels: cin, outChannels: cout, eps } = opts;
    this.norm1 = this.child('norm1', (p) => new GroupNorm(p, opts.groups, cin, eps));
    this.conv1 = this.child('conv1', (p) => new Conv2d(p, cin, cout, { kernel: 3, padding: 1 }));
    const temb = opts.tembChannels;
    this.time_emb_proj = temb === null ? null : this.child('time_emb_proj', (p) => new Linear(p, temb, cout));
    this.norm2 = this.child('norm2', (p) => new GroupNorm(p, opts.groupsOut ?? opts.groups, cout, eps));
    this.dropout = this.child('dropout', (p) => new Identity(p));
    this.conv2 = this.child('conv2', (p) => new Conv2d(p, cout, cout, { kernel: 3, padding: 1 }));
    this.conv_shortcut = cin !== cout ? this.child('conv_shortcut', (p) => new Conv2d(p, cin, cout, { kernel: 1 })) : null;
  }

  get inChannels(): number {
    return this.opts.inChannels;
  }

  /** x [B, Cin, H, W], temb [B, T] (null: no time term, as diffusers' `temb=None`) → [B, Cout, H, W] */
  build(op: GraphBuilder, x: Value, temb: Value | null): Value {
    const b = op.at(this.path);
    let h = this.conv1.build(op, silu(b, this.norm1.build(op, x)));
    if (this.time_emb_proj !== null && temb !== null) {
      const t = this.time_emb_proj.build(op, silu(b, temb)); // [B, Cout]
      h = b.add(h, b.unsqueeze(t, b.ints([2, 3]))); // [B, Cout, H, W] + [B, Cout] → [B, Cout, 1, 1], broadcast
    }
    h = this.conv2.build(op, silu(b, this.norm2.build(op, h)));
    const skip = this.conv_shortcut ? this.conv_shortcut.build(op, x) : x;
    let out = b.add(skip, h); // [B, Cout, H, W]
    const scale = this.opts.outputScaleFactor ?? 1;
    if (scale !== 1) out = b.div(out, b.scalar(scale));
    return out;
  }
}

/**
 * A stride-2 3×3 convolution (`name="op"` in diffusers, so the key is `conv`). With `padding = 0`
 * (the VAE encoder's) the input first gets one zero row at the bottom and one zero column at the
 * right, as diffusers does for that case.
 */
export class Downsample2D extends Module {
  readonly conv: Conv2d;

  constructor(
    path: string,
    inChannels: number,
    outChannels: number,
    readonly padding = 1,
  ) {
    super(path);
    this.conv = this.child('conv', (p) => new Conv2d(p, inChannels, outChannels, { kernel: 3, stride: 2, padding }));
  }

  /** [B, C, H, W] → [B, C', ⌈H/2⌉, ⌈W/2⌉] (padding 1 or 0) */
  build(op: GraphBuilder, x: Value): Value {
    if (this.padding !== 0) return this.conv.build(op, x);
    const b = op.at(this.path);
    // ONNX Pad order: begins of N, C, H, W, then ends of N, C, H, W.
    const padded = b.pad(x, b.ints([0, 0, 0, 0, 0, 0, 1, 1]), null, null, { mode: 'constant' }); // [B, C, H, W] → [B, C, H+1, W+1]
    return this.conv.build(op, padded);
  }
}

/** Nearest-neighbour 2× (or to a given size), then a 3×3 convolution. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(path: string, channels: number, outChannels: number) {
    super(path);
    this.conv = this.child('conv', (p) => new Conv2d(p, channels, outChannels, { kernel: 3, padding: 1 }));
  }

  /**
   * [B, C, H, W] → [B, C', 2H, 2W]; with `sizeLike` the spatial size of that value instead
   * (diffusers' `upsample_size`, used when latents are not a multiple of 2^levels).
   */
  build(op: GraphBuilder, x: Value, sizeLike?: Value): Value {
    const b = op.at(this.path);
    // torch's nearest interpolation: source index = floor(dst · in / out)
    const attrs = { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' } as const;
    let up: Value;
    if (sizeLike) {
      const hw = b.slice(b.shape(sizeLike), b.ints([2]), b.ints([4])); // [H', W']
      const sizes = b.concat([b.slice(b.shape(x), b.ints([0]), b.ints([2])), hw], { axis: 0 }); // [B, C, H', W']
      up = b.resize(x, null, null, sizes, attrs); // [B, C, H, W] → [B, C, H', W']
    } else {
      up = b.resize(x, null, b.constant(Float32Array.of(1, 1, 2, 2), [4], 'scales'), null, attrs); // [B, C, H, W] → [B, C, 2H, 2W]
    }
    return this.conv.build(op, up);
  }
}
