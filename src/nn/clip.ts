/**
 * The CLIP transformers (transformers' modeling_clip.py). Text side: token + position embeddings,
 * pre-norm encoder layers under a causal mask, a final LayerNorm, and pooling at the end-of-text
 * token. Vision side: the same encoder layers, unmasked, over a class token and the image's patches,
 * between a LayerNorm before them and one on the pooled class token after them.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { FLOAT16_MAX } from '../util/float16.js';
import type { ParameterSpec } from '../weights/source.js';
import { Conv2d, LayerNorm, Linear, activation, type Activation } from './layers.js';
import { Module } from './module.js';
import { multiHeadAttention } from './multi-head.js';

/** torch.finfo(float32).min: transformers' additive value for a masked attention score. */
export const MASKED_SCORE = -3.4028234663852886e38;

/** A lookup table (nn.Embedding): int64 ids [...] → rows [..., dim]. */
export class Embedding extends Module {
  readonly weight: ParameterSpec;

  constructor(
    path: string,
    readonly count: number,
    readonly dim: number,
  ) {
    super(path);
    this.weight = this.param('weight', [count, dim]);
  }

  build(op: GraphBuilder, ids: Value): Value {
    const b = op.at(this.path);
    return b.gather(b.param(this.weight), ids, { axis: 0 }); // [count, dim] rows at [...] → [..., dim]
  }

  /**
   * The table grown by `added` rows [N, dim] (textual inversion): ids ≥ count read `added[id − count]`.
   * Two gathers and a select rather than Concat(table, added) → Gather: `added` is a graph input, so a
   * Concat could not be folded and would copy the whole table (the checkpoint's external data) on every
   * run; here only the looked-up rows move. `added` must hold at least one row (Gather needs a valid
   * index even where the select discards it).
   */
  buildExtended(op: GraphBuilder, ids: Value, added: Value): Value {
    const b = op.at(this.path);
    const count = b.constant(BigInt64Array.of(BigInt(this.count)), [], 'count');
    const zero = b.constant(BigInt64Array.of(0n), [], 'zero');
    const isAdded = b.lessOrEqual(count, ids); // [...]: id ≥ count
    const tableRows = b.gather(b.param(this.weight), b.where(isAdded, zero, ids), { axis: 0 }); // [..., dim]
    const addedRows = b.gather(added, b.where(isAdded, b.sub(ids, count), zero), { axis: 0 }); // [..., dim]
    return b.where(b.unsqueeze(isAdded, b.ints([-1])), addedRows, tableRows); // [..., 1] picks per id → [..., dim]
  }
}

/** Token embedding plus the first L rows of the learned position table. */
export class CLIPTextEmbeddings extends Module {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;

  constructor(path: string, vocabSize: number, maxPositions: number, dim: number) {
    super(path);
    this.token_embedding = this.child('token_embedding', (p) => new Embedding(p, vocabSize, dim));
    this.position_embedding = this.child('position_embedding', (p) => new Embedding(p, maxPositions, dim));
  }

  /** ids int64 [B, L] → [B, L, D]; `addedTokens` [N, D]: rows for ids vocabSize… (textual inversion), or null */
  build(op: GraphBuilder, ids: Value, seqLen: Value, addedTokens: Value | null = null): Value {
    const b = op.at(this.path);
    const tokens = addedTokens === null ? this.token_embedding.build(op, ids) : this.token_embedding.buildExtended(op, ids, addedTokens); // [B, L, D]
    const pos = b.slice(b.param(this.position_embedding.weight), b.ints([0]), seqLen, b.ints([0])); // [maxPositions, D] → [L, D]
    return b.add(tokens, pos); // [B, L, D] + [L, D]
  }
}

export interface CLIPAttentionOptions {
  dim: number;
  heads: number;
}

