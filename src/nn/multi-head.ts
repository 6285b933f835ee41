/**
 * The attention core the UNet, VAE and CLIP attentions share: queries [B, S, H·Dh] against keys and
 * values [B, L, H·Dh] → [B, S, H·Dh]. With the trace option `attention: 'fused'` it is one
 * com.microsoft MultiHeadAttention; with 'plain' the same from standard ops (Reshape/Transpose,
 * MatMul, Softmax, MatMul), for execution providers without a correct fused kernel.
 *
 * float16 graphs: the plain form computes in float32 exactly what the model's trace option
 * `attentionUpcast` says, as diffusers' `Attention` with `upcast_attention` ('scores': QKᵀ and the
 * softmax) or `upcast_softmax` ('softmax'), the probabilities cast back before the product with V.
 * The fused kernel (CUDA) takes float16 in and accumulates the scores and softmax in float32 itself,
 * as torch's scaled_dot_product_attention in diffusers' default processor does.
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
    return b.multiHeadAttention(q, k, v, null, null, o.bias ?? null, { num_heads: heads, scale });
  }
  // [B, S, H·Dh] → [B, S, H, Dh] → permuted (heads first)
  const split = (t: Value, perm: number[]): Value => b.transpose(b.reshape(t, b.ints([0, 0, heads, dimHead])), { perm });
  const upcast = b.halfPrecision ? b.options.attentionUpcast : undefined;
  const f32 = b.float32();
  const s = upcast === 'scores' ? f32 : b; // where the scores are computed
  const toS = (t: Value): Value => (s === b ? t : s.toFloatType(t)); // float16 → float32 when the scores are upcast
  const queries = split(toS(o.scaleQueries ? b.mul(q, b.scalar(scale)) : q), [0, 2, 1, 3]); // [B, H, S, Dh]
  const product = s.matMul(queries, split(toS(k), [0, 2, 3, 1])); // [B, H, S, Dh] · [B, H, Dh, L] → [B, H, S, L]
  const scaled = o.scaleQueries ? product : s.mul(product, s.scalar(scale));
  const scores = o.bias ? s.add(scaled, toS(o.bias)) : scaled; // + [B|1, 1, S, L]
  const probs =
    upcast === undefined
      ? b.softmax(scores, { axis: -1 }) // over the keys
      : b.toFloatType(f32.softmax(s === b ? f32.toFloatType(scores) : scores, { axis: -1 })); // in float32, back to float16
  const ctx = b.matMul(probs, split(v, [0, 2, 1, 3])); // [B, H, S, L] · [B, H, L, Dh] → [B, H, S, Dh]
  return b.reshape(b.transpose(ctx, { perm: [0, 2, 1, 3] }), b.ints([0, 0, heads * dimHead])); // → [B, S, H, Dh] → [B, S, H·Dh]
}
