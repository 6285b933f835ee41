/**
 * Transformer2DModel and its parts (diffusers' attention.py / attention_processor.py /
 * transformer_2d.py), for `norm_type: "layer_norm"` continuous inputs as in SD 1.x/2.x/XL.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Conv2d, GroupNorm, LayerNorm, Linear } from './layers.js';
import { Identity, Module } from './module.js';
import { multiHeadAttention } from './multi-head.js';

export interface AttentionOptions {
  queryDim: number;
  /** Key/value input width; null for self-attention. */
  crossAttentionDim: number | null;
  heads: number;
  dimHead: number;
}

/** Multi-head attention: to_q/to_k/to_v (no bias) → softmax(QKᵀ/√d)·V → to_out.0 (+ to_out.1 Dropout). */
export class Attention extends Module {
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: [Linear, Identity];

  constructor(
    path: string,
    readonly opts: AttentionOptions,
  ) {
    super(path);
    const inner = opts.heads * opts.dimHead;
    const kvDim = opts.crossAttentionDim ?? opts.queryDim;
    this.to_q = this.child('to_q', (p) => new Linear(p, opts.queryDim, inner, { bias: false }));
    this.to_k = this.child('to_k', (p) => new Linear(p, kvDim, inner, { bias: false }));
    this.to_v = this.child('to_v', (p) => new Linear(p, kvDim, inner, { bias: false }));
    this.to_out = [
      this.child('to_out.0', (p) => new Linear(p, inner, opts.queryDim)),
      this.child('to_out.1', (p) => new Identity(p)),
    ];
  }

  /**
   * x [B, S, D], context [B, L, Dc] (or x itself) → [B, S, D]. With the trace option `fuseQkv` (diffusers'
   * `fuse_qkv_projections`) self-attention computes q, k, v with one matmul (`to_qkv`), cross-attention
   * k, v (`to_kv`; q still reads x alone).
   */
  build(op: GraphBuilder, x: Value, context: Value | null): Value {
    let q: Value, k: Value, v: Value;
    if (!op.options.fuseQkv) {
      const kv = context ?? x;
      q = this.to_q.build(op, x); // [B, S, H·Dh]
      k = this.to_k.build(op, kv); // [B, L, H·Dh]
      v = this.to_v.build(op, kv); // [B, L, H·Dh]
    } else if (context === null) {
      [q, k, v] = this.fusedProjection(op, 'to_qkv', [this.to_q, this.to_k, this.to_v], x) as [Value, Value, Value];
    } else {
      q = this.to_q.build(op, x);
      [k, v] = this.fusedProjection(op, 'to_kv', [this.to_k, this.to_v], context) as [Value, Value];
    }
    const o = multiHeadAttention(op.at(this.path), q, k, v, this.opts);
    return this.to_out[0].build(op, o);
  }

  /** Bias-free projections of one input as one matmul: [B, L, Din] → n × [B, L, H·Dh] */
  private fusedProjection(op: GraphBuilder, name: string, parts: readonly Linear[], x: Value): Value[] {
    const b = op.at(`${this.path}.${name}`);
    const key = `${this.path}.${name}.weight`;
    const weights = parts.map((p) => p.weight);
    const y =
      op.options.linear === 'fused'
        ? b.fusedMatMul(x, b.paramConcat(weights, key), { transB: 1, alpha: 1 }) // x [.., Din] · W[n·H·Dh, Din]ᵀ
        : b.matMul(x, b.paramConcat(weights, key, { transposed: true })); // x [.., Din] · Wᵀ[Din, n·H·Dh]
    return b.chunk(y, { axis: -1, sizes: parts.map((p) => p.outFeatures) }); // [B, L, n·H·Dh] → n × [B, L, H·Dh]
  }
}

/** GEGLU: proj → (h, gate) halves → h · GELU(gate). */
export class GEGLU extends Module {
  readonly proj: Linear;

  constructor(path: string, dimIn: number, dimOut: number) {
    super(path);
    this.proj = this.child('proj', (p) => new Linear(p, dimIn, dimOut * 2));
  }

  /** [..., dimIn] → [..., dimOut] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const half = this.proj.outFeatures / 2;
    const [h, gate] = b.chunk(this.proj.build(op, x), { axis: -1, sizes: [half, half] }); // [..., 2·dimOut] → 2 × [..., dimOut]
    return b.mul(h!, b.gelu(gate!, { approximate: 'none' }));
  }
}

/** net.0 GEGLU → net.1 Dropout → net.2 Linear (mult 4). */
export class FeedForward extends Module {
  readonly net: [GEGLU, Identity, Linear];

  constructor(path: string, dim: number) {
    super(path);
    const inner = dim * 4;
    this.net = [
      this.child('net.0', (p) => new GEGLU(p, dim, inner)),
      this.child('net.1', (p) => new Identity(p)),
      this.child('net.2', (p) => new Linear(p, inner, dim)),
    ];
  }

