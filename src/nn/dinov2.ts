/**
 * transformers' Dinov2 backbone (modeling_dinov2.py, 4.44), Depth Anything's encoder: patch
 * embeddings with a class token (and a `mask_token`, stored but unused at inference), position
 * embeddings interpolated bicubically to the input's patch grid, pre-norm layers with layer scale,
 * and the final `layernorm` applied to every returned feature map.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { ParameterSpec } from '../weights/source.js';
import { applyActivation, type HFActivation } from './hf-activation.js';
import { Conv2d, LayerNorm, Linear, silu } from './layers.js';
import { Module } from './module.js';
import { mapToTokens, prependClassToken, ViTAttention } from './vit.js';

/** The Dinov2Config fields the backbone reads. */
export interface Dinov2NetConfig {
  readonly hiddenSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly mlpRatio: number;
  readonly layerNormEps: number;
  readonly imageSize: number;
  readonly patchSize: number;
  readonly numChannels: number;
  readonly qkvBias: boolean;
  readonly useSwigluFfn: boolean;
  readonly applyLayernorm: boolean;
  /** Whether the checkpoint has `embeddings.mask_token` (transformers ≥ 4.47's `use_mask_token`; always before). */
  readonly useMaskToken: boolean;
  /** Indices into ["stem", "stage1", …] of the returned feature maps, ascending. */
  readonly outIndices: readonly number[];
}

/**
 * `embeddings.*`. The position table covers the config's image_size; for another grid it is resized
 * as transformers 4.44 does: torch bicubic (A = −0.75, align_corners=False) with the scale factor
 * (grid + 0.1) / √N given, not the output size — the source coordinates follow that scale, so the
 * result differs from a plain resize to the grid. transformers skips the resize when the grid has
 * as many patches as the table and the input is square; a scale of exactly 1 does the same here.
 */
export class Dinov2Embeddings extends Module {
  readonly cls_token: ParameterSpec;
  readonly mask_token: ParameterSpec | null;
  readonly position_embeddings: ParameterSpec;
  readonly projection: Conv2d;
  /** Side of the square grid the position table was learned on. */
  readonly tableGrid: number;

  constructor(
    path: string,
    readonly config: Dinov2NetConfig,
  ) {
    super(path);
    const c = config;
    this.tableGrid = Math.floor(c.imageSize / c.patchSize);
    this.cls_token = this.param('cls_token', [1, 1, c.hiddenSize]);
    this.mask_token = c.useMaskToken ? this.param('mask_token', [1, c.hiddenSize]) : null; // only for masked-image pretraining
    this.position_embeddings = this.param('position_embeddings', [1, this.tableGrid ** 2 + 1, c.hiddenSize]);
    this.projection = this.child('patch_embeddings.projection', (p) => new Conv2d(p, c.numChannels, c.hiddenSize, { kernel: c.patchSize, stride: c.patchSize }));
  }

  /** pixels [B, C, H, W] → tokens [B, 1 + h·w, D] (h = ⌊H/p⌋, w = ⌊W/p⌋) */
  build(op: GraphBuilder, pixels: Value): Value {
    const b = op.at(this.path);
    const d = this.config.hiddenSize;
    const g = this.tableGrid;
    const grid = this.projection.build(op, pixels); // [B, D, h, w]
    const tokens = prependClassToken(b, b.param(this.cls_token), mapToTokens(b, grid), d); // [B, 1 + h·w, D]

    const hw = b.shape(grid, { start: 2, end: 4 }); // [2] int64: h, w
    const HW = b.shape(pixels, { start: 2, end: 4 }); // [2] int64: H, W
    const pick = (v: Value, i: number) => b.slice(v, b.ints([i]), b.ints([i + 1])); // [1]
    const samePatchCount = b.equal(b.mul(pick(hw, 0), pick(hw, 1)), b.ints([g * g])); // [1]
    const square = b.equal(pick(HW, 0), pick(HW, 1)); // [1]
    const keep = b.and(samePatchCount, square); // [1]: transformers returns the table as it is
    const wanted = b.div(b.add(b.cast(hw, { to: OnnxDataType.FLOAT }), b.scalar(0.1)), b.scalar(Math.sqrt(g * g))); // [2]: (h + 0.1)/√N, (w + 0.1)/√N
    const scales = b.concat([b.constant(Float32Array.of(1, 1), [2], 'unit'), b.where(keep, b.constant(Float32Array.of(1, 1), [2], 'unit'), wanted)], { axis: 0 }); // [4]

    const table = b.param(this.position_embeddings); // [1, 1 + N, D]
    const clsPos = b.slice(table, b.ints([0]), b.ints([1]), b.ints([1])); // [1, 1, D]
    const patchPos = b.slice(table, b.ints([1]), b.ints([g * g + 1]), b.ints([1])); // [1, N, D]
    const square2d = b.transpose(b.reshape(patchPos, b.ints([1, g, g, d])), { perm: [0, 3, 1, 2] }); // [1, D, g, g]
    const resized = b.resize(square2d, null, scales, null, { mode: 'cubic', cubic_coeff_a: -0.75, coordinate_transformation_mode: 'half_pixel', exclude_outside: 0 }); // [1, D, h, w]
    const pos = b.concat([clsPos, mapToTokens(b, resized)], { axis: 1 }); // [1, 1 + h·w, D]
    return b.add(tokens, pos);
  }
}

