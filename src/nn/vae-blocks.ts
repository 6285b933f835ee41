/**
 * The AutoencoderKL encoder and decoder (diffusers' vae.py) and their blocks: DownEncoderBlock2D,
 * UpDecoderBlock2D, and UNetMidBlock2D with its spatial self-attention. No time embedding anywhere:
 * every resnet is built with `tembChannels: null`.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Conv2d, GroupNorm, Linear, silu } from './layers.js';
import { Identity, Module } from './module.js';
import { multiHeadAttention } from './multi-head.js';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.js';

/** The VAE's fixed normalisation epsilon (resnets, attention group norm, output norm). */
const VAE_EPS = 1e-6;

export interface VaeAttentionOptions {
  channels: number;
  heads: number;
  dimHead: number;
  groups: number;
  eps: number;
}

/**
 * Self-attention over the H·W positions of a feature map, as diffusers' `Attention` with
 * `group_norm`, biased q/k/v projections and `residual_connection=True`:
 * x + to_out(attention(GroupNorm(x))).
 */
export class VaeAttention extends Module {
  readonly group_norm: GroupNorm;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear, Identity];

  constructor(
    path: string,
    readonly opts: VaeAttentionOptions,
  ) {
    super(path);
    const c = opts.channels;
    const inner = opts.heads * opts.dimHead;
    this.group_norm = this.child('group_norm', (p) => new GroupNorm(p, opts.groups, c, opts.eps));
    this.to_q = this.child('to_q', (p) => new Linear(p, c, inner));
    this.to_k = this.child('to_k', (p) => new Linear(p, c, inner));
    this.to_v = this.child('to_v', (p) => new Linear(p, c, inner));
    this.to_out = [this.child('to_out.0', (p) => new Linear(p, inner, c)), this.child('to_out.1', (p) => new Identity(p))];
  }

  /** x [B, C, H, W] → [B, C, H, W] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const { channels, heads, dimHead } = this.opts;
    // Normalising [B, C, H, W] equals normalising the [B, C, H·W] view: same groups, same statistics.
    const normed = this.group_norm.build(op, x);
    const tokens = b.transpose(b.reshape(normed, b.ints([0, channels, -1])), { perm: [0, 2, 1] }); // [B, C, H, W] → [B, C, H·W] → [B, H·W, C]
    const q = this.to_q.build(op, tokens); // [B, H·W, heads·dimHead]
    const k = this.to_k.build(op, tokens);
    const v = this.to_v.build(op, tokens);
    const o = multiHeadAttention(b, q, k, v, { heads, dimHead });
    const out = this.to_out[0].build(op, o); // [B, H·W, C]
    const image = b.reshape(b.transpose(out, { perm: [0, 2, 1] }), b.shape(x)); // [B, H·W, C] → [B, C, H·W] → [B, C, H, W]
    return b.add(image, x);
  }
}

export interface VaeMidBlockOptions {
  channels: number;
  groups: number;
  addAttention: boolean;
}

/** resnets.0 → (attentions.0) → resnets.1, all at one width (diffusers' UNetMidBlock2D, one layer). */
export class UNetMidBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: VaeAttention[];

  constructor(path: string, o: VaeMidBlockOptions) {
    super(path);
    const c = o.channels;
    const resnet = (p: string) => new ResnetBlock2D(p, { inChannels: c, outChannels: c, tembChannels: null, groups: o.groups, eps: VAE_EPS });
    this.resnets = this.list('resnets', 2, resnet);
    // attention_head_dim = channels, so heads = channels / channels = 1.
    this.attentions = o.addAttention
      ? this.list('attentions', 1, (p) => new VaeAttention(p, { channels: c, heads: 1, dimHead: c, groups: o.groups, eps: VAE_EPS }))
      : [];
  }

  build(op: GraphBuilder, x: Value): Value {
    let h = this.resnets[0]!.build(op, x, null);
    const attn = this.attentions[0];
    if (attn) h = attn.build(op, h);
    return this.resnets[1]!.build(op, h, null);
  }
}

export interface VaeBlockOptions {
  inChannels: number;
  outChannels: number;
  numLayers: number;
  groups: number;
}

/** Resnets, then (except at the last level) a stride-2 conv with the asymmetric zero pad. */
export class DownEncoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly downsamplers: Downsample2D[];

  constructor(path: string, o: VaeBlockOptions & { addDownsample: boolean }) {
    super(path);
    this.resnets = this.list('resnets', o.numLayers, (p, i) =>
      new ResnetBlock2D(p, { inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels, tembChannels: null, groups: o.groups, eps: VAE_EPS }),
    );
    this.downsamplers = o.addDownsample ? this.list('downsamplers', 1, (p) => new Downsample2D(p, o.outChannels, o.outChannels, 0)) : [];
  }

  build(op: GraphBuilder, x: Value): Value {
    let h = x;
    for (const r of this.resnets) h = r.build(op, h, null);
    for (const d of this.downsamplers) h = d.build(op, h);
    return h;
  }
}

