/**
 * DPTForDepthEstimation's module tree (transformers 4.44 modeling_dpt.py): `dpt` (ViT embeddings —
 * patch conv, or the BiT backbone + 1×1 `projection` for DPT-hybrid — the encoder layers and a final
 * `layernorm` the depth head never reads), `neck` (readout + reassemble, convs, fusion) and `head`.
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { ParameterSpec } from '../weights/source.js';
import { BitBackbone, type BitNetConfig, type Size2 } from './bit.js';
import { DPTNeckTail, pickHeadInput, ReassembleLayer, upsample2x } from './dpt-neck.js';
import { applyActivation, hfActivation, type HFActivation } from './hf-activation.js';
import { Conv2d, LayerNorm, Linear } from './layers.js';
import { Identity, Module } from './module.js';
import { DPTViTLayer, mapToTokens, patchesToMap, prependClassToken } from './vit.js';

/** The DPTConfig fields the tree reads. */
export interface DPTNetConfig {
  readonly hiddenSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly intermediateSize: number;
  readonly hiddenAct: string;
  readonly layerNormEps: number;
  readonly imageSize: number;
  readonly patchSize: number;
  readonly numChannels: number;
  readonly qkvBias: boolean;
  readonly isHybrid: boolean;
  readonly backboneOutIndices: readonly number[];
  readonly readoutType: 'ignore' | 'add' | 'project';
  readonly reassembleFactors: readonly number[];
  readonly neckHiddenSizes: readonly number[];
  readonly fusionHiddenSize: number;
  readonly headInIndex: number;
  readonly useBatchNormInFusionResidual: boolean;
  readonly useBiasInFusionResidual: boolean | null;
  readonly addProjection: boolean;
  readonly backboneFeatmapShape: readonly number[] | null;
  readonly neckIgnoreStages: readonly number[];
  /** The BiT backbone's config (hybrid only). */
  readonly bit: BitNetConfig | null;
}

/** The width transformers hard-codes for DPT's optional head projection (DPT 3.1 checkpoints). */
const HEAD_PROJECTION_CHANNELS = 256;

/** `dpt.embeddings` of the plain ViT: patch conv, class token, position table resized bilinearly to the grid. */
export class DPTViTEmbeddings extends Module {
  readonly cls_token: ParameterSpec;
  readonly position_embeddings: ParameterSpec;
  readonly projection: Conv2d;
  readonly tableGrid: number;

  constructor(
    path: string,
    readonly c: DPTNetConfig,
  ) {
    super(path);
    this.tableGrid = Math.floor(c.imageSize / c.patchSize);
    this.cls_token = this.param('cls_token', [1, 1, c.hiddenSize]);
    this.position_embeddings = this.param('position_embeddings', [1, this.tableGrid ** 2 + 1, c.hiddenSize]);
    this.projection = this.child('patch_embeddings.projection', (p) => new Conv2d(p, c.numChannels, c.hiddenSize, { kernel: c.patchSize, stride: c.patchSize }));
  }

  /** pixels [B, C, H, W] → tokens [B, 1 + h·w, D] and the grid (int64 [2]: h, w) */
  build(op: GraphBuilder, pixels: Value): { tokens: Value; grid: Value } {
    const b = op.at(this.path);
    const d = this.c.hiddenSize;
    const g = this.tableGrid;
    const map = this.projection.build(op, pixels); // [B, D, h, w]
    const grid = b.shape(map, { start: 2, end: 4 }); // [2]: h, w = ⌊H/p⌋, ⌊W/p⌋
    const tokens = prependClassToken(b, b.param(this.cls_token), mapToTokens(b, map), d);
    // _resize_pos_embed: the table's grid, bilinear (align_corners=False) to h × w.
    const table = b.param(this.position_embeddings); // [1, 1 + g², D]
    const clsPos = b.slice(table, b.ints([0]), b.ints([1]), b.ints([1])); // [1, 1, D]
    const gridPos = b.transpose(b.reshape(b.slice(table, b.ints([1]), b.ints([g * g + 1]), b.ints([1])), b.ints([1, g, g, d])), { perm: [0, 3, 1, 2] }); // [1, D, g, g]
    const sizes = b.concat([b.ints([1, d]), grid], { axis: 0 }); // [4]
    const resized = b.resize(gridPos, null, null, sizes, { mode: 'linear', coordinate_transformation_mode: 'half_pixel' }); // [1, D, h, w]
    return { tokens: b.add(tokens, b.concat([clsPos, mapToTokens(b, resized)], { axis: 1 })), grid };
  }
}

