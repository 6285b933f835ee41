/**
 * UNetControlNetXSModel's module tree (diffusers' controlnet_xs.py): a base UNet and a ControlNet-XS
 * control model fused block by block, with the fused model's keys. Its `build` only emits
 * graph nodes, the control model's work behind an ONNX `If` (or always, or nowhere); the runtime
 * class is models/unet-controlnet-xs.ts.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { perBlock } from '../util/per-block.js';
import { ControlNetConditioningEmbedding, ctrlSkipChannels, zeroConv } from './controlnet-xs-blocks.js';
import {
  ControlNetXSCrossAttnDownBlock2D,
  ControlNetXSCrossAttnMidBlock2D,
  ControlNetXSCrossAttnUpBlock2D,
  type Exchange,
} from './controlnet-xs-fused-blocks.js';
import { TimestepEmbedding, Timesteps, textTimeEmbedding } from './embeddings.js';
import { freeuForBlock, type FreeUInputs } from './freeu.js';
import { Conv2d, GroupNorm, silu } from './layers.js';
import { Module } from './module.js';

/**
 * The fields of diffusers' UNetControlNetXSModel config (camelCased, defaults filled) this tree
 * reads. A parsed or fused config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface UNetControlNetXSNetConfig {
  readonly downBlockTypes: readonly string[];
  readonly upBlockTypes: readonly string[];
  readonly blockOutChannels: readonly number[];
  readonly normNumGroups: number;
  readonly crossAttentionDim: number | readonly number[];
  readonly transformerLayersPerBlock: number | readonly number[];
  readonly numAttentionHeads: number | readonly number[];
  readonly additionEmbedType: string | null;
  readonly additionTimeEmbedDim: number | null;
  readonly useLinearProjection: boolean;
  readonly projectionClassEmbeddingsInputDim: number | null;
  /** LCM-distilled base UNets: the width of `timestep_cond`, which `base_time_embedding.cond_proj` reads. */
  readonly timeCondProjDim: number | null;
  readonly timeEmbeddingMix: number;
  readonly ctrlConditioningChannels: number;
  readonly ctrlConditioningEmbeddingOutChannels: readonly number[];
  readonly ctrlConditioningChannelOrder: string;
  readonly ctrlLearnTimeEmbedding: boolean;
  readonly ctrlBlockOutChannels: readonly number[];
  readonly ctrlNumAttentionHeads: number | readonly number[];
}

/**
 * GroupNorm bounds of the control side. A fused folder uses `ctrl_max_norm_num_groups` everywhere;
 * `fromUnet` takes each down block's bound from the adapter block's first norm and the mid block's
 * from the adapter's mid block, which can differ for small models (diffusers quirk).
 */
export interface CtrlGroupBounds {
  down: number[];
  mid: number;
}

export class UNetControlNetXSNet extends Module {
  readonly base_conv_in: Conv2d;
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly ctrl_conv_in: Conv2d;
  readonly control_to_base_for_conv_in: Conv2d;
  readonly base_time_proj: Timesteps;
  readonly base_time_embedding: TimestepEmbedding;
  readonly ctrl_time_embedding: TimestepEmbedding | null;
  readonly base_add_time_proj: Timesteps | null;
  readonly base_add_embedding: TimestepEmbedding | null;
  readonly down_blocks: ControlNetXSCrossAttnDownBlock2D[];
  readonly mid_block: ControlNetXSCrossAttnMidBlock2D;
  readonly up_blocks: ControlNetXSCrossAttnUpBlock2D[];
  readonly base_conv_norm_out: GroupNorm;
  readonly base_conv_out: Conv2d;

