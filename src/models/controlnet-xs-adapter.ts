/**
 * ControlNetXSAdapter: the control model on its own (diffusers' layout). It cannot run by itself;
 * `UNetControlNetXSModel.fromUnet(unet, adapter)` fuses it with a base UNet.
 */
import { ConfigError } from '../errors.js';
import { TimestepEmbedding } from '../nn/embeddings.js';
import { Module } from '../nn/module.js';
import type { Transformer2DModel } from '../nn/attention.js';
import type { Downsample2D, ResnetBlock2D } from '../nn/resnet.js';
import type { UNetMidBlock2DCrossAttn, BlockAttention } from '../nn/unet-blocks.js';
import {
  ControlNetConditioningEmbedding,
  DOWN_LAYERS,
  UP_LAYERS,
  baseToCtrlChannels,
  ctrlDownAttention,
  ctrlDownResnet,
  ctrlDownsampler,
  ctrlMidBlock,
  upCtrlSkips,
  zeroConv,
  type CtrlDownOptions,
} from '../nn/controlnet-xs-blocks.js';
import { Conv2d } from '../nn/layers.js';
import { perBlock } from '../util/per-block.js';
import type { WeightSource } from '../weights/source.js';
import { parseConfig, type Camelize, type Warn } from './config.js';
import { resolveModelFolder, openWeights, readConfigJson, type PretrainedOptions } from './loading.js';

const DEFAULTS = {
  conditioning_channels: 3,
  conditioning_channel_order: 'rgb',
  conditioning_embedding_out_channels: [16, 32, 96, 256] as number[],
  time_embedding_mix: 1.0,
  learn_time_embedding: false,
  num_attention_heads: 4 as number | number[],
  block_out_channels: [4, 8, 16, 16] as number[],
  base_block_out_channels: [320, 640, 1280, 1280] as number[],
  cross_attention_dim: 1024 as number | number[],
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'] as string[],
  sample_size: 96 as number | null,
  transformer_layers_per_block: 1 as number | number[],
  upcast_attention: true,
  max_norm_num_groups: 32,
  use_linear_projection: true,
};

export type ControlNetXSAdapterConfig = Camelize<typeof DEFAULTS>;

export function parseAdapterConfig(raw: Record<string, unknown>, origin: string, warn: Warn): ControlNetXSAdapterConfig {
  const c = parseConfig(raw, DEFAULTS, origin, warn);
  if (c.conditioningChannelOrder !== 'rgb' && c.conditioningChannelOrder !== 'bgr') {
    throw new ConfigError(`${origin}: unknown conditioning_channel_order "${c.conditioningChannelOrder}"`);
  }
  const n = c.downBlockTypes.length;
  if (c.blockOutChannels.length !== n || c.baseBlockOutChannels.length !== n) {
    throw new ConfigError(`${origin}: block_out_channels, base_block_out_channels and down_block_types must have the same length`);
  }
  return c;
}

/** The adapter's down blocks hold the control halves of the fused down blocks. */
class AdapterDownBlock extends Module {
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

class AdapterMidBlock extends Module {
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

class AdapterUpConnection extends Module {
  readonly ctrl_to_base: Conv2d[];

  constructor(path: string, skips: number[], resnetIn: number[]) {
    super(path);
    this.ctrl_to_base = this.list('ctrl_to_base', UP_LAYERS, (p, j) => zeroConv(p, skips[j]!, resnetIn[j]!));
  }
}

/** Settings of level i of the control down path. */
export function ctrlLevel(c: ControlNetXSAdapterConfig, i: number, heads: number[], layers: number[], cross: number[], maxGroups: number): CtrlDownOptions {
  const base = c.baseBlockOutChannels;
  const ctrl = c.blockOutChannels;
  return {
    baseIn: i === 0 ? base[0]! : base[i - 1]!,
    baseOut: base[i]!,
    ctrlIn: i === 0 ? ctrl[0]! : ctrl[i - 1]!,
    ctrlOut: ctrl[i]!,
    tembChannels: base[0]! * 4,
    maxGroups,
    attention: c.downBlockTypes[i]!.startsWith('CrossAttn')
      ? { heads: heads[i]!, layers: Array(DOWN_LAYERS).fill(layers[i]!), crossAttentionDim: cross[i]!, useLinearProjection: c.useLinearProjection }
      : null,
    addDownsample: i < c.downBlockTypes.length - 1,
  };
}

export class ControlNetXSAdapterNet extends Module {
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly time_embedding: TimestepEmbedding | null;
  readonly conv_in: Conv2d;
  readonly control_to_base_for_conv_in: Conv2d;
  readonly down_blocks: AdapterDownBlock[];
  readonly mid_block: AdapterMidBlock;
  readonly up_connections: AdapterUpConnection[];

