/**
 * UNetControlNetXSModel: a base UNet and a ControlNet-XS adapter fused block by block
 * (diffusers' controlnet_xs.py). Built from a UNet and an adapter (`fromUnet`, the pipelines' path)
 * or from a saved fused folder (`fromPretrained`).
 *
 * One traced graph serves control on and off: the base UNet runs in the main graph (where
 * onnxruntime's layout optimisations apply), and each piece of control-model work sits in the
 * `then` branch of an ONNX `If` on the `apply_control` input whose `else` branch passes the base
 * features through. With control off nothing of the control model runs; weights are shared.
 */
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import { InputError } from '../errors.js';
import { ControlNetConditioningEmbedding, ctrlSkipChannels, zeroConv } from '../nn/controlnet-xs-blocks.js';
import {
  ControlNetXSCrossAttnDownBlock2D,
  ControlNetXSCrossAttnMidBlock2D,
  ControlNetXSCrossAttnUpBlock2D,
  type Exchange,
} from '../nn/controlnet-xs-fused-blocks.js';
import { TimestepEmbedding, Timesteps, textTimeEmbedding } from '../nn/embeddings.js';
import { Conv2d, GroupNorm, silu } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import { perBlock } from '../util/per-block.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import type { ControlNetXSAdapter } from './controlnet-xs-adapter.js';
import { fuseWeights, fusedConfig } from './controlnet-xs-fusion.js';
import { resolveModelFolder, openWeights, readConfigJson, type PretrainedOptions } from './loading.js';
import { TracedModel, assertFinite, timestepFeed, type ModelRuntimeOptions } from './traced-model.js';
import type { UNet2DConditionModel } from './unet-2d-condition.js';
import { parseUNetControlNetXSConfig, type UNetControlNetXSConfig } from './unet-controlnet-xs-config.js';

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
    readonly config: UNetControlNetXSConfig,
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
    this.base_time_embedding = this.child('base_time_embedding', (p) => new TimestepEmbedding(p, base[0]!, temb));
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
   * The forward pass. `control` decides where the control model's work goes: behind an ONNX `If`
   * on a boolean graph input ('gated', what the model runs), always ('on') or nowhere ('off').
   */
  forward(
    op: GraphBuilder,
    io: { sample: Value; t: Value; context: Value; cond: Value; added: { textEmbeds: Value; timeIds: Value } | null; scale: Value },
    control: { gate: Value } | 'on' | 'off',
  ): Value {
    const b = op.at('');
    const c = this.config;
    const gated = (g: GraphBuilder, passthrough: readonly Value[], fn: (branch: GraphBuilder) => Value[]): Value[] => {
      if (control === 'on') return fn(g);
      if (control === 'off') return [...passthrough];
      return g.ifElse(control.gate, fn, () => [...passthrough], passthrough.length);
    };

    // 1. time (with a learned control time embedding, control steps blend ctrl·m + base·(1−m))
    const tEmb = this.base_time_proj.forward(op, io.t);
    let temb = this.base_time_embedding.forward(op, tEmb);
    const ctrlTime = this.ctrl_time_embedding;
    if (ctrlTime) {
      const baseTemb = temb;
      [temb] = gated(b, [baseTemb], (g) => {
        const m = c.timeEmbeddingMix ** 0.3;
        const ctrlT = g.mul(ctrlTime.forward(g, tEmb), g.scalar(m)); // [B, T]
        return [g.add(ctrlT, g.mul(baseTemb, g.scalar(1 - m)))];
      }) as [Value];
    }
    if (this.base_add_embedding && this.base_add_time_proj && io.added) {
      temb = b.add(temb, textTimeEmbedding(op, this.base_add_time_proj, this.base_add_embedding, io.added)); // [B, T]
    }
    const x: Exchange = { temb, context: io.context, scale: io.scale, control: gated };

    // 2. conv in, and on the control side conv in + the conditioning image's embedding
    let hBase = this.base_conv_in.forward(op, io.sample);
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
      const hint = this.controlnet_cond_embedding.forward(g, cond); // [B, Cc, 8H, 8W] → [B, Cctrl, H, W]
      const ctrl = g.add(this.ctrl_conv_in.forward(g, io.sample), hint); // [B, Cctrl, H, W]
      // add ctrl → base: [B, Cbase, H, W] + ([B, Cctrl, H, W] → [B, Cbase, H, W]) · scale
      return [g.add(baseIn, g.mul(this.control_to_base_for_conv_in.forward(g, ctrl), io.scale)), ctrl];
    }) as [Value, Value];
    const skipsBase: Value[] = [hBase];
    const skipsCtrl: Value[] = [hCtrl];

    // 3. down
    for (const down of this.down_blocks) {
      const r = down.forward(op, hBase, hCtrl, x);
      hBase = r.hBase;
      hCtrl = r.hCtrl;
      skipsBase.push(...r.skipsBase);
      skipsCtrl.push(...r.skipsCtrl);
    }
    // 4. mid
    ({ hBase, hCtrl } = this.mid_block.forward(op, hBase, hCtrl, x));
    // 5. up
    for (const up of this.up_blocks) hBase = up.forward(op, hBase, skipsBase, skipsCtrl, x);
    // 6. conv out
    hBase = silu(b, this.base_conv_norm_out.forward(op, hBase));
    return this.base_conv_out.forward(op, hBase);
  }
}

export interface UNetControlNetXSForwardArgs {
  sample: TensorLike;
  timestep: number | TensorLike;
  encoderHiddenStates: TensorLike;
  /** The control image [B, C, 8H, 8W]; may be omitted when `applyControl` is false. */
  controlnetCond?: TensorLike;
  conditioningScale?: number;
  applyControl?: boolean;
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
}

