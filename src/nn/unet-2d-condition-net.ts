/**
 * UNet2DConditionModel's module tree (SD 1.x / 2.x / XL) with diffusers' keys: the time and SDXL
 * text_time embeddings, conv in, down / mid / up blocks, conv out. Its `build` only emits
 * graph nodes; the runtime class is models/unet-2d-condition.ts.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { perBlock } from '../util/per-block.js';
import { TimestepEmbedding, Timesteps, textTimeEmbedding } from './embeddings.js';
import { freeuForBlock, type FreeUInputs } from './freeu.js';
import { Conv2d, GroupNorm, silu } from './layers.js';
import { Module } from './module.js';
import { DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, type BlockAttention } from './unet-blocks.js';

/**
 * The fields of diffusers' UNet2DConditionModel config (camelCased, defaults filled) this tree
 * reads. A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface UNet2DConditionNetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly centerInputSample: boolean;
  readonly flipSinToCos: boolean;
  readonly freqShift: number;
  readonly downBlockTypes: readonly string[];
  readonly upBlockTypes: readonly string[];
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number | readonly number[];
  readonly downsamplePadding: number;
  readonly midBlockScaleFactor: number;
  readonly normNumGroups: number;
  readonly normEps: number;
  readonly crossAttentionDim: number | readonly number[];
  readonly transformerLayersPerBlock: number | readonly number[];
  readonly reverseTransformerLayersPerBlock: readonly (readonly number[])[] | null;
  /** diffusers' naming quirk: the number of heads. */
  readonly attentionHeadDim: number | readonly number[];
  readonly useLinearProjection: boolean;
  readonly additionEmbedType: string | null;
  readonly additionTimeEmbedDim: number | null;
  readonly timeEmbeddingDim: number | null;
  readonly convInKernel: number;
  readonly convOutKernel: number;
  readonly projectionClassEmbeddingsInputDim: number | null;
  /** LCM-distilled UNets: the width of `timestep_cond`, which `time_embedding.cond_proj` reads. */
  readonly timeCondProjDim: number | null;
}

/** Per-block settings derived once from the config (diffusers' list expansions). */
export interface UNetLayout {
  levels: number;
  heads: number[];
  crossAttentionDim: number[];
  layersPerBlock: number[];
  transformerLayers: number[];
  timeEmbedDim: number;
}

export function unetLayout(c: UNet2DConditionNetConfig, origin: string): UNetLayout {
  const n = c.downBlockTypes.length;
  return {
    levels: n,
    // diffusers' naming quirk: attention_head_dim is the number of heads.
    heads: perBlock(c.attentionHeadDim, n, 'attention_head_dim', origin),
    crossAttentionDim: perBlock(c.crossAttentionDim, n, 'cross_attention_dim', origin),
    layersPerBlock: perBlock(c.layersPerBlock, n, 'layers_per_block', origin),
    transformerLayers: perBlock(c.transformerLayersPerBlock, n, 'transformer_layers_per_block', origin),
    timeEmbedDim: c.timeEmbeddingDim ?? c.blockOutChannels[0]! * 4,
  };
}

