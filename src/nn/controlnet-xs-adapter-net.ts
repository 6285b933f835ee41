/**
 * ControlNetXSAdapter's module tree (diffusers' layout): the conditioning embedding, conv in, an
 * optional learned time embedding, and the adapter's down / mid / up blocks. It declares the
 * parameters a checkpoint must hold; `UNetControlNetXSModel.fromUnet` re-keys them into the fused tree.
 */
import { perBlock } from '../util/per-block.js';
import { AdapterDownBlock, AdapterMidBlock, AdapterUpConnection } from './controlnet-xs-adapter-blocks.js';
import { ControlNetConditioningEmbedding, DOWN_LAYERS, upCtrlSkips, zeroConv, type CtrlDownOptions } from './controlnet-xs-blocks.js';
import { TimestepEmbedding } from './embeddings.js';
import { Conv2d } from './layers.js';
import { Module } from './module.js';

/**
 * The fields of diffusers' ControlNetXSAdapter config (camelCased, defaults filled) this tree reads.
 * A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface ControlNetXSAdapterNetConfig {
  readonly conditioningChannels: number;
  readonly conditioningEmbeddingOutChannels: readonly number[];
  readonly learnTimeEmbedding: boolean;
  readonly numAttentionHeads: number | readonly number[];
  readonly blockOutChannels: readonly number[];
  readonly baseBlockOutChannels: readonly number[];
  readonly crossAttentionDim: number | readonly number[];
  readonly downBlockTypes: readonly string[];
  readonly transformerLayersPerBlock: number | readonly number[];
  readonly maxNormNumGroups: number;
  readonly useLinearProjection: boolean;
}

/** Settings of level i of the control down path. */
export function ctrlLevel(c: ControlNetXSAdapterNetConfig, i: number, heads: number[], layers: number[], cross: number[], maxGroups: number): CtrlDownOptions {
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

  constructor(readonly config: ControlNetXSAdapterNetConfig, origin: string) {
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