export class UNetControlNetXSModel extends TracedModel {
  protected readonly graphName = 'UNetControlNetXSModel';

  private constructor(
    readonly config: UNetControlNetXSConfig,
    readonly net: UNetControlNetXSNet,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  /** diffusers' `from_unet(unet, controlnet)`: fuse a UNet with an adapter (nothing is copied). */
  static async fromUnet(unet: UNet2DConditionModel, controlnet: ControlNetXSAdapter, options: ModelRuntimeOptions = {}): Promise<UNetControlNetXSModel> {
    return UNetControlNetXSModel.fuse(unet, controlnet, options);
  }

  /** `fromUnet` without the promise (the fusion only re-keys headers already read). */
  static fuse(unet: UNet2DConditionModel, controlnet: ControlNetXSAdapter, options: ModelRuntimeOptions = {}): UNetControlNetXSModel {
    const config = fusedConfig(unet.config, controlnet.config);
    const adapter = controlnet.net;
    const groups: CtrlGroupBounds = {
      down: adapter.down_blocks.map((d) => d.resnets[0]!.norm1.numGroups),
      mid: adapter.mid_block.midblock.resnets[0]!.norm1.numGroups,
    };
    const source = fuseWeights(unet.source, controlnet.source);
    return UNetControlNetXSModel.fromSource(config, source, groups, options);
  }

  /** Load a saved fused model (`UNetControlNetXSModel.save_pretrained` output). */
  static async fromPretrained(dir: string, options: PretrainedOptions & ModelRuntimeOptions = {}): Promise<UNetControlNetXSModel> {
    const folder = await resolveModelFolder(dir, options);
    const config = parseUNetControlNetXSConfig(readConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    const g = config.ctrlMaxNormNumGroups;
    const groups = { down: config.downBlockTypes.map(() => g), mid: g };
    return UNetControlNetXSModel.fromSource(config, source, groups, options);
  }

  static fromSource(config: UNetControlNetXSConfig, source: WeightSource, groups: CtrlGroupBounds, options: ModelRuntimeOptions = {}): UNetControlNetXSModel {
    const net = new UNetControlNetXSNet(config, groups, source.origin);
    return new UNetControlNetXSModel(config, net, source.bindStrict(net.parameters()), options);
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const crossDim = perBlock(c.crossAttentionDim, c.downBlockTypes.length, 'cross_attention_dim', '')[0]!;
    const io = {
      sample: op.input('sample', F, ['batch', 4, 'height', 'width']),
      t: op.input('timestep', F, ['batch']),
      context: op.input('encoder_hidden_states', F, ['batch', 'sequence', crossDim]),
      cond: op.input('controlnet_cond', F, ['batch', c.ctrlConditioningChannels, 'cond_height', 'cond_width']),
      added:
        c.additionEmbedType === 'text_time'
          ? { textEmbeds: op.input('text_embeds', F, ['batch', 'text_embed_dim']), timeIds: op.input('time_ids', F, ['batch', 'time_ids']) }
          : null,
    };
    const scale = op.input('conditioning_scale', F, []);
    const gate = op.input('apply_control', OnnxDataType.BOOL, []);
    op.output(this.net.forward(op, { ...io, scale }, { gate }), 'out_sample', F, ['batch', 4, 'height', 'width']);
  }

  async forward(args: UNetControlNetXSForwardArgs): Promise<{ sample: Tensor<'float32'> }> {
    const c = this.config;
    const sample = expectFloat32('sample', args.sample, [null, 4, null, null]);
    const [batch, , h, w] = sample.dims as [number, number, number, number];
    const m = this.net.latentMultiple;
    if (h % m !== 0 || w % m !== 0) {
      throw new InputError(`sample is ${h}×${w} latents; UNetControlNetXSModel needs multiples of ${m} (2^(levels−1))`);
    }
    const ehs = expectFloat32('encoderHiddenStates', args.encoderHiddenStates, [batch, null, null]);
    const applyControl = args.applyControl ?? true;
    const scale = args.conditioningScale ?? 1;
    if (!Number.isFinite(scale)) throw new InputError(`conditioningScale must be a finite number, got ${scale}`);
    const down = this.net.controlnet_cond_embedding.downscale;
    let cond: Tensor<'float32'>;
    if (args.controlnetCond) {
      cond = expectFloat32('controlnetCond', args.controlnetCond, [batch, c.ctrlConditioningChannels, h * down, w * down]);
    } else if (!applyControl) {
      cond = expectFloat32('controlnetCond', { data: new Float32Array(batch * c.ctrlConditioningChannels), dims: [batch, c.ctrlConditioningChannels, 1, 1] }, [null, null, null, null]);
    } else {
      throw new InputError('controlnetCond is required when applyControl is true');
    }
    for (const [name, t] of [['sample', sample], ['encoderHiddenStates', ehs], ['controlnetCond', cond]] as const) assertFinite(name, t);
    const feeds: Record<string, TensorLike | number | boolean> = {
      sample,
      timestep: timestepFeed(args.timestep, batch),
      encoder_hidden_states: ehs,
      controlnet_cond: cond,
      conditioning_scale: scale,
      apply_control: applyControl,
    };
    if (c.additionEmbedType === 'text_time') {
      if (!args.addedCondKwargs) throw new InputError('this model has addition_embed_type "text_time": pass addedCondKwargs { textEmbeds, timeIds }');
      feeds['text_embeds'] = expectFloat32('addedCondKwargs.textEmbeds', args.addedCondKwargs.textEmbeds, [batch, null]);
      feeds['time_ids'] = expectFloat32('addedCondKwargs.timeIds', args.addedCondKwargs.timeIds, [batch, null]);
    }
    const out = await this.run(feeds);
    return { sample: out['out_sample'] as Tensor<'float32'> };
  }
}