/** `dpt.embeddings` of DPT-hybrid: BiT, 1×1 `projection` of its last map to tokens, class token, position table (input must be image_size). */
export class DPTViTHybridEmbeddings extends Module {
  readonly cls_token: ParameterSpec;
  readonly position_embeddings: ParameterSpec;
  readonly backbone: BitBackbone;
  readonly projection: Conv2d;

  constructor(path: string, c: DPTNetConfig, bit: BitNetConfig, origin: string) {
    super(path);
    const grid = Math.floor(c.imageSize / c.patchSize);
    this.cls_token = this.param('cls_token', [1, 1, c.hiddenSize]);
    this.position_embeddings = this.param('position_embeddings', [1, grid * grid + 1, c.hiddenSize]);
    this.backbone = this.child('backbone', (p) => new BitBackbone(p, bit, hfActivation(bit.hiddenAct, origin, 'backbone_config.hidden_act')));
    const channels = this.backbone.featureChannels;
    if (channels.length !== 3) throw new ConfigError(`${origin}: DPT-hybrid needs a BiT backbone with 3 output features, got ${channels.length} (backbone_config out_features / out_indices)`);
    const featDim = c.backboneFeatmapShape?.[1] ?? channels[2]!;
    this.projection = this.child('projection', (p) => new Conv2d(p, featDim, c.hiddenSize, { kernel: 1 }));
  }

  /** pixels [B, C, S, S] → tokens [B, 1 + g², D], BiT's first two feature maps, and the token grid. */
  build(op: GraphBuilder, pixels: Value, size: Size2): { tokens: Value; residuals: Value[]; grid: Size2 } {
    const b = op.at(this.path);
    const maps = this.backbone.build(op, pixels, size);
    const last = maps[2]!;
    const tokens = prependClassToken(b, b.param(this.cls_token), mapToTokens(b, this.projection.build(op, last.y)), this.projection.outChannels);
    // The input is the table's size, so transformers' bilinear resize of the table is the identity.
    return { tokens: b.add(tokens, b.param(this.position_embeddings)), residuals: [maps[0]!.y, maps[1]!.y], grid: last.size };
  }
}

/** `neck.reassemble_stage`: per stage, the readout (cls token projected in, added, or dropped) and the reassemble layer. */
export class DPTReassembleStage extends Module {
  readonly layers: (ReassembleLayer | Identity)[];
  readonly readoutProjects: (Linear | null)[];

  constructor(
    path: string,
    readonly c: DPTNetConfig,
    readonly act: HFActivation,
  ) {
    super(path);
    const n = c.neckHiddenSizes.length;
    const ignored = (i: number) => c.isHybrid && i <= 1;
    this.layers = c.neckHiddenSizes.map((ch, i) =>
      ignored(i) ? this.child(`layers.${i}`, (p) => new Identity(p)) : this.child(`layers.${i}`, (p) => new ReassembleLayer(p, c.hiddenSize, ch, c.reassembleFactors[i]!)),
    );
    this.readoutProjects = Array.from({ length: n }, (_, i) =>
      c.readoutType !== 'project' || ignored(i) ? null : this.child(`readout_projects.${i}.0`, (p) => new Linear(p, 2 * c.hiddenSize, c.hiddenSize)),
    );
  }

