/**
 * UNet2DConditionModel (SD 1.x / 2.x / XL): the module tree with diffusers' keys, its traced
 * forward, and the public model class.
 */
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import { ConfigError } from '../errors.js';
import { TimestepEmbedding, Timesteps, textTimeEmbedding } from '../nn/embeddings.js';
import { Conv2d, GroupNorm, silu } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, type BlockAttention } from '../nn/unet-blocks.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import { perBlock } from '../util/per-block.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import { resolveModelFolder, openWeights, readConfigJson, type PretrainedOptions } from './loading.js';
import { TracedModel, assertFinite, timestepFeed, type ModelRuntimeOptions } from './traced-model.js';
import { parseUNet2DConditionConfig, type UNet2DConditionConfig } from './unet-2d-condition-config.js';

/** Per-block settings derived once from the config (diffusers' list expansions). */
export interface UNetLayout {
  levels: number;
  heads: number[];
  crossAttentionDim: number[];
  layersPerBlock: number[];
  transformerLayers: number[];
  timeEmbedDim: number;
}

export function unetLayout(c: UNet2DConditionConfig, origin: string): UNetLayout {
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
    readonly config: UNet2DConditionConfig,
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
    this.time_embedding = this.child('time_embedding', (p) => new TimestepEmbedding(p, ch[0]!, temb));
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

  /** The time embedding plus SDXL's text_time addition embedding: [B, timeEmbedDim]. */
  timeEmbedding(op: GraphBuilder, t: Value, added: { textEmbeds: Value; timeIds: Value } | null): Value {
    let emb = this.time_embedding.forward(op, this.time_proj.forward(op, t));
    if (this.add_embedding && this.add_time_proj && added) {
      emb = op.at('').add(emb, textTimeEmbedding(op, this.add_time_proj, this.add_embedding, added)); // [B, T]
    }
    return emb;
  }

  forward(op: GraphBuilder, sample: Value, t: Value, context: Value, added: { textEmbeds: Value; timeIds: Value } | null): Value {
    const b = op.at('');
    const temb = this.timeEmbedding(op, t, added);
    let x = sample;
    if (this.config.centerInputSample) x = b.sub(b.mul(x, b.scalar(2)), b.scalar(1));
    let h = this.conv_in.forward(op, x);
    const skips: Value[] = [h];
    for (const down of this.down_blocks) {
      const r = down.forward(op, h, temb, context);
      h = r.h;
      skips.push(...r.skips);
    }
    h = this.mid_block.forward(op, h, temb, context);
    for (const up of this.up_blocks) {
      const mine = skips.splice(skips.length - up.resnets.length);
      h = up.forward(op, h, mine, temb, context, skips[skips.length - 1]);
    }
    h = silu(b, this.conv_norm_out.forward(op, h));
    return this.conv_out.forward(op, h);
  }
}

export interface UNetForwardArgs {
  sample: TensorLike;
  timestep: number | TensorLike;
  encoderHiddenStates: TensorLike;
  /** SDXL (`addition_embed_type: "text_time"`): pooled text embeddings and micro-conditioning ids. */
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
}

export interface UNetPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {
  /** Compute dtype; float32 only for now (fp16 checkpoints are cast to float32 in the graph). */
  dtype?: 'float32';
}

export class UNet2DConditionModel extends TracedModel {
  protected readonly graphName = 'UNet2DConditionModel';

  private constructor(
    readonly config: UNet2DConditionConfig,
    readonly net: UNet2DConditionNet,
    /** The checkpoint as loaded, so `UNetControlNetXSModel.fromUnet` can re-key it. */
    readonly source: WeightSource,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  static async fromPretrained(dir: string, options: UNetPretrainedOptions = {}): Promise<UNet2DConditionModel> {
    if (options.dtype !== undefined && options.dtype !== 'float32') {
      throw new ConfigError(`dtype "${String(options.dtype)}" is not supported; computation runs in float32`);
    }
    const folder = await resolveModelFolder(dir, options);
    const config = parseUNet2DConditionConfig(readConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return UNet2DConditionModel.fromSource(config, source, options);
  }

  static fromSource(config: UNet2DConditionConfig, source: WeightSource, options: ModelRuntimeOptions = {}): UNet2DConditionModel {
    const net = new UNet2DConditionNet(config, unetLayout(config, source.origin));
    return new UNet2DConditionModel(config, net, source, source.bindStrict(net.parameters()), options);
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const sample = op.input('sample', F, ['batch', c.inChannels, 'height', 'width']);
    const t = op.input('timestep', F, ['batch']);
    const ctxDim = unetLayout(c, '').crossAttentionDim[0]!;
    const context = op.input('encoder_hidden_states', F, ['batch', 'sequence', ctxDim]);
    const added =
      c.additionEmbedType === 'text_time'
        ? { textEmbeds: op.input('text_embeds', F, ['batch', 'text_embed_dim']), timeIds: op.input('time_ids', F, ['batch', 'time_ids']) }
        : null;
    op.output(this.net.forward(op, sample, t, context, added), 'out_sample', F, ['batch', c.outChannels, 'height', 'width']);
  }

  async forward(args: UNetForwardArgs): Promise<{ sample: Tensor<'float32'> }> {
    const c = this.config;
    const sample = expectFloat32('sample', args.sample, [null, c.inChannels, null, null]);
    const batch = sample.dims[0]!;
    const ehs = expectFloat32('encoderHiddenStates', args.encoderHiddenStates, [batch, null, null]);
    assertFinite('sample', sample);
    assertFinite('encoderHiddenStates', ehs);
    const feeds: Record<string, TensorLike> = {
      sample,
      timestep: timestepFeed(args.timestep, batch),
      encoder_hidden_states: ehs,
    };
    if (c.additionEmbedType === 'text_time') {
      if (!args.addedCondKwargs) throw new ConfigError('this UNet has addition_embed_type "text_time": pass addedCondKwargs { textEmbeds, timeIds }');
      feeds['text_embeds'] = expectFloat32('addedCondKwargs.textEmbeds', args.addedCondKwargs.textEmbeds, [batch, null]);
      feeds['time_ids'] = expectFloat32('addedCondKwargs.timeIds', args.addedCondKwargs.timeIds, [batch, null]);
    }
    const out = await this.run(feeds);
    return { sample: out['out_sample'] as Tensor<'float32'> };
  }
}