  build(op: GraphBuilder, x: Value): Value {
    return this.net[2].build(op, this.net[0].build(op, x));
  }
}

export interface TransformerBlockOptions {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
}

/** Pre-norm self-attention, cross-attention and GEGLU feed-forward, each with a residual. */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;

  constructor(path: string, o: TransformerBlockOptions) {
    super(path);
    const attn = (crossAttentionDim: number | null) => ({ queryDim: o.dim, crossAttentionDim, heads: o.heads, dimHead: o.dimHead });
    this.norm1 = this.child('norm1', (p) => new LayerNorm(p, o.dim, 1e-5));
    this.attn1 = this.child('attn1', (p) => new Attention(p, attn(null)));
    this.norm2 = this.child('norm2', (p) => new LayerNorm(p, o.dim, 1e-5));
    this.attn2 = this.child('attn2', (p) => new Attention(p, attn(o.crossAttentionDim)));
    this.norm3 = this.child('norm3', (p) => new LayerNorm(p, o.dim, 1e-5));
    this.ff = this.child('ff', (p) => new FeedForward(p, o.dim));
  }

  /** x [B, S, D], context [B, L, Dc] → [B, S, D] */
  build(op: GraphBuilder, x: Value, context: Value): Value {
    const b = op.at(this.path);
    let h = b.add(this.attn1.build(op, this.norm1.build(op, x), null), x);
    h = b.add(this.attn2.build(op, this.norm2.build(op, h), context), h);
    return b.add(this.ff.build(op, this.norm3.build(op, h)), h);
  }
}

export interface Transformer2DOptions {
  heads: number;
  dimHead: number;
  inChannels: number;
  numLayers: number;
  crossAttentionDim: number;
  normNumGroups: number;
  useLinearProjection: boolean;
}

/** GroupNorm → proj_in → transformer blocks over H·W tokens → proj_out, plus the input. */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly proj_in: Linear | Conv2d;
  readonly transformer_blocks: BasicTransformerBlock[];
  readonly proj_out: Linear | Conv2d;

  constructor(
    path: string,
    readonly opts: Transformer2DOptions,
  ) {
    super(path);
    const inner = opts.heads * opts.dimHead;
    const c = opts.inChannels;
    this.norm = this.child('norm', (p) => new GroupNorm(p, opts.normNumGroups, c, 1e-6));
    const proj = (p: string, i: number, o: number) =>
      opts.useLinearProjection ? new Linear(p, i, o) : new Conv2d(p, i, o, { kernel: 1 });
    this.proj_in = this.child('proj_in', (p) => proj(p, c, inner));
    this.transformer_blocks = this.list('transformer_blocks', opts.numLayers, (p) =>
      new BasicTransformerBlock(p, { dim: inner, heads: opts.heads, dimHead: opts.dimHead, crossAttentionDim: opts.crossAttentionDim }),
    );
    this.proj_out = this.child('proj_out', (p) => proj(p, inner, c));
  }

  /** x [B, C, H, W], context [B, L, Dc] → [B, C, H, W] */
  build(op: GraphBuilder, x: Value, context: Value): Value {
    const b = op.at(this.path);
    const inner = this.opts.heads * this.opts.dimHead;
    // [B, ch, H, W] → [B, ch, H·W] → [B, H·W, ch]
    const toTokens = (t: Value, ch: number): Value => b.transpose(b.reshape(t, b.ints([0, ch, -1])), { perm: [0, 2, 1] });
    // [B, H·W, ch] → [B, ch, H·W] → [B, ch, H, W] (the shape of `like`)
    const toImage = (t: Value, like: Value): Value => b.reshape(b.transpose(t, { perm: [0, 2, 1] }), b.shape(like));

    const normed = this.norm.build(op, x);
    let h: Value;
    if (this.proj_in instanceof Linear) {
      h = this.proj_in.build(op, toTokens(normed, this.opts.inChannels)); // [B, H·W, C] → [B, H·W, inner]
    } else {
      const projected = this.proj_in.build(op, normed); // [B, inner, H, W]
      h = toTokens(projected, inner); // [B, H·W, inner]
    }
    for (const block of this.transformer_blocks) h = block.build(op, h, context);
    let out: Value;
    if (this.proj_out instanceof Linear) {
      out = toImage(this.proj_out.build(op, h), x); // [B, H·W, inner] → [B, H·W, C] → [B, C, H, W]
    } else {
      const channelsFirst = b.transpose(h, { perm: [0, 2, 1] }); // [B, H·W, inner] → [B, inner, H·W]
      const batch = b.slice(b.shape(x), b.ints([0]), b.ints([1]));
      const channels = b.ints([inner]);
      const hw = b.slice(b.shape(x), b.ints([2]), b.ints([4]));
      const img = b.reshape(channelsFirst, b.concat([batch, channels, hw], { axis: 0 })); // → [B, inner, H, W]
      out = this.proj_out.build(op, img); // [B, C, H, W]
    }
    return b.add(out, x);
  }
}
