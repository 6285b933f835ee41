/**
 * UNet2DConditionModel (SD 1.x / 2.x / XL): the public model class. It builds its module tree
 * (nn/unet-2d-condition-net.ts) from the config, traces it into one graph and runs it.
 */
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { AttentionUpcast, GraphBuilder } from '../graph/builder.js';
import { ConfigError, InputError } from '../errors.js';
import { UNet2DConditionNet, unetLayout } from '../nn/unet-2d-condition-net.js';
import { Tensor, expectFloat32, type TensorLike } from '../tensor.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import { checkComputeDtype } from './compute-dtype.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';
import { UNET_SPEC, modelFromSingleFile, type SingleFileComponentOptions } from './single-file/component.js';
import { assertFinite, timestepFeed, type ModelRuntimeOptions } from './traced-model.js';
import { parseUNet2DConditionConfig, type UNet2DConditionConfig } from './unet-2d-condition-config.js';
import { UNetWithSwitches } from './unet-switches.js';

export interface UNetForwardArgs {
  sample: TensorLike;
  timestep: number | TensorLike;
  encoderHiddenStates: TensorLike;
  /** SDXL (`addition_embed_type: "text_time"`): pooled text embeddings and micro-conditioning ids. */
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
  /**
   * diffusers' `timestep_cond` [B, time_cond_proj_dim] (LCM-distilled UNets only): added through
   * `time_embedding.cond_proj` before linear_1; plain LCM pipelines pass the guidance-scale embedding.
   * Omitted, nothing is added (as in diffusers).
   */
  timestepCond?: TensorLike;
}

export interface UNetPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {
}

export class UNet2DConditionModel extends UNetWithSwitches {
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
    checkComputeDtype('UNet2DConditionModel', options.dtype, options.runtime?.executionProviders ?? ['cpu']); // before any download
    const folder = await resolveModelFolder(dir, options);
    const config = parseUNet2DConditionConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return UNet2DConditionModel.fromSource(config, source, options);
  }

  /**
   * The UNet of an original (LDM / SGM) single file (`.safetensors`, `.ckpt`): its `model.diffusion_model.*`
   * keys mapped to diffusers', the config from `config` or the bundled default of the detected model type.
   */
  static async fromSingleFile(path: string, options: SingleFileComponentOptions & ModelRuntimeOptions = {}): Promise<UNet2DConditionModel> {
    return modelFromSingleFile(path, 'unet', UNET_SPEC, options, (config, source) => UNet2DConditionModel.fromSource(config, source, options));
  }

  static fromSource(config: UNet2DConditionConfig, source: WeightSource, options: ModelRuntimeOptions = {}): UNet2DConditionModel {
    const net = new UNet2DConditionNet(config, unetLayout(config, source.origin));
    return new UNet2DConditionModel(config, net, source, source.bindStrict(net.parameters()), options);
  }

  /** diffusers' `upcast_attention` (SD 2.1's configs set it): a float16 graph computes attention scores in float32. */
  protected override attentionUpcast(): AttentionUpcast | undefined {
    return this.config.upcastAttention ? 'scores' : undefined;
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const sample = op.input('sample', F, ['batch', c.inChannels, 'height', 'width']);
    const t = op.input('timestep', F, ['batch'], { keepFloat32: true }); // embedded in float32, as diffusers
    const ctxDim = unetLayout(c, '').crossAttentionDim[0]!;
    const context = op.input('encoder_hidden_states', F, ['batch', 'sequence', ctxDim]);
    const added =
      c.additionEmbedType === 'text_time'
        ? { textEmbeds: op.input('text_embeds', F, ['batch', 'text_embed_dim']), timeIds: op.input('time_ids', F, ['batch', 'time_ids'], { keepFloat32: true }) }
        : null;
    // Only LCM UNets get the input, so every other graph stays as it was.
    const cond = c.timeCondProjDim === null ? null : op.input('timestep_cond', F, ['batch', c.timeCondProjDim]);
    const freeu = this.freeuInputs(op); // only while FreeU is on
    op.output(this.net.build(op, sample, t, context, added, cond, freeu), 'out_sample', F, ['batch', c.outChannels, 'height', 'width']);
  }

  async forward(args: UNetForwardArgs): Promise<{ sample: Tensor<'float32'> }> {
    const c = this.config;
    const sample = expectFloat32('sample', args.sample, [null, c.inChannels, null, null]);
    const batch = sample.dims[0]!;
    const ehs = expectFloat32('encoderHiddenStates', args.encoderHiddenStates, [batch, null, null]);
    assertFinite('sample', sample);
    assertFinite('encoderHiddenStates', ehs);
    const feeds: Record<string, TensorLike | number> = {
      sample,
      timestep: timestepFeed(args.timestep, batch),
      encoder_hidden_states: ehs,
      ...this.freeuFeeds(),
    };
    if (c.additionEmbedType === 'text_time') {
      if (!args.addedCondKwargs) throw new ConfigError('this UNet has addition_embed_type "text_time": pass addedCondKwargs { textEmbeds, timeIds }');
      feeds['text_embeds'] = expectFloat32('addedCondKwargs.textEmbeds', args.addedCondKwargs.textEmbeds, [batch, null]);
      feeds['time_ids'] = expectFloat32('addedCondKwargs.timeIds', args.addedCondKwargs.timeIds, [batch, null]);
    }
    const cond = timestepCondFeed(args.timestepCond, c.timeCondProjDim, batch, 'this UNet');
    if (cond) feeds['timestep_cond'] = cond;
    const out = await this.run(feeds);
    return { sample: out['out_sample'] as Tensor<'float32'> };
  }
}

/**
 * The `timestep_cond` feed of a model whose config has `time_cond_proj_dim` (null for any other):
 * the given [B, dim] rows, or zeros when omitted. cond_proj has no bias, so zeros add exactly
 * nothing: the same result as diffusers without `timestep_cond`, from one graph.
 */
export function timestepCondFeed(given: TensorLike | undefined, dim: number | null, batch: number, model: string): Tensor<'float32'> | null {
  if (dim === null) {
    if (given) throw new InputError(`${model} has no time_cond_proj_dim (not LCM-distilled), so it takes no timestepCond`);
    return null;
  }
  if (!given) return new Tensor('float32', new Float32Array(batch * dim), [batch, dim]);
  const cond = expectFloat32('timestepCond', given, [batch, dim]);
  assertFinite('timestepCond', cond);
  return cond;
}
