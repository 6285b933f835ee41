/**
 * The blocks of diffusers' UNet2DConditionModel: CrossAttnDownBlock2D / DownBlock2D,
 * UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D. A block without cross-attention simply
 * has no `attentions` list.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Transformer2DModel } from './attention.js';
import { FreeUBlock, type FreeUFactors } from './freeu.js';
import { Module } from './module.js';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.js';

/** Cross-attention settings shared by a block's transformers; null for blocks without attention. */
export interface BlockAttention {
  heads: number;
  /** Transformer layers for each attention of the block. */
  layers: readonly number[];
  crossAttentionDim: number;
  useLinearProjection: boolean;
}

export interface DownBlockOptions {
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  numLayers: number;
  groups: number;
  eps: number;
  attention: BlockAttention | null;
  addDownsample: boolean;
  downsamplePadding: number;
}

export function transformerFor(path: string, a: BlockAttention, channels: number, groups: number, layer: number): Transformer2DModel {
  return new Transformer2DModel(path, {
    heads: a.heads,
    dimHead: Math.floor(channels / a.heads),
    inChannels: channels,
    numLayers: a.layers[layer]!,
    crossAttentionDim: a.crossAttentionDim,
    normNumGroups: groups,
    useLinearProjection: a.useLinearProjection,
  });
}

export class DownBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly downsamplers: Downsample2D[] | null;

  constructor(path: string, o: DownBlockOptions) {
    super(path);
    const { attention } = o;
    this.resnets = this.list('resnets', o.numLayers, (p, i) =>
      new ResnetBlock2D(p, { inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels, tembChannels: o.tembChannels, groups: o.groups, eps: o.eps }),
    );
    this.attentions = attention
      ? this.list('attentions', o.numLayers, (p, i) => transformerFor(p, attention, o.outChannels, o.groups, i))
      : null;
    this.downsamplers = o.addDownsample
      ? this.list('downsamplers', 1, (p) => new Downsample2D(p, o.outChannels, o.outChannels, o.downsamplePadding))
      : null;
  }

  /** Returns the block output and the skip states it produced, in order. */
  build(op: GraphBuilder, x: Value, temb: Value, context: Value): { h: Value; skips: Value[] } {
    const skips: Value[] = [];
    let h = x;
    this.resnets.forEach((resnet, i) => {
      h = resnet.build(op, h, temb);
      if (this.attentions) h = this.attentions[i]!.build(op, h, context);
      skips.push(h);
    });
    if (this.downsamplers) {
      h = this.downsamplers[0]!.build(op, h);
      skips.push(h);
    }
    return { h, skips };
  }
}

export interface MidBlockOptions {
  inChannels: number;
  /** Defaults to inChannels. */
  outChannels?: number;
  tembChannels: number;
  groups: number;
  /** Groups of every norm after the first resnet's norm1; defaults to `groups`. */
  groupsOut?: number;
  eps: number;
  outputScaleFactor?: number;
  attention: BlockAttention;
}

/** resnets.0 → (attentions.i → resnets.i+1)… */
export class UNetMidBlock2DCrossAttn extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];

  constructor(path: string, o: MidBlockOptions) {
    super(path);
    const out = o.outChannels ?? o.inChannels;
    const groupsOut = o.groupsOut ?? o.groups;
    const n = o.attention.layers.length;
    const common = { outChannels: out, tembChannels: o.tembChannels, eps: o.eps, ...(o.outputScaleFactor ? { outputScaleFactor: o.outputScaleFactor } : {}) };
    this.attentions = this.list('attentions', n, (p, i) => transformerFor(p, o.attention, out, groupsOut, i));
    this.resnets = this.list('resnets', n + 1, (p, i) =>
      i === 0
        ? new ResnetBlock2D(p, { ...common, inChannels: o.inChannels, groups: o.groups, groupsOut })
        : new ResnetBlock2D(p, { ...common, inChannels: out, groups: groupsOut }),
    );
  }

  build(op: GraphBuilder, x: Value, temb: Value, context: Value): Value {
    let h = this.resnets[0]!.build(op, x, temb);
    this.attentions.forEach((attn, i) => {
      h = this.resnets[i + 1]!.build(op, attn.build(op, h, context), temb);
    });
    return h;
  }
}

export interface UpBlockOptions {
  inChannels: number;
  prevOutputChannels: number;
  outChannels: number;
  tembChannels: number;
  numLayers: number;
  groups: number;
  eps: number;
  attention: BlockAttention | null;
  addUpsample: boolean;
}

export class UpBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly upsamplers: Upsample2D[] | null;
  /** Channels of the features each resnet's skip is concatenated to (what FreeU's backbone factor scales). */
  private readonly featureChannels: number[];

  constructor(path: string, o: UpBlockOptions) {
    super(path);
    const { attention } = o;
    this.featureChannels = Array.from({ length: o.numLayers }, (_, i) => (i === 0 ? o.prevOutputChannels : o.outChannels));
    this.resnets = this.list('resnets', o.numLayers, (p, i) => {
      const skip = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const resIn = i === 0 ? o.prevOutputChannels : o.outChannels;
      return new ResnetBlock2D(p, { inChannels: resIn + skip, outChannels: o.outChannels, tembChannels: o.tembChannels, groups: o.groups, eps: o.eps });
    });
    this.attentions = attention
      ? this.list('attentions', o.numLayers, (p, i) => transformerFor(p, attention, o.outChannels, o.groups, i))
      : null;
    this.upsamplers = o.addUpsample ? this.list('upsamplers', 1, (p) => new Upsample2D(p, o.outChannels, o.outChannels)) : null;
  }

  /**
   * Consumes `skips` (last first); `sizeLike` is the next block's skip, whose spatial size the
   * upsampler matches. With `freeu` (this block's FreeU factors) each feature/skip pair goes through FreeU first.
   */
  build(op: GraphBuilder, x: Value, skips: Value[], temb: Value, context: Value, sizeLike: Value | undefined, freeu: FreeUFactors | null = null): Value {
    const b = op.at(this.path);
    // every skip of a block has the block's resolution: the first one sizes the Fourier window
    const fu = freeu ? FreeUBlock.create(op, `${this.path}.freeu`, skips[skips.length - 1]!, freeu) : null;
    let h = x;
    this.resnets.forEach((resnet, i) => {
      let skip = skips.pop()!;
      if (fu) ({ h, skip } = fu.apply(h, this.featureChannels[i]!, skip));
      h = resnet.build(op, b.concat([h, skip], { axis: 1 }), temb); // [B, C, H, W] ‖ [B, Cskip, H, W] → [B, C + Cskip, H, W]
      if (this.attentions) h = this.attentions[i]!.build(op, h, context);
    });
    if (this.upsamplers) h = this.upsamplers[0]!.build(op, h, sizeLike);
    return h;
  }
}
