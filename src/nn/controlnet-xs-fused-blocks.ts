/**
 * The fused ControlNet-XS blocks (diffusers' ControlNetXSCrossAttn{Down,Mid,Up}Block2D): each
 * holds a base subblock and its control twin and exchanges features between them —
 * base → ctrl by concatenation through a zero conv, ctrl → base by adding a zero conv's output
 * scaled by `conditioning_scale`.
 *
 * The base subblocks are traced into the main graph; everything the control model does sits
 * behind `Exchange.control`, which the fused model turns into an ONNX `If` on `apply_control`
 * (base features pass through unchanged when control is off, and nothing of the control model runs).
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import type { Transformer2DModel } from './attention.js';
import {
  DOWN_LAYERS,
  UP_LAYERS,
  baseToCtrlChannels,
  ctrlDownAttention,
  ctrlDownResnet,
  ctrlDownsampler,
  ctrlMidBlock,
  zeroConv,
  type CtrlDownOptions,
} from './controlnet-xs-blocks.js';
import { FreeUBlock, type FreeUFactors } from './freeu.js';
import type { Conv2d } from './layers.js';
import { Module } from './module.js';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.js';
import { UNetMidBlock2DCrossAttn, transformerFor, type BlockAttention } from './unet-blocks.js';

/** What every fused block needs at trace time. */
export interface Exchange {
  temb: Value;
  context: Value;
  /** Scalar conditioning scale. */
  scale: Value;
  /**
   * Control-model work: `fn` computes new values for `passthrough` (in a builder of its own);
   * when control is off the `passthrough` values come out unchanged.
   */
  control(op: GraphBuilder, passthrough: readonly Value[], fn: (b: GraphBuilder) => Value[]): Value[];
}

/** Channel concatenation: [B, Ca, H, W] ‖ [B, Cb, H, W] → [B, Ca + Cb, H, W]. */
function concat(op: GraphBuilder, a: Value, b: Value): Value {
  return op.concat([a, b], { axis: 1 });
}

/** h_base + ctrl_to_base(h_ctrl) · scale: [B, Cbase, H, W] + ([B, Cctrl, H, W] → [B, Cbase, H, W]) · [] */
function addCtrl(op: GraphBuilder, hBase: Value, c2b: Conv2d, hCtrl: Value, scale: Value): Value {
  return op.add(hBase, op.mul(c2b.build(op, hCtrl), scale));
}

export interface FusedDownOptions extends CtrlDownOptions {
  /** Base-side GroupNorm groups (the UNet's norm_num_groups). */
  baseGroups: number;
  baseAttention: BlockAttention | null;
}

export class ControlNetXSCrossAttnDownBlock2D extends Module {
  readonly base_resnets: ResnetBlock2D[];
  readonly ctrl_resnets: ResnetBlock2D[];
  readonly base_attentions: Transformer2DModel[] | null;
  readonly ctrl_attentions: Transformer2DModel[] | null;
  readonly base_to_ctrl: Conv2d[];
  readonly ctrl_to_base: Conv2d[];
  readonly base_downsamplers: Downsample2D | null;
  readonly ctrl_downsamplers: Downsample2D | null;

  constructor(path: string, o: FusedDownOptions) {
    super(path);
    // The fused model builds base resnets with ResnetBlock2D's default eps 1e-6 (not the UNet's norm_eps).
    this.base_resnets = this.list('base_resnets', DOWN_LAYERS, (p, i) =>
      new ResnetBlock2D(p, { inChannels: i === 0 ? o.baseIn : o.baseOut, outChannels: o.baseOut, tembChannels: o.tembChannels, groups: o.baseGroups, eps: 1e-6 }),
    );
    this.ctrl_resnets = this.list('ctrl_resnets', DOWN_LAYERS, (p, i) => ctrlDownResnet(p, o, i));
    const baseAttn = o.baseAttention;
    this.base_attentions = baseAttn ? this.list('base_attentions', DOWN_LAYERS, (p, i) => transformerFor(p, baseAttn, o.baseOut, o.baseGroups, i)) : null;
    this.ctrl_attentions = o.attention ? this.list('ctrl_attentions', DOWN_LAYERS, (p, i) => ctrlDownAttention(p, o, i)) : null;
    const widths = baseToCtrlChannels(o);
    this.base_to_ctrl = this.list('base_to_ctrl', widths.length, (p, i) => zeroConv(p, widths[i]!, widths[i]!));
    this.ctrl_to_base = this.list('ctrl_to_base', widths.length, (p) => zeroConv(p, o.ctrlOut, o.baseOut));
    this.base_downsamplers = o.addDownsample ? this.child('base_downsamplers', (p) => new Downsample2D(p, o.baseOut, o.baseOut)) : null;
    this.ctrl_downsamplers = o.addDownsample ? this.child('ctrl_downsamplers', (p) => ctrlDownsampler(p, o)) : null;
  }