/** Self-attention with biased q/k/v/out projections and an additive mask [B|1, 1, L, L]. */
export class CLIPAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;

  constructor(
    path: string,
    readonly opts: CLIPAttentionOptions,
  ) {
    super(path);
    const d = opts.dim;
    this.q_proj = this.child('q_proj', (p) => new Linear(p, d, d));
    this.k_proj = this.child('k_proj', (p) => new Linear(p, d, d));
    this.v_proj = this.child('v_proj', (p) => new Linear(p, d, d));
    this.out_proj = this.child('out_proj', (p) => new Linear(p, d, d));
  }

  /** x [B, L, D], maskBias [B, 1, L, L] (0 or MASKED_SCORE; null: every key, as the vision tower) → [B, L, D] */
  build(op: GraphBuilder, x: Value, maskBias: Value | null): Value {
    const b = op.at(this.path);
    const { dim, heads } = this.opts;
    // transformers scales the projected queries before the score product.
    const o = multiHeadAttention(b, this.q_proj.build(op, x), this.k_proj.build(op, x), this.v_proj.build(op, x), {
      heads,
      dimHead: dim / heads,
      ...(maskBias ? { bias: maskBias } : {}),
      scaleQueries: true,
    });
    return this.out_proj.build(op, o);
  }
}

/** fc1 → activation → fc2 */
export class CLIPMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    path: string,
    dim: number,
    intermediate: number,
    readonly act: Activation,
  ) {
    super(path);
    this.fc1 = this.child('fc1', (p) => new Linear(p, dim, intermediate));
    this.fc2 = this.child('fc2', (p) => new Linear(p, intermediate, dim));
  }

  build(op: GraphBuilder, x: Value): Value {
    return this.fc2.build(op, activation(op.at(this.path), this.fc1.build(op, x), this.act));
  }
}

export interface CLIPEncoderLayerOptions {
  dim: number;
  heads: number;
  intermediate: number;
  eps: number;
  act: Activation;
}

/** x + attn(LN1(x)), then h + mlp(LN2(h)). */
export class CLIPEncoderLayer extends Module {
  readonly layer_norm1: LayerNorm;
  readonly self_attn: CLIPAttention;
  readonly layer_norm2: LayerNorm;
  readonly mlp: CLIPMLP;

  constructor(path: string, o: CLIPEncoderLayerOptions) {
    super(path);
    this.layer_norm1 = this.child('layer_norm1', (p) => new LayerNorm(p, o.dim, o.eps));
    this.self_attn = this.child('self_attn', (p) => new CLIPAttention(p, { dim: o.dim, heads: o.heads }));
    this.layer_norm2 = this.child('layer_norm2', (p) => new LayerNorm(p, o.dim, o.eps));
    this.mlp = this.child('mlp', (p) => new CLIPMLP(p, o.dim, o.intermediate, o.act));
  }

  /** x [B, L, D], maskBias as CLIPAttention's (null: unmasked) → [B, L, D] */
  build(op: GraphBuilder, x: Value, maskBias: Value | null): Value {
    const b = op.at(this.path);
    const h = b.add(x, this.self_attn.build(op, this.layer_norm1.build(op, x), maskBias));
    return b.add(h, this.mlp.build(op, this.layer_norm2.build(op, h)));
  }
}

/** The encoder sizes the text and vision towers share. */
export interface CLIPEncoderOptions {
  dim: number;
  heads: number;
  intermediate: number;
  layers: number;
  eps: number;
  act: Activation;
}

export interface CLIPTextTransformerOptions extends CLIPEncoderOptions {
  vocabSize: number;
  maxPositions: number;
  eosTokenId: number;
}

export interface CLIPTextTransformerOutputs {
  /** After the final LayerNorm: [B, L, D]. */
  lastHiddenState: Value;
  /** The final-LayerNorm row at each sequence's end-of-text position: [B, D]. */
  pooled: Value;
  /** Embeddings output, then each layer's output (before the final LayerNorm): layers + 1 values of [B, L, D]. */
  hiddenStates: Value[];
}

/** transformers' CLIPTextTransformer (`text_model.*`). */
export class CLIPTextTransformer extends Module {
  readonly embeddings: CLIPTextEmbeddings;
  readonly layers: CLIPEncoderLayer[];
  readonly final_layer_norm: LayerNorm;

