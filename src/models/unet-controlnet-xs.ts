/**
 * UNetControlNetXSModel: a base UNet and a ControlNet-XS adapter fused block by block
 * (diffusers' controlnet_xs.py). Built from a UNet and an adapter (`fromUnet`, the pipelines' path)
 * or from a saved fused folder (`fromPretrained`); its module tree is nn/unet-controlnet-xs-net.ts.
 *
 * One traced graph serves control on and off: the base UNet runs in the main graph (where
 * onnxruntime's layout optimisations apply), and each piece of control-model work sits in the
 * `then` branch of an ONNX `If` on the `apply_control` input whose `else` branch passes the base
 * features through. With control off nothing of the control model runs; weights are shared.
 */
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { AttentionUpcast, GraphBuilder } from '../graph/builder.js';
import { InputError } from '../errors.js';
import { UNetControlNetXSNet, type CtrlGroupBounds } from '../nn/unet-controlnet-xs-net.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import { perBlock } from '../util/per-block.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import type { ControlNetXSAdapter } from './controlnet-xs-adapter.js';
import { fuseWeights, fusedConfig } from './controlnet-xs-fusion.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';
import { assertFinite, timestepFeed, type ModelRuntimeOptions } from './traced-model.js';
import { timestepCondFeed, type UNet2DConditionModel } from './unet-2d-condition.js';
import { parseUNetControlNetXSConfig, type UNetControlNetXSConfig } from './unet-controlnet-xs-config.js';
import { UNetWithSwitches } from './unet-switches.js';

export interface UNetControlNetXSForwardArgs {
  sample: TensorLike;
  timestep: number | TensorLike;
  encoderHiddenStates: TensorLike;
  /** The control image [B, C, 8H, 8W]; may be omitted when `applyControl` is false. */
  controlnetCond?: TensorLike;
  conditioningScale?: number;
  applyControl?: boolean;
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
  /**
   * diffusers' `timestep_cond` [B, time_cond_proj_dim] (LCM-distilled base UNets only), routed as
   * diffusers' forward routes it: into the base time embedding of the learned time-embedding blend
   * (adapters with learn_time_embedding, control on), weighted 1 − time_embedding_mix^0.3; with control
   * off or without a learned control time embedding diffusers drops it, and so does this model.
   * (diffusers fails outright on the blend: its control time embedding has no cond_proj; here that
   * embedding reads the timestep alone.)
   */
  timestepCond?: TensorLike;
}

export class UNetControlNetXSModel extends UNetWithSwitches {
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
    const config = parseUNetControlNetXSConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    const g = config.ctrlMaxNormNumGroups;
    const groups = { down: config.downBlockTypes.map(() => g), mid: g };
    return UNetControlNetXSModel.fromSource(config, source, groups, options);
  }

  static fromSource(config: UNetControlNetXSConfig, source: WeightSource, groups: CtrlGroupBounds, options: ModelRuntimeOptions = {}): UNetControlNetXSModel {
    const net = new UNetControlNetXSNet(config, groups, source.origin);
    return new UNetControlNetXSModel(config, net, source.bindStrict(net.parameters()), options);
  }

  /** diffusers' `upcast_attention` (SD 2.1's configs set it): a float16 graph computes attention scores in float32. */
  protected override attentionUpcast(): AttentionUpcast | undefined {
    return this.config.upcastAttention ? 'scores' : undefined;
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const crossDim = perBlock(c.crossAttentionDim, c.downBlockTypes.length, 'cross_attention_dim', '')[0]!;
    const io = {
      sample: op.input('sample', F, ['batch', 4, 'height', 'width']),
      t: op.input('timestep', F, ['batch'], { keepFloat32: true }), // embedded in float32, as diffusers
      context: op.input('encoder_hidden_states', F, ['batch', 'sequence', crossDim]),
      cond: op.input('controlnet_cond', F, ['batch', c.ctrlConditioningChannels, 'cond_height', 'cond_width']),
      added:
        c.additionEmbedType === 'text_time'
          ? { textEmbeds: op.input('text_embeds', F, ['batch', 'text_embed_dim']), timeIds: op.input('time_ids', F, ['batch', 'time_ids'], { keepFloat32: true }) }
          : null,
    };
    const scale = op.input('conditioning_scale', F, []);
    const gate = op.input('apply_control', OnnxDataType.BOOL, []);
    // Only LCM base UNets get the input, so every other graph stays as it was.
    const timestepCond = c.timeCondProjDim === null ? null : op.input('timestep_cond', F, ['batch', c.timeCondProjDim]);
    const freeu = this.freeuInputs(op); // only while FreeU is on
    op.output(this.net.build(op, { ...io, scale, timestepCond, freeu }, { gate }), 'out_sample', F, ['batch', 4, 'height', 'width']);
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
      ...this.freeuFeeds(),
    };
    if (c.additionEmbedType === 'text_time') {
      if (!args.addedCondKwargs) throw new InputError('this model has addition_embed_type "text_time": pass addedCondKwargs { textEmbeds, timeIds }');
      feeds['text_embeds'] = expectFloat32('addedCondKwargs.textEmbeds', args.addedCondKwargs.textEmbeds, [batch, null]);
      feeds['time_ids'] = expectFloat32('addedCondKwargs.timeIds', args.addedCondKwargs.timeIds, [batch, null]);
    }
    const timestepCond = timestepCondFeed(args.timestepCond, c.timeCondProjDim, batch, 'this model');
    if (timestepCond) feeds['timestep_cond'] = timestepCond;
    const out = await this.run(feeds);
    return { sample: out['out_sample'] as Tensor<'float32'> };
  }
}