  constructor(
    readonly config: UNetControlNetXSNetConfig,
    groups: CtrlGroupBounds,
    origin: string,
  ) {
    super('');
    const c = config;
    const n = c.downBlockTypes.length;
    const base = c.blockOutChannels;
    const ctrl = c.ctrlBlockOutChannels;
    const layers = perBlock(c.transformerLayersPerBlock, n, 'transformer_layers_per_block', origin);
    const cross = perBlock(c.crossAttentionDim, n, 'cross_attention_dim', origin);
    const heads = perBlock(c.numAttentionHeads, n, 'num_attention_heads', origin);
    const ctrlHeads = perBlock(c.ctrlNumAttentionHeads, n, 'ctrl_num_attention_heads', origin);
    const temb = base[0]! * 4;
    const linear = c.useLinearProjection;
    const attn = (h: number, i: number, count: number) => ({ heads: h, layers: Array(count).fill(layers[i]!), crossAttentionDim: cross[i]!, useLinearProjection: linear });

    this.base_conv_in = this.child('base_conv_in', (p) => new Conv2d(p, 4, base[0]!, { kernel: 3, padding: 1 }));
    this.controlnet_cond_embedding = this.child('controlnet_cond_embedding', (p) =>
      new ControlNetConditioningEmbedding(p, { embeddingChannels: ctrl[0]!, conditioningChannels: c.ctrlConditioningChannels, blockOutChannels: c.ctrlConditioningEmbeddingOutChannels }),
    );
    this.ctrl_conv_in = this.child('ctrl_conv_in', (p) => new Conv2d(p, 4, ctrl[0]!, { kernel: 3, padding: 1 }));
    this.control_to_base_for_conv_in = this.child('control_to_base_for_conv_in', (p) => zeroConv(p, ctrl[0]!, base[0]!));
    this.base_time_proj = this.child('base_time_proj', (p) => new Timesteps(p, base[0]!, { flipSinToCos: true, downscaleFreqShift: 0 }));
    this.base_time_embedding = this.child('base_time_embedding', (p) => new TimestepEmbedding(p, base[0]!, temb, { condProjDim: c.timeCondProjDim }));
    this.ctrl_time_embedding = c.ctrlLearnTimeEmbedding ? this.child('ctrl_time_embedding', (p) => new TimestepEmbedding(p, base[0]!, temb)) : null;
    if (c.additionEmbedType === 'text_time') {
      this.base_add_time_proj = this.child('base_add_time_proj', (p) => new Timesteps(p, c.additionTimeEmbedDim!, { flipSinToCos: true, downscaleFreqShift: 0 }));
      this.base_add_embedding = this.child('base_add_embedding', (p) => new TimestepEmbedding(p, c.projectionClassEmbeddingsInputDim!, temb));
    } else {
      this.base_add_time_proj = null;
      this.base_add_embedding = null;
    }

    this.down_blocks = this.list('down_blocks', n, (p, i) => {
      const hasAttn = c.downBlockTypes[i]!.startsWith('CrossAttn');
      return new ControlNetXSCrossAttnDownBlock2D(p, {
        baseIn: i === 0 ? base[0]! : base[i - 1]!,
        baseOut: base[i]!,
        ctrlIn: i === 0 ? ctrl[0]! : ctrl[i - 1]!,
        ctrlOut: ctrl[i]!,
        tembChannels: temb,
        maxGroups: groups.down[i]!,
        attention: hasAttn ? attn(ctrlHeads[i]!, i, 2) : null,
        baseAttention: hasAttn ? attn(heads[i]!, i, 2) : null,
        baseGroups: c.normNumGroups,
        addDownsample: i < n - 1,
      });
    });
    this.mid_block = this.child('mid_block', (p) =>
      new ControlNetXSCrossAttnMidBlock2D(p, {
        baseChannels: base[n - 1]!,
        ctrlChannels: ctrl[n - 1]!,
        tembChannels: temb,
        baseGroups: c.normNumGroups,
        ctrlMaxGroups: groups.mid,
        baseAttention: attn(heads[n - 1]!, n - 1, 1),
        ctrlAttention: attn(ctrlHeads[n - 1]!, n - 1, 1),
      }),
    );
    const rev = [...base].reverse();
    const skips = ctrlSkipChannels(ctrl);
    this.up_blocks = this.list('up_blocks', n, (p, i) => {
      const mine = skips.splice(skips.length - 3).reverse();
      const r = n - 1 - i;
      return new ControlNetXSCrossAttnUpBlock2D(p, {
        inChannels: rev[Math.min(i + 1, n - 1)]!,
        outChannels: rev[i]!,
        prevOutputChannels: rev[Math.max(i - 1, 0)]!,
        ctrlSkipChannels: mine,
        tembChannels: temb,
        groups: c.normNumGroups,
        attention: c.upBlockTypes[i]!.startsWith('CrossAttn') ? { heads: heads[r]!, layers: Array(3).fill(layers[r]!), crossAttentionDim: cross[r]!, useLinearProjection: linear } : null,
        addUpsample: i < n - 1,
      });
    });
    this.base_conv_norm_out = this.child('base_conv_norm_out', (p) => new GroupNorm(p, c.normNumGroups, base[0]!, 1e-5));
    this.base_conv_out = this.child('base_conv_out', (p) => new Conv2d(p, base[0]!, 4, { kernel: 3, padding: 1 }));
  }

  /** The sampled levels' total downscale: latents must be multiples of this. */
  get latentMultiple(): number {
    return 2 ** (this.down_blocks.length - 1);
  }