/** Dinov2MLP (fc1 → act → fc2) or Dinov2SwiGLUFFN (weights_in → silu(x1)·x2 → weights_out). */
export class Dinov2MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    path: string,
    readonly swiglu: boolean,
    dim: number,
    mlpRatio: number,
    readonly act: HFActivation,
  ) {
    super(path);
    const hidden = Math.trunc(dim * mlpRatio);
    if (swiglu) {
      const h = Math.floor((Math.trunc((hidden * 2) / 3) + 7) / 8) * 8;
      this.fc1 = this.child('weights_in', (p) => new Linear(p, dim, 2 * h));
      this.fc2 = this.child('weights_out', (p) => new Linear(p, h, dim));
    } else {
      this.fc1 = this.child('fc1', (p) => new Linear(p, dim, hidden));
      this.fc2 = this.child('fc2', (p) => new Linear(p, hidden, dim));
    }
  }

  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const h = this.fc1.build(op, x);
    if (!this.swiglu) return this.fc2.build(op, applyActivation(b, h, this.act));
    const half = this.fc2.inFeatures;
    const [x1, x2] = b.chunk(h, { axis: -1, sizes: [half, half] }); // chunk(2, dim=-1)
    return this.fc2.build(op, b.mul(silu(b, x1!), x2!));
  }
}

/** Dinov2Layer: h = x + λ1·attn(norm1(x)); h + λ2·mlp(norm2(h)). */
export class Dinov2Layer extends Module {
  readonly norm1: LayerNorm;
  readonly attention: ViTAttention;
  readonly lambda1: ParameterSpec;
  readonly norm2: LayerNorm;
  readonly mlp: Dinov2MLP;
  readonly lambda2: ParameterSpec;

  constructor(path: string, c: Dinov2NetConfig, act: HFActivation) {
    super(path);
    const d = c.hiddenSize;
    this.norm1 = this.child('norm1', (p) => new LayerNorm(p, d, c.layerNormEps));
    this.attention = this.child('attention', (p) => new ViTAttention(p, { dim: d, heads: c.numAttentionHeads, qkvBias: c.qkvBias }));
    this.lambda1 = this.param('layer_scale1.lambda1', [d]);
    this.norm2 = this.child('norm2', (p) => new LayerNorm(p, d, c.layerNormEps));
    this.mlp = this.child('mlp', (p) => new Dinov2MLP(p, c.useSwigluFfn, d, c.mlpRatio, act));
    this.lambda2 = this.param('layer_scale2.lambda1', [d]);
  }

  /** [B, L, D] → [B, L, D] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    const h = b.add(b.mul(this.attention.build(op, this.norm1.build(op, x)), b.param(this.lambda1)), x);
    return b.add(b.mul(this.mlp.build(op, this.norm2.build(op, h)), b.param(this.lambda2)), h);
  }
}

/** Dinov2Backbone (`backbone.*`): embeddings, `encoder.layer.{i}`, `layernorm`. */
export class Dinov2Backbone extends Module {
  readonly embeddings: Dinov2Embeddings;
  readonly layers: Dinov2Layer[];
  readonly layernorm: LayerNorm;

  constructor(
    path: string,
    readonly config: Dinov2NetConfig,
    act: HFActivation,
  ) {
    super(path);
    this.embeddings = this.child('embeddings', (p) => new Dinov2Embeddings(p, config));
    this.layers = this.list('encoder.layer', config.numHiddenLayers, (p) => new Dinov2Layer(p, config, act));
    this.layernorm = this.child('layernorm', (p) => new LayerNorm(p, config.hiddenSize, config.layerNormEps));
  }

  /** pixels [B, C, H, W] → the token maps [B, 1 + h·w, D] at `outIndices` (0 = the embeddings), layer-normed if the config says so. */
  build(op: GraphBuilder, pixels: Value): Value[] {
    let h = this.embeddings.build(op, pixels);
    const states = [h];
    for (const layer of this.layers) {
      h = layer.build(op, h);
      states.push(h);
    }
    return this.config.outIndices.map((i) => {
      const s = states[i]!;
      return this.config.applyLayernorm ? this.layernorm.build(op, s) : s;
    });
  }
}