  /** Hidden states (tokens [B, 1 + h·w, D], or BiT maps at ignored stages) → maps [B, C_i, h_i, w_i]. */
  build(op: GraphBuilder, states: readonly Value[], grid: Value): Value[] {
    const b = op.at(this.path);
    return states.map((s, i) => {
      if (this.c.neckIgnoreStages.includes(i)) return s;
      const cls = b.slice(s, b.ints([0]), b.ints([1]), b.ints([1])); // [B, 1, D]
      let patches = b.slice(s, b.ints([1]), b.ints([Number.MAX_SAFE_INTEGER]), b.ints([1])); // [B, h·w, D]
      const project = this.readoutProjects[i];
      if (project) {
        const readout = b.expand(cls, b.shape(patches)); // [B, h·w, D]
        patches = applyActivation(b, project.build(op, b.concat([patches, readout], { axis: -1 })), this.act); // [B, h·w, 2D] → [B, h·w, D]
      } else if (this.c.readoutType === 'add') {
        patches = b.add(patches, cls);
      }
      const map = patchesToMap(b, patches, grid); // [B, D, h, w]
      const layer = this.layers[i]!;
      return layer instanceof ReassembleLayer ? layer.build(op, map) : map;
    });
  }
}

/** `head`: [projection + ReLU], head.0 conv 3×3 (f → f/2), ×2 bilinear, head.2 conv 3×3 (→ 32), ReLU, head.4 conv 1×1 (→ 1), ReLU. */
export class DPTDepthEstimationHead extends Module {
  readonly projection: Conv2d | null;
  readonly conv0: Conv2d;
  readonly conv2: Conv2d;
  readonly conv4: Conv2d;

  constructor(
    path: string,
    readonly c: DPTNetConfig,
  ) {
    super(path);
    const f = c.fusionHiddenSize;
    const half = Math.floor(f / 2);
    this.projection = c.addProjection ? this.child('projection', (p) => new Conv2d(p, HEAD_PROJECTION_CHANNELS, HEAD_PROJECTION_CHANNELS, { kernel: 3, padding: 1 })) : null;
    this.conv0 = this.child('head.0', (p) => new Conv2d(p, f, half, { kernel: 3, padding: 1 }));
    this.child('head.1', (p) => new Identity(p)); // nn.Upsample
    this.conv2 = this.child('head.2', (p) => new Conv2d(p, half, 32, { kernel: 3, padding: 1 }));
    this.child('head.3', (p) => new Identity(p)); // nn.ReLU
    this.conv4 = this.child('head.4', (p) => new Conv2d(p, 32, 1, { kernel: 1 }));
    this.child('head.5', (p) => new Identity(p)); // nn.ReLU
  }

  /** [B, f, h, w] → predicted_depth [B, 2h, 2w] */
  build(op: GraphBuilder, x: Value): Value {
    const b = op.at(this.path);
    let h = this.projection ? b.relu(this.projection.build(op, x)) : x;
    h = upsample2x(b, this.conv0.build(op, h));
    h = this.conv4.build(op, b.relu(this.conv2.build(op, h)));
    return b.squeeze(b.relu(h), b.ints([1])); // [B, 1, H', W'] → [B, H', W']
  }
}

/** The root tree of DPTForDepthEstimation. */
export class DPTForDepthEstimationNet extends Module {
  readonly embeddings: DPTViTEmbeddings | DPTViTHybridEmbeddings;
  readonly layers: DPTViTLayer[];
  readonly layernorm: LayerNorm;
  readonly reassemble: DPTReassembleStage;
  readonly neck: DPTNeckTail;
  readonly head: DPTDepthEstimationHead;
  /** Encoder layers whose outputs feed the neck (after the hybrid's two BiT maps), ascending. */
  readonly taps: readonly number[];