  /** Returns both streams and the skip states of each subblock (resnets, then the downsampler). */
  build(op: GraphBuilder, hBase: Value, hCtrl: Value, x: Exchange): { hBase: Value; hCtrl: Value; skipsBase: Value[]; skipsCtrl: Value[] } {
    const b = op.at(this.path);
    const skipsBase: Value[] = [];
    const skipsCtrl: Value[] = [];
    const subblock = (i: number, base: (h: Value) => Value, ctrl: (c: GraphBuilder, h: Value) => Value): void => {
      const before = hBase;
      hBase = base(hBase);
      [hBase, hCtrl] = x.control(b, [hBase, hCtrl], (c) => {
        const cc = c.at(this.path);
        const h = ctrl(c, concat(cc, hCtrl, this.base_to_ctrl[i]!.build(c, before))); // concat base → ctrl
        return [addCtrl(cc, hBase, this.ctrl_to_base[i]!, h, x.scale), h]; // add ctrl → base
      }) as [Value, Value];
      skipsBase.push(hBase);
      skipsCtrl.push(hCtrl);
    };
    for (let i = 0; i < DOWN_LAYERS; i++) {
      subblock(
        i,
        (h) => {
          const r = this.base_resnets[i]!.build(op, h, x.temb);
          return this.base_attentions ? this.base_attentions[i]!.build(op, r, x.context) : r;
        },
        (c, h) => {
          const r = this.ctrl_resnets[i]!.build(c, h, x.temb);
          return this.ctrl_attentions ? this.ctrl_attentions[i]!.build(c, r, x.context) : r;
        },
      );
    }
    const [baseDown, ctrlDown] = [this.base_downsamplers, this.ctrl_downsamplers];
    if (baseDown && ctrlDown) subblock(DOWN_LAYERS, (h) => baseDown.build(op, h), (c, h) => ctrlDown.build(c, h));
    return { hBase, hCtrl, skipsBase, skipsCtrl };
  }
}

export interface FusedMidOptions {
  baseChannels: number;
  ctrlChannels: number;
  tembChannels: number;
  baseGroups: number;
  ctrlMaxGroups: number;
  baseAttention: BlockAttention;
  ctrlAttention: BlockAttention;
}

export class ControlNetXSCrossAttnMidBlock2D extends Module {
  readonly base_to_ctrl: Conv2d;
  readonly base_midblock: UNetMidBlock2DCrossAttn;
  readonly ctrl_midblock: UNetMidBlock2DCrossAttn;
  readonly ctrl_to_base: Conv2d;

  constructor(path: string, o: FusedMidOptions) {
    super(path);
    this.base_to_ctrl = this.child('base_to_ctrl', (p) => zeroConv(p, o.baseChannels, o.baseChannels));
    this.base_midblock = this.child('base_midblock', (p) =>
      new UNetMidBlock2DCrossAttn(p, { inChannels: o.baseChannels, tembChannels: o.tembChannels, groups: o.baseGroups, eps: 1e-6, attention: o.baseAttention }),
    );
    this.ctrl_midblock = this.child('ctrl_midblock', (p) =>
      ctrlMidBlock(p, { baseChannels: o.baseChannels, ctrlChannels: o.ctrlChannels, tembChannels: o.tembChannels, maxGroups: o.ctrlMaxGroups, attention: o.ctrlAttention }),
    );
    this.ctrl_to_base = this.child('ctrl_to_base', (p) => zeroConv(p, o.ctrlChannels, o.baseChannels));
  }