  /**
   * The forward pass as graph nodes. `control` decides where the control model's work goes: behind an ONNX `If`
   * on a boolean graph input ('gated', what the model runs), always ('on') or nowhere ('off').
   */
  build(
    op: GraphBuilder,
    io: {
      sample: Value;
      t: Value;
      context: Value;
      cond: Value;
      added: { textEmbeds: Value; timeIds: Value } | null;
      scale: Value;
      /** `timestep_cond` [B, timeCondProjDim] of an LCM-distilled base UNet, else null. */
      timestepCond?: Value | null;
      /** FreeU's factors when FreeU is on (up blocks 0 and 1), else null. */
      freeu?: FreeUInputs | null;
    },
    control: { gate: Value } | 'on' | 'off',
  ): Value {
    const b = op.at('');
    const c = this.config;
    const gated = (g: GraphBuilder, passthrough: readonly Value[], fn: (branch: GraphBuilder) => Value[]): Value[] => {
      if (control === 'on') return fn(g);
      if (control === 'off') return [...passthrough];
      return g.ifElse(control.gate, fn, () => [...passthrough], passthrough.length);
    };

    // 1. time (with a learned control time embedding, control steps blend ctrl·m + base·(1−m)).
    // timestep_cond (LCM) as diffusers' forward routes it: only into that blend's base embedding.
    // Everywhere else diffusers calls the base embedding without it, so it is dropped there too;
    // and the control embedding has no cond_proj (diffusers fails passing it one), so it never reads it.
    const tEmb = this.base_time_proj.build(op, io.t);
    let temb = this.base_time_embedding.build(op, tEmb);
    const ctrlTime = this.ctrl_time_embedding;
    const timestepCond = io.timestepCond ?? null;
    if (ctrlTime) {
      const baseTemb = temb;
      [temb] = gated(b, [baseTemb], (g) => {
        const m = c.timeEmbeddingMix ** 0.3;
        const ctrlT = g.mul(ctrlTime.build(g, tEmb), g.scalar(m)); // [B, T]
        const baseT = timestepCond ? this.base_time_embedding.build(g, tEmb, timestepCond) : baseTemb; // [B, T]
        return [g.add(ctrlT, g.mul(baseT, g.scalar(1 - m)))];
      }) as [Value];
    }
    if (this.base_add_embedding && this.base_add_time_proj && io.added) {
      temb = b.add(temb, textTimeEmbedding(op, this.base_add_time_proj, this.base_add_embedding, io.added)); // [B, T]
    }
    const x: Exchange = { temb, context: io.context, scale: io.scale, control: gated };

    // 2. conv in, and on the control side conv in + the conditioning image's embedding
    let hBase = this.base_conv_in.build(op, io.sample);
    // While control is off, `sample` stands in for the control stream (never read then). It must not be a
    // constant: onnxruntime would fold the else-branch pass-through into a duplicate initializer.
    let hCtrl: Value = io.sample;
    const baseIn = hBase;
    [hBase, hCtrl] = gated(b, [baseIn, hCtrl], (g) => {
      let cond = io.cond;
      if (c.ctrlConditioningChannelOrder === 'bgr') {
        const chs = c.ctrlConditioningChannels;
        cond = g.gather(cond, g.ints(Array.from({ length: chs }, (_, i) => chs - 1 - i)), { axis: 1 }); // RGB → BGR along C
      }
      const hint = this.controlnet_cond_embedding.build(g, cond); // [B, Cc, 8H, 8W] → [B, Cctrl, H, W]
      const ctrl = g.add(this.ctrl_conv_in.build(g, io.sample), hint); // [B, Cctrl, H, W]
      // add ctrl → base: [B, Cbase, H, W] + ([B, Cctrl, H, W] → [B, Cbase, H, W]) · scale
      return [g.add(baseIn, g.mul(this.control_to_base_for_conv_in.build(g, ctrl), io.scale)), ctrl];
    }) as [Value, Value];
    const skipsBase: Value[] = [hBase];
    const skipsCtrl: Value[] = [hCtrl];

    // 3. down
    for (const down of this.down_blocks) {
      const r = down.build(op, hBase, hCtrl, x);
      hBase = r.hBase;
      hCtrl = r.hCtrl;
      skipsBase.push(...r.skipsBase);
      skipsCtrl.push(...r.skipsCtrl);
    }
    // 4. mid
    ({ hBase, hCtrl } = this.mid_block.build(op, hBase, hCtrl, x));
    // 5. up
    const freeu = io.freeu ?? null;
    this.up_blocks.forEach((up, i) => {
      hBase = up.build(op, hBase, skipsBase, skipsCtrl, x, freeuForBlock(freeu, i));
    });
    // 6. conv out
    hBase = silu(b, this.base_conv_norm_out.build(op, hBase));
    return this.base_conv_out.build(op, hBase);
  }
}
