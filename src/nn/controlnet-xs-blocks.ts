/**
 * The parts ControlNet-XS adds: the conditioning-image embedding and 1×1 "zero convs", and the
 * control-side modules of each down/mid block (shared by the adapter and the fused model, which
 * hold them under different keys).
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { findLargestFactor, gcd } from '../util/math.js';
import { Transformer2DModel } from './attention.js';
import { Conv2d, silu } from './layers.js';
import { Module } from './module.js';
import { Downsample2D, ResnetBlock2D } from './resnet.js';
import { UNetMidBlock2DCrossAttn, transformerFor, type BlockAttention } from './unet-blocks.js';

/** A 1×1 convolution (zero-initialised in training) carrying features between base and control. */
export function zeroConv(path: string, inChannels: number, outChannels: number): Conv2d {
  return new Conv2d(path, inChannels, outChannels, { kernel: 1 });
}

/** conv_in → SiLU → (conv, SiLU, stride-2 conv, SiLU)… → conv_out: image [B,3,8H,8W] → [B,C,H,W]. */
export class ControlNetConditioningEmbedding extends Module {
  readonly conv_in: Conv2d;
  readonly blocks: Conv2d[];
  readonly conv_out: Conv2d;

  constructor(path: string, o: { embeddingChannels: number; conditioningChannels: number; blockOutChannels: readonly number[] }) {
    super(path);
    const ch = o.blockOutChannels;
    this.conv_in = this.child('conv_in', (p) => new Conv2d(p, o.conditioningChannels, ch[0]!, { kernel: 3, padding: 1 }));
    this.blocks = this.list('blocks', 2 * (ch.length - 1), (p, j) => {
      const i = j >> 1;
      return j % 2 === 0
        ? new Conv2d(p, ch[i]!, ch[i]!, { kernel: 3, padding: 1 })
        : new Conv2d(p, ch[i]!, ch[i + 1]!, { kernel: 3, padding: 1, stride: 2 });
    });
    this.conv_out = this.child('conv_out', (p) => new Conv2d(p, ch[ch.length - 1]!, o.embeddingChannels, { kernel: 3, padding: 1 }));
  }

  /** How much the embedding shrinks the image: 2^(number of stride-2 convs). */
  get downscale(): number {
    return 2 ** (this.blocks.length / 2);
  }

  build(op: GraphBuilder, image: Value): Value {
    const b = op.at(this.path);
    let e = silu(b, this.conv_in.build(op, image));
    for (const block of this.blocks) e = silu(b, block.build(op, e));
    return this.conv_out.build(op, e);
  }
}

export interface CtrlDownOptions {
  baseIn: number;
  baseOut: number;
  ctrlIn: number;
  ctrlOut: number;
  tembChannels: number;
  /** Upper bound for the control side's GroupNorm group counts (find_largest_factor). */
  maxGroups: number;
  attention: BlockAttention | null;
  addDownsample: boolean;
}

/** Number of resnet/attention pairs in every ControlNet-XS down block (SD and SDXL). */
export const DOWN_LAYERS = 2;
/** Number of resnets in every ControlNet-XS up block. */
export const UP_LAYERS = 3;

/** Control-side resnets of a down block: base features are concatenated onto their input. */
export function ctrlDownResnet(path: string, o: CtrlDownOptions, i: number): ResnetBlock2D {
  const cin = (i === 0 ? o.ctrlIn : o.ctrlOut) + (i === 0 ? o.baseIn : o.baseOut);
  return new ResnetBlock2D(path, {
    inChannels: cin,
    outChannels: o.ctrlOut,
    tembChannels: o.tembChannels,
    groups: findLargestFactor(cin, o.maxGroups),
    groupsOut: findLargestFactor(o.ctrlOut, o.maxGroups),
    eps: 1e-5,
  });
}

export function ctrlDownAttention(path: string, o: CtrlDownOptions, i: number): Transformer2DModel {
  return transformerFor(path, o.attention!, o.ctrlOut, findLargestFactor(o.ctrlOut, o.maxGroups), i);
}

/** base_to_ctrl widths: one per subblock (resnets, then the downsampler). */
export function baseToCtrlChannels(o: CtrlDownOptions): number[] {
  const ch = Array.from({ length: DOWN_LAYERS }, (_, i) => (i === 0 ? o.baseIn : o.baseOut));
  return o.addDownsample ? [...ch, o.baseOut] : ch;
}

export function ctrlDownsampler(path: string, o: CtrlDownOptions): Downsample2D {
  return new Downsample2D(path, o.ctrlOut + o.baseOut, o.ctrlOut);
}

export interface CtrlMidOptions {
  baseChannels: number;
  ctrlChannels: number;
  tembChannels: number;
  maxGroups: number;
  attention: BlockAttention;
}

/** The control mid block: a cross-attention mid block over [ctrl ‖ base] channels. */
export function ctrlMidBlock(path: string, o: CtrlMidOptions): UNetMidBlock2DCrossAttn {
  const c = o.ctrlChannels;
  return new UNetMidBlock2DCrossAttn(path, {
    inChannels: c + o.baseChannels,
    outChannels: c,
    tembChannels: o.tembChannels,
    groups: findLargestFactor(gcd(c, c + o.baseChannels), o.maxGroups),
    eps: 1e-6,
    attention: o.attention,
  });
}

/**
 * Channels of the control skip states, in the order the down path produces them: conv_in, then
 * every subblock (2 per level, plus the downsampler on all but the last level).
 */
export function ctrlSkipChannels(ctrlBlockOut: readonly number[]): number[] {
  const out = [ctrlBlockOut[0]!];
  ctrlBlockOut.forEach((c, i) => {
    const n = i < ctrlBlockOut.length - 1 ? DOWN_LAYERS + 1 : DOWN_LAYERS;
    for (let k = 0; k < n; k++) out.push(c);
  });
  return out;
}

/** Up block i's ctrl_to_base input widths: the control skips it consumes, last first. */
export function upCtrlSkips(ctrlBlockOut: readonly number[], i: number): number[] {
  const all = ctrlSkipChannels(ctrlBlockOut);
  const end = all.length - UP_LAYERS * i;
  return all.slice(end - UP_LAYERS, end).reverse();
}

