/**
 * The attention core the UNet, VAE and CLIP attentions share: queries [B, S, H·Dh] against keys and
 * values [B, L, H·Dh] → [B, S, H·Dh]. With the trace option `attention: 'fused'` it is one
 * com.microsoft MultiHeadAttention; with 'plain' the same from standard ops (Reshape/Transpose,
 * MatMul, Softmax, MatMul), for execution providers without a correct fused kernel.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';

export interface MultiHeadOptions {
  heads: number;
  dimHead: number;
  /** Added to the scores [B, H, S, L] before the softmax (CLIP's causal and padding mask). */
  bias?: Value;
  /** Scale the queries before the score product (transformers' order) instead of the scores after it. */
  scaleQueries?: boolean;
}

export function multiHeadAttention(b: GraphBuilder, q: Value, k: Value, v: Value, o: MultiHeadOptions): Value {
  const { heads, dimHead } = o;
  const scale = 1 / Math.sqrt(dimHead);
  if (b.options.attention === 'fused') {
    const inputs = o.bias ? [q, k, v, null, null, o.bias] : [q, k, v];
    return b.op('MultiHeadAttention', inputs, { domain: 'com.microsoft', attrs: { num_heads: heads, scale: { float: scale } } });
  }
  const split = (t: Value, perm: number[]): Value =>
    b.op('Transpose', [b.op('Reshape', [t, b.ints([0, 0, heads, dimHead])])], { attrs: { perm } });
  const queries = split(o.scaleQueries ? b.op('Mul', [q, b.scalar(scale)]) : q, [0, 2, 1, 3]); // [B, H, S, Dh]
  const product = b.op('MatMul', [queries, split(k, [0, 2, 3, 1])]); // [B, H, S, L]
  const scaled = o.scaleQueries ? product : b.op('Mul', [product, b.scalar(scale)]);
  const scores = o.bias ? b.op('Add', [scaled, o.bias]) : scaled;
  const probs = b.op('Softmax', [scores], { attrs: { axis: -1 } });
  const ctx = b.op('MatMul', [probs, split(v, [0, 2, 1, 3])]); // [B, H, S, Dh]
  return b.op('Reshape', [b.op('Transpose', [ctx], { attrs: { perm: [0, 2, 1, 3] } }), b.ints([0, 0, heads * dimHead])]);
}