  constructor(
    path: string,
    readonly opts: CLIPTextTransformerOptions,
  ) {
    super(path);
    const o = opts;
    this.embeddings = this.child('embeddings', (p) => new CLIPTextEmbeddings(p, o.vocabSize, o.maxPositions, o.dim));
    this.layers = this.list('encoder.layers', o.layers, (p) =>
      new CLIPEncoderLayer(p, { dim: o.dim, heads: o.heads, intermediate: o.intermediate, eps: o.eps, act: o.act }),
    );
    this.final_layer_norm = this.child('final_layer_norm', (p) => new LayerNorm(p, o.dim, o.eps));
  }

  /**
   * The additive attention mask [B, 1, L, L]: 0 where key j ≤ query i and key j is not padding,
   * MASKED_SCORE elsewhere. transformers adds a causal and a padding mask of finfo.min each; one
   * combined mask gives the same softmax except for rows with every key masked (NaN there, uniform
   * weights here).
   */
  maskBias(op: GraphBuilder, seqLen: Value, keyMask: Value): Value {
    const b = op.at(`${this.path}.causal_mask`);
    const zero = b.constant(BigInt64Array.of(0n), [], 'zero');
    const one = b.constant(BigInt64Array.of(1n), [], 'one');
    const positions = b.range(zero, b.squeeze(seqLen, b.ints([0])), one); // [L]
    const queries = b.unsqueeze(positions, b.ints([1])); // [L, 1]
    const keys = b.unsqueeze(positions, b.ints([0])); // [1, L]
    const causal = b.lessOrEqual(keys, queries); // [L, L]
    const notPadding = b.cast(b.unsqueeze(keyMask, b.ints([1, 2])), { to: OnnxDataType.BOOL }); // [B, L] → [B, 1, 1, L]
    const allowed = b.and(causal, notPadding); // [L, L] & [B, 1, 1, L] → [B, 1, L, L]
    // transformers' finfo(dtype).min: float16's is −65504 (float32's would round to −Infinity)
    const masked = b.dtype === 'float16' ? -FLOAT16_MAX : MASKED_SCORE;
    return b.where(allowed, b.scalar(0), b.scalar(masked)); // [B, 1, L, L]
  }

  /**
   * ids int64 [B, L], keyMask float32 [B, L] (1 = token, 0 = padding); `addedTokens` [N, D]: token
   * embedding rows for ids vocabSize … vocabSize + N − 1 (textual inversion), null for the plain table.
   */
  build(op: GraphBuilder, ids: Value, keyMask: Value, addedTokens: Value | null = null): CLIPTextTransformerOutputs {
    const b = op.at(this.path);
    const seqLen = b.slice(b.shape(ids), b.ints([1]), b.ints([2])); // [1]: L
    const bias = this.maskBias(op, seqLen, keyMask);
    let h = this.embeddings.build(op, ids, seqLen, addedTokens);
    const hiddenStates = [h];
    for (const layer of this.layers) {
      h = layer.build(op, h, bias);
      hiddenStates.push(h);
    }
    const lastHiddenState = this.final_layer_norm.build(op, h);
    return { lastHiddenState, pooled: this.pool(op, ids, lastHiddenState), hiddenStates };
  }

  /**
   * transformers' pooling rule: configs with the legacy eos_token_id 2 take the position of the
   * largest id (the end-of-text token has CLIP's largest id); others take the first position whose
   * id is eos_token_id (position 0 when there is none, as argmax over all-false gives).
   */
  pool(op: GraphBuilder, ids: Value, hidden: Value): Value {
    const b = op.at(`${this.path}.pool`);
    const eos = this.opts.eosTokenId;
    const scores =
      eos === 2
        ? b.cast(ids, { to: OnnxDataType.INT32 }) // [B, L]
        : b.cast(b.equal(ids, b.constant(BigInt64Array.of(BigInt(eos)), [], 'eos')), { to: OnnxDataType.INT32 }); // [B, L]
    const index = b.argMax(scores, { axis: 1, keepdims: 1, select_last_index: 0 }); // [B, L] → [B, 1]
    return b.gatherND(hidden, index, { batch_dims: 1 }); // [B, L, D] at [B, 1] → [B, D]
  }
}

/** Class token + patch embeddings (a strided conv, no bias) + the learned position table (`embeddings.*`). */
export class CLIPVisionEmbeddings extends Module {
  readonly class_embedding: ParameterSpec;
  readonly patch_embedding: Conv2d;
  readonly position_embedding: Embedding;