/** Resnets, then (except at the last level) nearest 2× upsampling and a 3×3 conv. */
export class UpDecoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly upsamplers: Upsample2D[];

  constructor(path: string, o: VaeBlockOptions & { addUpsample: boolean }) {
    super(path);
    this.resnets = this.list('resnets', o.numLayers, (p, i) =>
      new ResnetBlock2D(p, { inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels, tembChannels: null, groups: o.groups, eps: VAE_EPS }),
    );
    this.upsamplers = o.addUpsample ? this.list('upsamplers', 1, (p) => new Upsample2D(p, o.outChannels, o.outChannels)) : [];
  }

  build(op: GraphBuilder, x: Value): Value {
    let h = x;
    for (const r of this.resnets) h = r.build(op, h, null);
    for (const u of this.upsamplers) h = u.build(op, h);
    return h;
  }
}

export interface VaeCoderOptions {
  /** Channels of the encoder's input image / the decoder's input latents. */
  inChannels: number;
  /** Encoder: latent channels (doubled for mean and log-variance); decoder: image channels. */
  outChannels: number;
  blockOutChannels: readonly number[];
  layersPerBlock: number;
  groups: number;
  midBlockAddAttention: boolean;
}

/** conv_in → DownEncoderBlock2D × levels → mid block → GroupNorm → SiLU → conv_out (2 × latent channels). */
export class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: DownEncoderBlock2D[];
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(path: string, o: VaeCoderOptions) {
    super(path);
    const ch = o.blockOutChannels;
    const last = ch.length - 1;
    this.conv_in = this.child('conv_in', (p) => new Conv2d(p, o.inChannels, ch[0]!, { kernel: 3, padding: 1 }));
    this.down_blocks = this.list('down_blocks', ch.length, (p, i) =>
      new DownEncoderBlock2D(p, {
        inChannels: i === 0 ? ch[0]! : ch[i - 1]!,
        outChannels: ch[i]!,
        numLayers: o.layersPerBlock,
        groups: o.groups,
        addDownsample: i < last,
      }),
    );
    this.mid_block = this.child('mid_block', (p) => new UNetMidBlock2D(p, { channels: ch[last]!, groups: o.groups, addAttention: o.midBlockAddAttention }));
    this.conv_norm_out = this.child('conv_norm_out', (p) => new GroupNorm(p, o.groups, ch[last]!, VAE_EPS));
    this.conv_out = this.child('conv_out', (p) => new Conv2d(p, ch[last]!, 2 * o.outChannels, { kernel: 3, padding: 1 }));
  }

  /** image [B, Cin, H, W] → moments [B, 2·latent, H/2^(levels−1), W/2^(levels−1)] */
  build(op: GraphBuilder, x: Value): Value {
    let h = this.conv_in.build(op, x);
    for (const d of this.down_blocks) h = d.build(op, h);
    h = this.mid_block.build(op, h);
    h = silu(op.at(this.path), this.conv_norm_out.build(op, h));
    return this.conv_out.build(op, h);
  }
}

/** conv_in → mid block → UpDecoderBlock2D × levels (layers_per_block + 1 resnets each) → GroupNorm → SiLU → conv_out. */
export class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: UpDecoderBlock2D[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(path: string, o: VaeCoderOptions) {
    super(path);
    const rev = [...o.blockOutChannels].reverse();
    const levels = rev.length;
    this.conv_in = this.child('conv_in', (p) => new Conv2d(p, o.inChannels, rev[0]!, { kernel: 3, padding: 1 }));
    this.mid_block = this.child('mid_block', (p) => new UNetMidBlock2D(p, { channels: rev[0]!, groups: o.groups, addAttention: o.midBlockAddAttention }));
    this.up_blocks = this.list('up_blocks', levels, (p, i) =>
      new UpDecoderBlock2D(p, {
        inChannels: i === 0 ? rev[0]! : rev[i - 1]!,
        outChannels: rev[i]!,
        numLayers: o.layersPerBlock + 1,
        groups: o.groups,
        addUpsample: i < levels - 1,
      }),
    );
    this.conv_norm_out = this.child('conv_norm_out', (p) => new GroupNorm(p, o.groups, rev[levels - 1]!, VAE_EPS));
    this.conv_out = this.child('conv_out', (p) => new Conv2d(p, rev[levels - 1]!, o.outChannels, { kernel: 3, padding: 1 }));
  }

  /** latents [B, Cl, h, w] → image [B, Cout, h·2^(levels−1), w·2^(levels−1)] */
  build(op: GraphBuilder, z: Value): Value {
    let h = this.conv_in.build(op, z);
    h = this.mid_block.build(op, h);
    // diffusers' upcast_vae(): the up blocks onward in float32 (the mid block's output cast, as `sample.to(upscale_dtype)`)
    const up = op.options.upcastVaeDecoder && op.halfPrecision ? op.float32() : op;
    if (up !== op) h = up.toFloatType(h);
    for (const u of this.up_blocks) h = u.build(up, h);
    h = silu(up.at(this.path), this.conv_norm_out.build(up, h));
    return this.conv_out.build(up, h);
  }
}
