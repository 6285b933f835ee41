/**
 * transformers' DPTForDepthEstimation (Intel/dpt-large, Intel/dpt-hybrid-midas) on its folder
 * layout: `config.json` + `model.safetensors` (or `pytorch_model.bin`). One traced graph,
 * `pixel_values` [B, C, H, W] → `predicted_depth` [B, H', W'].
 *
 * Input sizes as transformers 4.44 accepts them: DPT-hybrid only at its image_size; the plain ViT at
 * any size whose patch grid (⌊H/p⌋ × ⌊W/p⌋) is square — its neck rebuilds the maps as √tokens × √tokens,
 * so other grids would be silently scrambled, and are refused here.
 */
import { InputError } from '../errors.js';
import type { GraphBuilder } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { DPTForDepthEstimationNet } from '../nn/dpt-net.js';
import type { Tensor, TensorLike } from '../tensor.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import type { DepthEstimationModel, DepthEstimationPretrainedOptions } from './depth-estimation.js';
import { checkPixelValues } from './depth-pixel-values.js';
import { parseDPTConfig, type DPTConfig } from './dpt-config.js';
import { openWeights, readConfigJson, resolveModelFolder } from './loading.js';
import { TracedModel, type ModelRuntimeOptions } from './traced-model.js';

export class DPTForDepthEstimation extends TracedModel implements DepthEstimationModel {
  protected readonly graphName = 'DPTForDepthEstimation';

  private constructor(
    readonly config: DPTConfig,
    readonly net: DPTForDepthEstimationNet,
    readonly source: WeightSource,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  static async fromPretrained(dirOrHubId: string, options: DepthEstimationPretrainedOptions = {}): Promise<DPTForDepthEstimation> {
    const folder = await resolveModelFolder(dirOrHubId, options);
    const origin = `${folder}/config.json`;
    const config = parseDPTConfig(readConfigJson(folder), origin, options.warn ?? console.warn);
    const net = new DPTForDepthEstimationNet(config, origin); // config errors before any weight is opened
    const source = await openWeights(folder, 'model', options.variant);
    return DPTForDepthEstimation.create(config, net, source, options);
  }

  /** Build from a parsed config and a weight source; binding is strict (missing, unused, mis-shaped keys fail). */
  static fromSource(config: DPTConfig, source: WeightSource, options: ModelRuntimeOptions = {}): DPTForDepthEstimation {
    return DPTForDepthEstimation.create(config, new DPTForDepthEstimationNet(config, source.origin), source, options);
  }

  private static create(config: DPTConfig, net: DPTForDepthEstimationNet, source: WeightSource, options: ModelRuntimeOptions): DPTForDepthEstimation {
    return new DPTForDepthEstimation(config, net, source, source.bindStrict(net.parameters()), options);
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const size = c.isHybrid ? c.imageSize : 'height';
    const pixels = op.input('pixel_values', F, ['batch', c.numChannels, size, c.isHybrid ? c.imageSize : 'width']);
    op.output(this.net.build(op, pixels), 'predicted_depth', F, ['batch', 'depth_height', 'depth_width']);
  }

  /** The checks transformers makes (or should make) on an input's size; throws an InputError naming the size. */
  checkInputSize(height: number, width: number): void {
    const c = this.config;
    if (c.isHybrid) {
      if (height !== c.imageSize || width !== c.imageSize) {
        throw new InputError(`pixel_values is ${height}×${width}, but DPT-hybrid only runs at its image_size ${c.imageSize}×${c.imageSize}`);
      }
      return;
    }
    const p = c.patchSize;
    if (height < p || width < p) throw new InputError(`pixel_values is ${height}×${width}, smaller than one ${p}×${p} patch`);
    if (Math.floor(height / p) !== Math.floor(width / p)) {
      throw new InputError(
        `pixel_values is ${height}×${width}: its patch grid ${Math.floor(height / p)}×${Math.floor(width / p)} (patch ${p}) is not square, which DPT's ViT neck needs (use keep_aspect_ratio false, or a square size)`,
      );
    }
  }

  /**
   * [h', w'] of predicted_depth for an input of `height` × `width` (checked as forward checks it): the
   * last reassembled map's size S (the token grid through its factor), doubled by each fusion layer up to
   * the head's input and once more by the head.
   */
  predictedDepthSize(height: number, width: number): [number, number] {
    this.checkInputSize(height, width);
    const c = this.config;
    const n = c.neckHiddenSizes.length;
    const factor = c.reassembleFactors[n - 1]!;
    const reassembled = (g: number) => (factor > 1 ? g * factor : factor === 1 ? g : Math.floor((g - 1) / Math.trunc(1 / factor)) + 1);
    const k = c.headInIndex < 0 ? n + c.headInIndex : c.headInIndex; // fused map k is 2^(k+1) · S
    const side = (x: number) => reassembled(Math.floor((c.isHybrid ? c.imageSize : x) / c.patchSize)) * 2 ** (k + 2);
    return [side(height), side(width)];
  }

  /** pixel_values float32 [B, C, H, W] → predicted_depth float32 [B, H', W'] (transformers' `predicted_depth`). */
  async forward(pixelValues: TensorLike): Promise<Tensor<'float32'>> {
    const x = checkPixelValues(pixelValues, this.config.numChannels, (h, w) => this.checkInputSize(h, w));
    const out = await this.run({ pixel_values: x });
    return out['predicted_depth'] as Tensor<'float32'>;
  }
}
