/**
 * DepthAnythingForDepthEstimation's module tree (transformers 4.44 modeling_depth_anything.py): a
 * Dinov2 `backbone`, the `neck` (class token dropped, no readout; reassemble, convs, fusion that
 * upsamples each map to the next one's size) and the `head` (conv1, bilinear to the patch grid × patch
 * size, conv2, ReLU, conv3, ReLU — or sigmoid × max_depth for metric checkpoints).
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Dinov2Backbone, type Dinov2NetConfig } from './dinov2.js';
import { bilinearTo, DPTNeckTail, pickHeadInput, ReassembleLayer } from './dpt-neck.js';
import { hfActivation } from './hf-activation.js';
import { Conv2d } from './layers.js';
import { Module } from './module.js';
import { tokensToMap } from './vit.js';

/** The DepthAnythingConfig fields the tree reads. */
export interface DepthAnythingNetConfig {
  readonly patchSize: number;
  readonly reassembleHiddenSize: number;
  readonly reassembleFactors: readonly number[];
  readonly neckHiddenSizes: readonly number[];
  readonly fusionHiddenSize: number;
  readonly headInIndex: number;
  readonly headHiddenSize: number;
  readonly depthEstimationType: 'relative' | 'metric';
  readonly maxDepth: number;
  readonly backbone: Dinov2NetConfig & { readonly hiddenAct: string };
}

/** `head.{conv1, conv2, conv3}`. */
export class DepthAnythingHead extends Module {
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly conv3: Conv2d;

  constructor(
    path: string,
    readonly c: DepthAnythingNetConfig,
  ) {
    super(path);
    const f = c.fusionHiddenSize;
    const half = Math.floor(f / 2);
    this.conv1 = this.child('conv1', (p) => new Conv2d(p, f, half, { kernel: 3, padding: 1 }));
    this.conv2 = this.child('conv2', (p) => new Conv2d(p, half, c.headHiddenSize, { kernel: 3, padding: 1 }));
    this.conv3 = this.child('conv3', (p) => new Conv2d(p, c.headHiddenSize, 1, { kernel: 1 }));
  }

  /** x [B, f, h', w'], grid int64 [2] (patch rows, columns) → predicted_depth [B, rows·p, cols·p] */
  build(op: GraphBuilder, x: Value, grid: Value): Value {
    const b = op.at(this.path);
    const h = this.conv1.build(op, x);
    const sizes = b.concat([b.shape(h, { start: 0, end: 2 }), b.mul(grid, b.ints([this.c.patchSize]))], { axis: 0 }); // [4]: B, f/2, rows·p, cols·p
    const up = bilinearTo(b, h, sizes, true);
    const d = this.conv3.build(op, b.relu(this.conv2.build(op, up)));
    let depth = this.c.depthEstimationType === 'metric' ? b.sigmoid(d) : b.relu(d);
    if (this.c.maxDepth !== 1) depth = b.mul(depth, b.scalar(this.c.maxDepth));
    return b.squeeze(depth, b.ints([1])); // [B, 1, H', W'] → [B, H', W']
  }
}

/** The root tree of DepthAnythingForDepthEstimation. */
export class DepthAnythingNet extends Module {
  readonly backbone: Dinov2Backbone;
  readonly reassemble: ReassembleLayer[];
  readonly neck: DPTNeckTail;
  readonly head: DepthAnythingHead;

  constructor(
    readonly config: DepthAnythingNetConfig,
    readonly origin: string,
  ) {
    super('');
    const c = config;
    if (c.backbone.outIndices.length !== c.neckHiddenSizes.length) {
      throw new ConfigError(`${origin}: the backbone returns ${c.backbone.outIndices.length} feature maps (backbone_config out_indices) but neck_hidden_sizes has ${c.neckHiddenSizes.length}`);
    }
    if (c.backbone.hiddenSize !== c.reassembleHiddenSize) {
      throw new ConfigError(`${origin}: reassemble_hidden_size ${c.reassembleHiddenSize} differs from the backbone's hidden_size ${c.backbone.hiddenSize}`);
    }
    this.backbone = this.child('backbone', (p) => new Dinov2Backbone(p, c.backbone, hfActivation(c.backbone.hiddenAct, origin, 'backbone_config.hidden_act')));
    this.reassemble = c.neckHiddenSizes.map((ch, i) => this.child(`neck.reassemble_stage.layers.${i}`, (p) => new ReassembleLayer(p, c.reassembleHiddenSize, ch, c.reassembleFactors[i]!)));
    const residual = { features: c.fusionHiddenSize, bias: true, batchNorm: false };
    this.neck = this.child('neck', (p) => new DPTNeckTail(p, { neckHiddenSizes: c.neckHiddenSizes, fusionHiddenSize: c.fusionHiddenSize, residual }));
    this.head = this.child('head', (p) => new DepthAnythingHead(p, c));
    pickHeadInput(c.neckHiddenSizes, c.headInIndex, origin);
  }

  /** pixels [B, C, H, W] → predicted_depth [B, ⌊H/p⌋·p, ⌊W/p⌋·p] */
  build(op: GraphBuilder, pixels: Value): Value {
    const b = op.at('neck');
    const grid = b.div(b.shape(pixels, { start: 2, end: 4 }), b.ints([this.config.patchSize])); // [2]: ⌊H/p⌋, ⌊W/p⌋
    const states = this.backbone.build(op, pixels); // each [B, 1 + h·w, D]
    const maps = states.map((s, i) => this.reassemble[i]!.build(op, tokensToMap(b, s, grid)));
    const fused = this.neck.build(op, maps, true);
    return this.head.build(op, pickHeadInput(fused, this.config.headInIndex, this.origin), grid);
  }
}