  constructor(
    readonly config: DPTNetConfig,
    readonly origin: string,
  ) {
    super('');
    const c = config;
    const act = hfActivation(c.hiddenAct, origin);
    if (c.isHybrid && c.bit === null) throw new ConfigError(`${origin}: is_hybrid needs a BiT backbone_config`);
    this.embeddings = c.isHybrid
      ? this.child('dpt.embeddings', (p) => new DPTViTHybridEmbeddings(p, c, c.bit!, origin))
      : this.child('dpt.embeddings', (p) => new DPTViTEmbeddings(p, c));
    const layer = { dim: c.hiddenSize, heads: c.numAttentionHeads, qkvBias: c.qkvBias, intermediate: c.intermediateSize, eps: c.layerNormEps, act };
    this.layers = this.list('dpt.encoder.layer', c.numHiddenLayers, (p) => new DPTViTLayer(p, layer));
    this.layernorm = this.child('dpt.layernorm', (p) => new LayerNorm(p, c.hiddenSize, c.layerNormEps));
    // transformers keeps the encoder outputs whose index is listed, in layer order (unknown indices drop out).
    const listed = c.isHybrid ? c.backboneOutIndices.slice(2) : c.backboneOutIndices;
    this.taps = Array.from({ length: c.numHiddenLayers }, (_, i) => i).filter((i) => listed.includes(i));
    const stages = (c.isHybrid ? 2 : 0) + this.taps.length;
    if (stages !== c.neckHiddenSizes.length) {
      throw new ConfigError(
        `${origin}: backbone_out_indices [${c.backboneOutIndices.join(', ')}] select ${stages} feature maps for ${c.numHiddenLayers} layers${c.isHybrid ? ' (2 from BiT)' : ''}, but neck_hidden_sizes has ${c.neckHiddenSizes.length}`,
      );
    }
    if (c.isHybrid) {
      const bitChannels = (this.embeddings as DPTViTHybridEmbeddings).backbone.featureChannels;
      for (const i of [0, 1]) {
        if (bitChannels[i] !== c.neckHiddenSizes[i]) throw new ConfigError(`${origin}: neck_hidden_sizes[${i}] = ${c.neckHiddenSizes[i]} but BiT's feature map ${i} has ${bitChannels[i]} channels`);
      }
    }
    this.reassemble = this.child('neck.reassemble_stage', (p) => new DPTReassembleStage(p, c, act));
    const residual = { features: c.fusionHiddenSize, bias: c.useBiasInFusionResidual ?? !c.useBatchNormInFusionResidual, batchNorm: c.useBatchNormInFusionResidual };
    this.neck = this.child('neck', (p) => new DPTNeckTail(p, { neckHiddenSizes: c.neckHiddenSizes, fusionHiddenSize: c.fusionHiddenSize, residual }));
    this.head = this.child('head', (p) => new DPTDepthEstimationHead(p, c));
    pickHeadInput(c.neckHiddenSizes, c.headInIndex, origin);
  }

  /** pixels [B, C, H, W] → predicted_depth [B, H', W']. The hybrid needs H = W = image_size (the caller checks). */
  build(op: GraphBuilder, pixels: Value): Value {
    const c = this.config;
    let h: Value;
    let grid: Value;
    const states: Value[] = [];
    if (this.embeddings instanceof DPTViTHybridEmbeddings) {
      const e = this.embeddings.build(op, pixels, [c.imageSize, c.imageSize]);
      h = e.tokens;
      grid = op.ints([e.grid[0], e.grid[1]]);
      states.push(...e.residuals);
    } else {
      ({ tokens: h, grid } = this.embeddings.build(op, pixels));
    }
    this.layers.forEach((layer, i) => {
      h = layer.build(op, h);
      if (this.taps.includes(i)) states.push(h);
    });
    const maps = this.reassemble.build(op, states, grid);
    const fused = this.neck.build(op, maps, false);
    return this.head.build(op, pickHeadInput(fused, c.headInIndex, this.origin));
  }
}
