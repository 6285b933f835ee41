/**
 * transformers' DepthAnythingForDepthEstimation (depth-anything/Depth-Anything-V2-*-hf, V1 too) on
 * its folder layout: `config.json` + `model.safetensors`. One traced graph, `pixel_values`
 * [B, C, H, W] → `predicted_depth` [B, ⌊H/p⌋·p, ⌊W/p⌋·p]; any size of at least one patch, as
 * transformers (the processor makes it a multiple of the patch; other sizes lose the remainder).
 */
import { InputError } from '../errors.js';
import type { GraphBuilder } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { DepthAnythingNet } from '../nn/depth-anything-net.js';
import type { Tensor, TensorLike } from '../tensor.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import { parseDepthAnythingConfig, type DepthAnythingConfig } from './depth-anything-config.js';
import type { DepthEstimationModel, DepthEstimationPretrainedOptions } from './depth-estimation.js';
import { checkPixelValues } from './depth-pixel-values.js';
import { openWeights, readConfigJson, resolveModelFolder } from './loading.js';
import { TracedModel, type ModelRuntimeOptions } from './traced-model.js';

export class DepthAnythingForDepthEstimation extends TracedModel implements DepthEstimationModel {
  protected readonly graphName = 'DepthAnythingForDepthEstimation';

  private constructor(
    readonly config: DepthAnythingConfig,
    readonly net: DepthAnythingNet,
    readonly source: WeightSource,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  static async fromPretrained(dirOrHubId: string, options: DepthEstimationPretrainedOptions = {}): Promise<DepthAnythingForDepthEstimation> {
    const folder = await resolveModelFolder(dirOrHubId, options);
    const origin = `${folder}/config.json`;
    const config = parseDepthAnythingConfig(readConfigJson(folder), origin, options.warn ?? console.warn);
    const net = new DepthAnythingNet(config, origin); // config errors before any weight is opened
    const source = await openWeights(folder, 'model', options.variant);
    return new DepthAnythingForDepthEstimation(config, net, source, source.bindStrict(net.parameters()), options);
  }

  /** Build from a parsed config and a weight source; binding is strict (missing, unused, mis-shaped keys fail). */
  static fromSource(config: DepthAnythingConfig, source: WeightSource, options: ModelRuntimeOptions = {}): DepthAnythingForDepthEstimation {
    const net = new DepthAnythingNet(config, source.origin);
    return new DepthAnythingForDepthEstimation(config, net, source, source.bindStrict(net.parameters()), options);
  }

  protected trace(op: GraphBuilder): void {
    const F = OnnxDataType.FLOAT;
    const pixels = op.input('pixel_values', F, ['batch', this.config.backbone.numChannels, 'height', 'width']);
    op.output(this.net.build(op, pixels), 'predicted_depth', F, ['batch', 'depth_height', 'depth_width']);
  }

  /** An input must cover at least one patch; throws an InputError naming the size otherwise. */
  checkInputSize(height: number, width: number): void {
    const p = this.config.patchSize;
    if (height < p || width < p) throw new InputError(`pixel_values is ${height}×${width}, smaller than one ${p}×${p} patch`);
  }

  /** [h', w'] of predicted_depth for a `height` × `width` input: the head resizes to the patch grid × the patch size. */
  predictedDepthSize(height: number, width: number): [number, number] {
    this.checkInputSize(height, width);
    const p = this.config.patchSize;
    return [Math.floor(height / p) * p, Math.floor(width / p) * p];
  }

  /** pixel_values float32 [B, C, H, W] → predicted_depth float32 [B, ⌊H/p⌋·p, ⌊W/p⌋·p] (transformers' `predicted_depth`). */
  async forward(pixelValues: TensorLike): Promise<Tensor<'float32'>> {
    const x = checkPixelValues(pixelValues, this.config.backbone.numChannels, (h, w) => this.checkInputSize(h, w));
    const out = await this.run({ pixel_values: x });
    return out['predicted_depth'] as Tensor<'float32'>;
  }
}
