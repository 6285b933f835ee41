/**
 * What AutoencoderKL and AutoencoderTiny share: two graphs (encoder, decoder), each a `VaePart` with
 * its own session created on first use, and diffusers' slicing (one batch item at a time).
 */
import type { AttentionUpcast, GraphBuilder } from '../graph/builder.js';
import type { ModelProto } from '../graph/onnx-proto.js';
import type { Tensor } from '../tensor.js';
import type { BoundWeights } from '../weights/source.js';
import { TracedModel, type ModelRuntimeOptions } from './traced-model.js';
import { batchItem, concatBatch } from './vae-tiling.js';

/** One of a VAE's two graphs (encoder or decoder); each owns its session, created on first use. */
export class VaePart extends TracedModel {
  constructor(
    protected readonly graphName: string,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
    private readonly build: (op: GraphBuilder) => void,
  ) {
    super(weights, options);
  }

  protected trace(op: GraphBuilder): void {
    this.build(op);
  }

  /** diffusers builds every VAE attention with `upcast_softmax=True`: a float16 graph takes the softmax in float32. */
  protected override attentionUpcast(): AttentionUpcast {
    return 'softmax';
  }

  async call(input: string, x: Tensor<'float32'>, output: string): Promise<Tensor<'float32'>> {
    const out = await this.run({ [input]: x });
    return out[output] as Tensor<'float32'>;
  }
}

/** A VAE of an encoder graph and a decoder graph, with their sessions' lifecycle. */
export abstract class TwoPartVae {
  protected abstract readonly encoderPart: VaePart;
  protected abstract readonly decoderPart: VaePart;

  /** The encoder graph, as onnxruntime receives it. */
  encoderOnnx(): ModelProto {
    return this.encoderPart.toOnnx();
  }

  /** The decoder graph, as onnxruntime receives it. */
  decoderOnnx(): ModelProto {
    return this.decoderPart.toOnnx();
  }

  /** Create sessions now instead of on first use: the decoder's by default (all a pipeline or a previewer runs). */
  async prepare(which: 'decoder' | 'encoder' | 'both' = 'decoder'): Promise<void> {
    await Promise.all([
      which !== 'encoder' ? this.decoderPart.prepare() : undefined,
      which !== 'decoder' ? this.encoderPart.prepare() : undefined,
    ]);
  }

  /** Free both sessions; the next encode/decode creates its session again. */
  async release(): Promise<void> {
    await Promise.all([this.encoderPart.release(), this.decoderPart.release()]);
  }
}

/** diffusers' `use_slicing`: `fn` on one batch item at a time when asked and there is more than one. */
export async function perItem(
  x: Tensor<'float32'>,
  sliced: boolean,
  fn: (t: Tensor<'float32'>) => Promise<Tensor<'float32'>>,
): Promise<Tensor<'float32'>> {
  const batch = x.dims[0]!; // bounds: a VAE input is [B, C, H, W], checked by the caller
  if (!sliced || batch <= 1) return fn(x);
  const parts: Tensor<'float32'>[] = [];
  for (let i = 0; i < batch; i++) parts.push(await fn(batchItem(x, i)));
  return concatBatch(parts);
}
