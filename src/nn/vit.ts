/**
 * The ViT encoder pieces transformers' DPT (modeling_dpt.py, `DPTViT*`) and Dinov2 (modeling_dinov2.py)
 * share: self-attention under `attention.attention.{query,key,value}` + `attention.output.dense`, and
 * DPT's pre-norm layer (`layernorm_before`, `intermediate.dense`, `output.dense`, `layernorm_after`).
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { applyActivation, type HFActivation } from './hf-activation.js';
import { LayerNorm, Linear } from './layers.js';
import { Module } from './module.js';
import { multiHeadAttention } from './multi-head.js';

export interface ViTAttentionOptions {
  dim: number;
  heads: number;
  qkvBias: boolean;
}

/** `attention.attention.{query,key,value}` then `attention.output.dense`: [B, L, D] → [B, L, D]. */
export class ViTAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly dense: Linear;

  constructor(
    path: string,
    readonly opts: ViTAttentionOptions,
  ) {
    super(path);
    const { dim, qkvBias } = opts;
    this.query = this.child('attention.query', (p) => new Linear(p, dim, dim, { bias: qkvBias }));
    this.key = this.child('attention.key', (p) => new Linear(p, dim, dim, { bias: qkvBias }));
    this.value = this.child('attention.value', (p) => new Linear(p, dim, dim, { bias: qkvBias }));
    this.dense = this.child('output.dense', (p) => new Linear(p, dim, dim));
  }

  build(op: GraphBuilder, x: Value): Value {
    const { dim, heads } = this.opts;
    // transformers divides the scores by √head_dim after the product.
    const ctx = multiHeadAttention(op.at(this.path), this.query.build(op, x), this.key.build(op, x), this.value.build(op, x), { heads, dimHead: dim / heads });
    return this.dense.build(op, ctx);
  }
}

export interface DPTViTLayerOptions extends ViTAttentionOptions {
  intermediate: number;
  eps: number;
  act: HFActivation;
}

/** DPTViTLayer: h = x + attn(LN_before(x)); h + output(act(intermediate(LN_after(h)))). */
export class DPTViTLayer extends Module {
  readonly layernorm_before: LayerNorm;
  readonly attention: ViTAttention;
  readonly layernorm_after: LayerNorm;
  readonly intermediate: Linear;
  readonly output: Linear;

  constructor(
    path: string,
    readonly opts: DPTViTLayerOptions,
  ) {
    super(path);
    const o = opts;
    this.layernorm_before = this.child('layernorm_before', (p) => new LayerNorm(p, o.dim, o.eps));
    this.attention = this.child('attention', (p) => new ViTAttention(p, o));
    this.layernorm_after = this.child('layernorm_after', (p) => new LayerNorm(p, o.dim, o.eps));
    this.intermediate = this.child('intermediate.dense', (p) => new Linear(p, o.dim, o.intermediate));
    this.output = this.child('output.dense', (p) => new Linear(p, o.intermediate, o.dim));
  }

  /** [B, L, D] → [B, L, D] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const h = b.add(this.attention.build(op, this.layernorm_before.build(op, x)), x);
    const mlp = applyActivation(b, this.intermediate.build(op, this.layernorm_after.build(op, h)), this.opts.act);
    return b.add(this.output.build(op, mlp), h);
  }
}

/** Patch tokens [B, h·w, D] → a feature map [B, D, h, w]; `grid` is [2] int64 (h, w). */
export function patchesToMap(op: GraphBuilder, patches: Value, grid: Value): Value {
  const shape = op.concat([op.ints([0]), grid, op.ints([-1])], { axis: 0 }); // [4]: B, h, w, D
  return op.transpose(op.reshape(patches, shape), { perm: [0, 3, 1, 2] }); // [B, h, w, D] → [B, D, h, w]
}

/** Tokens [B, 1 + h·w, D] (class token first) → the patch tokens as a feature map [B, D, h, w]. */
export function tokensToMap(op: GraphBuilder, tokens: Value, grid: Value): Value {
  return patchesToMap(op, op.slice(tokens, op.ints([1]), op.ints([Number.MAX_SAFE_INTEGER]), op.ints([1])), grid); // [B, h·w, D] → …
}

/** A feature map [B, C, h, w] → tokens [B, h·w, C]. */
export function mapToTokens(op: GraphBuilder, map: Value): Value {
  return op.transpose(op.reshape(map, op.ints([0, 0, -1])), { perm: [0, 2, 1] }); // [B, C, h·w] → [B, h·w, C]
}

/** The class token [1, 1, D] repeated over the batch of `like` [B, …] and put before `tokens` [B, N, D] → [B, 1 + N, D]. */
export function prependClassToken(op: GraphBuilder, cls: Value, tokens: Value, dim: number): Value {
  const batch = op.shape(tokens, { start: 0, end: 1 }); // [1]: B
  const clsB = op.expand(cls, op.concat([batch, op.ints([1, dim])], { axis: 0 })); // [1, 1, D] → [B, 1, D]
  return op.concat([clsB, tokens], { axis: 1 });
}