  build(op: GraphBuilder, hBase: Value, hCtrl: Value, x: Exchange): { hBase: Value; hCtrl: Value } {
    const b = op.at(this.path);
    const before = hBase;
    const base = this.base_midblock.build(op, hBase, x.temb, x.context);
    const [outBase, outCtrl] = x.control(b, [base, hCtrl], (c) => {
      const cc = c.at(this.path);
      const joined = concat(cc, hCtrl, this.base_to_ctrl.build(c, before)); // concat base → ctrl
      const h = this.ctrl_midblock.build(c, joined, x.temb, x.context);
      return [addCtrl(cc, base, this.ctrl_to_base, h, x.scale), h]; // add ctrl → base
    });
    return { hBase: outBase!, hCtrl: outCtrl! };
  }
}

export interface FusedUpOptions {
  inChannels: number;
  outChannels: number;
  prevOutputChannels: number;
  ctrlSkipChannels: readonly number[];
  tembChannels: number;
  groups: number;
  attention: BlockAttention | null;
  addUpsample: boolean;
}

export class ControlNetXSCrossAttnUpBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly ctrl_to_base: Conv2d[];
  readonly upsamplers: Upsample2D | null;
  /** Channels of the base features each resnet's skip is concatenated to (what FreeU's backbone factor scales). */
  private readonly featureChannels: number[];

  constructor(path: string, o: FusedUpOptions) {
    super(path);
    const resnetIn = (i: number) => (i === 0 ? o.prevOutputChannels : o.outChannels);
    this.featureChannels = Array.from({ length: UP_LAYERS }, (_, i) => resnetIn(i));
    this.ctrl_to_base = this.list('ctrl_to_base', UP_LAYERS, (p, i) => zeroConv(p, o.ctrlSkipChannels[i]!, resnetIn(i)));
    this.resnets = this.list('resnets', UP_LAYERS, (p, i) => {
      const skip = i === UP_LAYERS - 1 ? o.inChannels : o.outChannels;
      return new ResnetBlock2D(p, { inChannels: resnetIn(i) + skip, outChannels: o.outChannels, tembChannels: o.tembChannels, groups: o.groups, eps: 1e-6 });
    });
    const attn = o.attention;
    this.attentions = attn ? this.list('attentions', UP_LAYERS, (p, i) => transformerFor(p, attn, o.outChannels, o.groups, i)) : null;
    this.upsamplers = o.addUpsample ? this.child('upsamplers', (p) => new Upsample2D(p, o.outChannels, o.outChannels)) : null;
  }

  /**
   * Consumes the last UP_LAYERS skips of each stream (last first). With `freeu` (this block's FreeU factors)
   * the base features, control already added, and the base skip go through FreeU before the resnet.
   */
  build(op: GraphBuilder, h: Value, skipsBase: Value[], skipsCtrl: Value[], x: Exchange, freeu: FreeUFactors | null = null): Value {
    const b = op.at(this.path);
    // every skip of a block has the block's resolution: the first one sizes the Fourier window
    const fu = freeu ? FreeUBlock.create(op, `${this.path}.freeu`, skipsBase[skipsBase.length - 1]!, freeu) : null;
    for (let i = 0; i < UP_LAYERS; i++) {
      let sBase = skipsBase.pop()!;
      const sCtrl = skipsCtrl.pop()!;
      const hIn = h;
      [h] = x.control(b, [hIn], (c) => [addCtrl(c.at(this.path), hIn, this.ctrl_to_base[i]!, sCtrl, x.scale)]) as [Value]; // add ctrl → base
      if (fu) ({ h, skip: sBase } = fu.apply(h, this.featureChannels[i]!, sBase)); // FreeU after the control term
      h = this.resnets[i]!.build(op, concat(b, h, sBase), x.temb);
      if (this.attentions) h = this.attentions[i]!.build(op, h, x.context);
    }
    // No upsample_size: diffusers' fused model needs latents divisible by 2^(levels−1).
    return this.upsamplers ? this.upsamplers.build(op, h) : h;
  }
}