  constructor(
    path: string,
    readonly opts: { dim: number; channels: number; imageSize: number; patchSize: number },
  ) {
    super(path);
    const { dim, channels, imageSize, patchSize } = opts;
    const patches = Math.floor(imageSize / patchSize) ** 2;
    this.class_embedding = this.param('class_embedding', [dim]);
    this.patch_embedding = this.child('patch_embedding', (p) => new Conv2d(p, channels, dim, { kernel: patchSize, stride: patchSize, bias: false }));
    this.position_embedding = this.child('position_embedding', (p) => new Embedding(p, patches + 1, dim));
  }

  /** pixels [B, C, S, S] → [B, 1 + N, D] (N = (S / patch)², the class token first) */
  build(op: GraphBuilder, pixels: Value): Value {
    const b = op.at(this.path);
    const dim = this.opts.dim;
    const grid = this.patch_embedding.build(op, pixels); // [B, D, S/p, S/p]
    const patches = b.transpose(b.reshape(grid, b.ints([0, 0, -1])), { perm: [0, 2, 1] }); // → [B, D, N] → [B, N, D]
    const batch = b.shape(pixels, { start: 0, end: 1 }); // [1]: B
    const classShape = b.concat([batch, b.ints([1, dim])], { axis: 0 }); // [3]: B, 1, D
    const cls = b.expand(b.paramReshaped(this.class_embedding, [1, 1, dim]), classShape); // [1, 1, D] → [B, 1, D]
    const tokens = b.concat([cls, patches], { axis: 1 }); // [B, 1 + N, D]
    return b.add(tokens, b.param(this.position_embedding.weight)); // + [1 + N, D]: every position, in order
  }
}

export interface CLIPVisionTransformerOptions extends CLIPEncoderOptions {
  channels: number;
  imageSize: number;
  patchSize: number;
}

export interface CLIPVisionTransformerOutputs {
  /** The last encoder layer's output (no final LayerNorm on it): [B, 1 + N, D]. */
  lastHiddenState: Value;
  /** The class token through `post_layernorm`: [B, D]. */
  pooled: Value;
}

/** transformers' CLIPVisionTransformer (`vision_model.*`, its LayerNorm before the encoder spelt `pre_layrnorm`). */
export class CLIPVisionTransformer extends Module {
  readonly embeddings: CLIPVisionEmbeddings;
  readonly pre_layrnorm: LayerNorm;
  readonly layers: CLIPEncoderLayer[];
  readonly post_layernorm: LayerNorm;

  constructor(
    path: string,
    readonly opts: CLIPVisionTransformerOptions,
  ) {
    super(path);
    const o = opts;
    this.embeddings = this.child('embeddings', (p) =>
      new CLIPVisionEmbeddings(p, { dim: o.dim, channels: o.channels, imageSize: o.imageSize, patchSize: o.patchSize }),
    );
    this.pre_layrnorm = this.child('pre_layrnorm', (p) => new LayerNorm(p, o.dim, o.eps));
    this.layers = this.list('encoder.layers', o.layers, (p) =>
      new CLIPEncoderLayer(p, { dim: o.dim, heads: o.heads, intermediate: o.intermediate, eps: o.eps, act: o.act }),
    );
    this.post_layernorm = this.child('post_layernorm', (p) => new LayerNorm(p, o.dim, o.eps));
  }

  /** pixels [B, C, S, S] (S = imageSize) */
  build(op: GraphBuilder, pixels: Value): CLIPVisionTransformerOutputs {
    const b = op.at(this.path);
    let h = this.pre_layrnorm.build(op, this.embeddings.build(op, pixels)); // [B, 1 + N, D]
    for (const layer of this.layers) h = layer.build(op, h, null);
    const cls = b.squeeze(b.slice(h, b.ints([0]), b.ints([1]), b.ints([1])), b.ints([1])); // [B, 1 + N, D] → [B, 1, D] → [B, D]
    return { lastHiddenState: h, pooled: this.post_layernorm.build(op, cls) };
  }
}