export class UNet2DConditionNet extends Module {
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly add_time_proj: Timesteps | null;
  readonly add_embedding: TimestepEmbedding | null;
  readonly down_blocks: DownBlock2D[];
  readonly mid_block: UNetMidBlock2DCrossAttn;
  readonly up_blocks: UpBlock2D[];
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(
    readonly config: UNet2DConditionNetConfig,
    readonly layout: UNetLayout,
  ) {
    super('');
    const c = config;
    const L = layout;
    const ch = c.blockOutChannels;
    const temb = L.timeEmbedDim;
    const attention = (i: number, hasAttn: boolean, layers: number[]): BlockAttention | null =>
      hasAttn
        ? { heads: L.heads[i]!, layers, crossAttentionDim: L.crossAttentionDim[i]!, useLinearProjection: c.useLinearProjection }
        : null;

    this.conv_in = this.child('conv_in', (p) => new Conv2d(p, c.inChannels, ch[0]!, { kernel: c.convInKernel, padding: (c.convInKernel - 1) / 2 }));
    this.time_proj = this.child('time_proj', (p) => new Timesteps(p, ch[0]!, { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift }));
    this.time_embedding = this.child('time_embedding', (p) => new TimestepEmbedding(p, ch[0]!, temb, { condProjDim: c.timeCondProjDim }));
    if (c.additionEmbedType === 'text_time') {
      this.add_time_proj = this.child('add_time_proj', (p) => new Timesteps(p, c.additionTimeEmbedDim!, { flipSinToCos: c.flipSinToCos, downscaleFreqShift: c.freqShift }));
      this.add_embedding = this.child('add_embedding', (p) => new TimestepEmbedding(p, c.projectionClassEmbeddingsInputDim!, temb));
    } else {
      this.add_time_proj = null;
      this.add_embedding = null;
    }

    this.down_blocks = this.list('down_blocks', L.levels, (p, i) =>
      new DownBlock2D(p, {
        inChannels: i === 0 ? ch[0]! : ch[i - 1]!,
        outChannels: ch[i]!,
        tembChannels: temb,
        numLayers: L.layersPerBlock[i]!,
        groups: c.normNumGroups,
        eps: c.normEps,
        attention: attention(i, c.downBlockTypes[i] === 'CrossAttnDownBlock2D', Array(L.layersPerBlock[i]!).fill(L.transformerLayers[i]!)),
        addDownsample: i < L.levels - 1,
        downsamplePadding: c.downsamplePadding,
      }),
    );
    const last = L.levels - 1;
    this.mid_block = this.child('mid_block', (p) =>
      new UNetMidBlock2DCrossAttn(p, {
        inChannels: ch[last]!,
        tembChannels: temb,
        groups: c.normNumGroups,
        eps: c.normEps,
        outputScaleFactor: c.midBlockScaleFactor,
        attention: attention(last, true, [L.transformerLayers[last]!])!,
      }),
    );
    const rev = [...ch].reverse();
    const revHeads = [...L.heads].reverse();
    const revCross = [...L.crossAttentionDim].reverse();
    const revLayers = [...L.layersPerBlock].reverse();
    const revTransformer = [...L.transformerLayers].reverse();
    this.up_blocks = this.list('up_blocks', L.levels, (p, i) => {
      const numLayers = revLayers[i]! + 1;
      const perLayer = c.reverseTransformerLayersPerBlock?.[i] ?? Array(numLayers).fill(revTransformer[i]!);
      const hasAttn = c.upBlockTypes[i] === 'CrossAttnUpBlock2D';
      return new UpBlock2D(p, {
        inChannels: rev[Math.min(i + 1, L.levels - 1)]!,
        prevOutputChannels: rev[Math.max(i - 1, 0)]!,
        outChannels: rev[i]!,
        tembChannels: temb,
        numLayers,
        groups: c.normNumGroups,
        eps: c.normEps,
        attention: hasAttn
          ? { heads: revHeads[i]!, layers: perLayer, crossAttentionDim: revCross[i]!, useLinearProjection: c.useLinearProjection }
          : null,
        addUpsample: i < L.levels - 1,
      });
    });
    this.conv_norm_out = this.child('conv_norm_out', (p) => new GroupNorm(p, c.normNumGroups, ch[0]!, c.normEps));
    this.conv_out = this.child('conv_out', (p) => new Conv2d(p, ch[0]!, c.outChannels, { kernel: c.convOutKernel, padding: (c.convOutKernel - 1) / 2 }));
  }

  /**
   * The time embedding (with `timestepCond` [B, timeCondProjDim] through cond_proj, LCM UNets) plus
   * SDXL's text_time addition embedding: [B, timeEmbedDim].
   */
  timeEmbedding(op: GraphBuilder, t: Value, added: { textEmbeds: Value; timeIds: Value } | null, timestepCond: Value | null = null): Value {
    let emb = this.time_embedding.build(op, this.time_proj.build(op, t), timestepCond);
    if (this.add_embedding && this.add_time_proj && added) {
      emb = op.at('').add(emb, textTimeEmbedding(op, this.add_time_proj, this.add_embedding, added)); // [B, T]
    }
    return emb;
  }

  build(
    op: GraphBuilder,
    sample: Value,
    t: Value,
    context: Value,
    added: { textEmbeds: Value; timeIds: Value } | null,
    timestepCond: Value | null = null,
    /** FreeU's factors when FreeU is on (up blocks 0 and 1), else null. */
    freeu: FreeUInputs | null = null,
  ): Value {
    const b = op.at('');
    const temb = this.timeEmbedding(op, t, added, timestepCond);
    let x = sample;
    if (this.config.centerInputSample) x = b.sub(b.mul(x, b.scalar(2)), b.scalar(1));
    let h = this.conv_in.build(op, x);
    const skips: Value[] = [h];
    for (const down of this.down_blocks) {
      const r = down.build(op, h, temb, context);
      h = r.h;
      skips.push(...r.skips);
    }
    h = this.mid_block.build(op, h, temb, context);
    this.up_blocks.forEach((up, i) => {
      const mine = skips.splice(skips.length - up.resnets.length);
      h = up.build(op, h, mine, temb, context, skips[skips.length - 1], freeuForBlock(freeu, i));
    });
    h = silu(b, this.conv_norm_out.build(op, h));
    return this.conv_out.build(op, h);
  }
}