  constructor(readonly config: ControlNetXSAdapterConfig, origin: string) {
    super('');
    const c = config;
    const n = c.downBlockTypes.length;
    const heads = perBlock(c.numAttentionHeads, n, 'num_attention_heads', origin);
    const layers = perBlock(c.transformerLayersPerBlock, n, 'transformer_layers_per_block', origin);
    const cross = perBlock(c.crossAttentionDim, n, 'cross_attention_dim', origin);
    const base = c.baseBlockOutChannels;
    const ctrl = c.blockOutChannels;
    const temb = base[0]! * 4;
    this.controlnet_cond_embedding = this.child('controlnet_cond_embedding', (p) =>
      new ControlNetConditioningEmbedding(p, { embeddingChannels: ctrl[0]!, conditioningChannels: c.conditioningChannels, blockOutChannels: c.conditioningEmbeddingOutChannels }),
    );
    this.time_embedding = c.learnTimeEmbedding ? this.child('time_embedding', (p) => new TimestepEmbedding(p, base[0]!, temb)) : null;
    this.conv_in = this.child('conv_in', (p) => new Conv2d(p, 4, ctrl[0]!, { kernel: 3, padding: 1 }));
    this.control_to_base_for_conv_in = this.child('control_to_base_for_conv_in', (p) => zeroConv(p, ctrl[0]!, base[0]!));
    this.down_blocks = this.list('down_blocks', n, (p, i) => new AdapterDownBlock(p, ctrlLevel(c, i, heads, layers, cross, c.maxNormNumGroups)));
    this.mid_block = this.child('mid_block', (p) =>
      new AdapterMidBlock(p, {
        base: base[n - 1]!,
        ctrl: ctrl[n - 1]!,
        temb,
        attention: { heads: heads[n - 1]!, layers: [layers[n - 1]!], crossAttentionDim: cross[n - 1]!, useLinearProjection: c.useLinearProjection },
      }),
    );
    const rev = [...base].reverse();
    this.up_connections = this.list('up_connections', n, (p, i) => {
      const prev = rev[Math.max(i - 1, 0)]!;
      return new AdapterUpConnection(p, upCtrlSkips(ctrl, i), [prev, rev[i]!, rev[i]!]);
    });
  }
}

export class ControlNetXSAdapter {
  private constructor(
    readonly config: ControlNetXSAdapterConfig,
    readonly net: ControlNetXSAdapterNet,
    /** The checkpoint, re-keyed by `UNetControlNetXSModel.fromUnet`. */
    readonly source: WeightSource,
  ) {}

  static async fromPretrained(dir: string, options: PretrainedOptions = {}): Promise<ControlNetXSAdapter> {
    const folder = await resolveModelFolder(dir, options);
    const origin = `${folder}/config.json`;
    const config = parseAdapterConfig(readConfigJson(folder), origin, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return ControlNetXSAdapter.fromSource(config, source);
  }

  /** Validate a checkpoint against the adapter built from `config` (strict both ways). */
  static fromSource(config: ControlNetXSAdapterConfig, source: WeightSource): ControlNetXSAdapter {
    const net = new ControlNetXSAdapterNet(config, source.origin);
    source.bindStrict(net.parameters());
    return new ControlNetXSAdapter(config, net, source);
  }
}
