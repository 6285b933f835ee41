/**
 * The blocks of a ControlNet-XS adapter on its own (diffusers' ControlNetXSAdapter): each holds the
 * control halves of one fused block, under the adapter's keys (`down_blocks.{i}.resnets`,
 * `mid_block.midblock`, `up_connections.{i}.ctrl_to_base`). The adapter never runs by itself, so
 * these only declare parameters; the fused blocks (controlnet-xs-fused-blocks.ts) emit the nodes.
 */
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
import type { Conv2d } from './layers.js';
import { Module } from './module.js';
import type { Downsample2D, ResnetBlock2D } from './resnet.js';
import type { BlockAttention, UNetMidBlock2DCrossAttn } from './unet-blocks.js';

/** The adapter's down blocks hold the control halves of the fused down blocks. */
export class AdapterDownBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly base_to_ctrl: Conv2d[];
  readonly ctrl_to_base: Conv2d[];
  readonly downsamplers: Downsample2D | null;

  constructor(path: string, o: CtrlDownOptions) {
    super(path);
    this.resnets = this.list('resnets', DOWN_LAYERS, (p, i) => ctrlDownResnet(p, o, i));
    this.attentions = o.attention ? this.list('attentions', DOWN_LAYERS, (p, i) => ctrlDownAttention(p, o, i)) : null;
    this.base_to_ctrl = this.list('base_to_ctrl', baseToCtrlChannels(o).length, (p, i) => {
      const c = baseToCtrlChannels(o)[i]!;
      return zeroConv(p, c, c);
    });
    this.ctrl_to_base = this.list('ctrl_to_base', baseToCtrlChannels(o).length, (p) => zeroConv(p, o.ctrlOut, o.baseOut));
    this.downsamplers = o.addDownsample ? this.child('downsamplers', (p) => ctrlDownsampler(p, o)) : null;
  }
}

export class AdapterMidBlock extends Module {
  readonly base_to_ctrl: Conv2d;
  readonly midblock: UNetMidBlock2DCrossAttn;
  readonly ctrl_to_base: Conv2d;

  constructor(path: string, o: { base: number; ctrl: number; temb: number; attention: BlockAttention }) {
    super(path);
    this.base_to_ctrl = this.child('base_to_ctrl', (p) => zeroConv(p, o.base, o.base));
    // diffusers builds the adapter's mid block with max_norm_num_groups=32, whatever the config says.
    this.midblock = this.child('midblock', (p) =>
      ctrlMidBlock(p, { baseChannels: o.base, ctrlChannels: o.ctrl, tembChannels: o.temb, maxGroups: 32, attention: o.attention }),
    );
    this.ctrl_to_base = this.child('ctrl_to_base', (p) => zeroConv(p, o.ctrl, o.base));
  }
}

export class AdapterUpConnection extends Module {
  readonly ctrl_to_base: Conv2d[];

  constructor(path: string, skips: number[], resnetIn: number[]) {
    super(path);
    this.ctrl_to_base = this.list('ctrl_to_base', UP_LAYERS, (p, j) => zeroConv(p, skips[j]!, resnetIn[j]!));
  }
}
