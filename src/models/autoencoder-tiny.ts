/**
 * AutoencoderTiny (TAESD; diffusers' autoencoder_tiny.py): its module tree
 * (nn/autoencoder-tiny-net.ts) traced into an encoder graph and a decoder graph with their own
 * lazily created sessions; latent (un)scaling and uint8 quantization, slicing and diffusers' TAESD
 * tiling on the JS side. It works in the diffusion latent space itself (`scaling_factor` 1.0), so
 * it can stand in for a pipeline's AutoencoderKL or decode intermediate latents for previews.
 */
import { InputError } from '../errors.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { AutoencoderTinyNet } from '../nn/autoencoder-tiny-net.js';
import { expectFloat32, Tensor, type TensorLike } from '../tensor.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import type { VaeRunOptions } from './autoencoder-kl.js';
import { TwoPartVae, VaePart, perItem } from './vae-parts.js';
import { parseAutoencoderTinyConfig, type AutoencoderTinyConfig } from './autoencoder-tiny-config.js';
import { tinyTiledDecode, tinyTiledEncode, type TinyTiling } from './autoencoder-tiny-tiling.js';
import { checkComputeDtype } from './compute-dtype.js';
import { openWeights, loadConfigJson, resolveModelFolder, type PretrainedOptions } from './loading.js';
import { assertFinite, type ModelRuntimeOptions } from './traced-model.js';

export interface AutoencoderTinyPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {
}

export class AutoencoderTiny extends TwoPartVae {
  /** diffusers' `spatial_scale_factor` = 2^out_channels (8 for RGB); its tiling alone uses it. */
  readonly spatialScaleFactor: number;
  /** diffusers' `tile_overlap_factor` for this class. */
  readonly tileOverlapFactor = 0.125;
  /** diffusers' `tile_sample_min_size` for this class: image tiles of 512 px. */
  readonly tileSampleMinSize = 512;
  protected readonly encoderPart: VaePart;
  protected readonly decoderPart: VaePart;

  private constructor(
    readonly config: AutoencoderTinyConfig,
    readonly net: AutoencoderTinyNet,
    readonly source: WeightSource,
    readonly weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super();
    const c = config;
    const F = OnnxDataType.FLOAT;
    this.spatialScaleFactor = 2 ** c.outChannels;
    this.encoderPart = new VaePart('AutoencoderTiny.encoder', weights, options, (op) => {
      const image = op.input('image', F, ['batch', c.inChannels, 'height', 'width']);
      op.output(net.encode(op, image), 'latents', F, ['batch', c.latentChannels, 'latent_height', 'latent_width']);
    });
    this.decoderPart = new VaePart('AutoencoderTiny.decoder', weights, options, (op) => {
      const latents = op.input('latents', F, ['batch', c.latentChannels, 'height', 'width']);
      op.output(net.decode(op, latents), 'sample', F, ['batch', c.outChannels, 'sample_height', 'sample_width']);
    });
  }

  static async fromPretrained(dir: string, options: AutoencoderTinyPretrainedOptions = {}): Promise<AutoencoderTiny> {
    checkComputeDtype('AutoencoderTiny', options.dtype, options.runtime?.executionProviders ?? ['cpu']); // before any download
    const folder = await resolveModelFolder(dir, options);
    const config = parseAutoencoderTinyConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return AutoencoderTiny.fromSource(config, source, options);
  }

  /** Build from a parsed (possibly edited) config and a weight source; binding is strict. */
  static fromSource(config: AutoencoderTinyConfig, source: WeightSource, options: ModelRuntimeOptions = {}): AutoencoderTiny {
    const net = new AutoencoderTinyNet(config);
    return new AutoencoderTiny(config, net, source, source.bindStrict(net.parameters()), options);
  }

  /** diffusers' `tile_latent_min_size`: the latent side of a decode tile (64). */
  get tileLatentMinSize(): number {
    return Math.floor(this.tileSampleMinSize / this.spatialScaleFactor);
  }

  /** How much larger the decoder's image is than its latents: upsampling_scaling_factor^(stages−1). */
  get decoderUpscale(): number {
    return this.config.upsamplingScalingFactor ** (this.config.numDecoderBlocks.length - 1);
  }

  /** How much smaller the encoder's latents are than its image (each later stage halves, rounding up). */
  get encoderDownscale(): number {
    return 2 ** (this.config.numEncoderBlocks.length - 1);
  }


  /**
   * latents [B, latent, h, w] → sample [B, Cout, h·s, w·s], about [−1, 1] and not clamped. The
   * latents go in as they are: a pipeline divides by `scalingFactor` (1.0) first, as diffusers does.
   */
  async decode(latents: TensorLike, options: VaeRunOptions = {}): Promise<{ sample: Tensor<'float32'> }> {
    const z = expectFloat32('latents', latents, [null, this.config.latentChannels, null, null]);
    assertFinite('latents', z);
    const decode = (t: Tensor<'float32'>) => this.decoderPart.call('latents', t, 'sample');
    const one = (t: Tensor<'float32'>): Promise<Tensor<'float32'>> =>
      options.tiled ? tinyTiledDecode(t, this.tiling, { upscale: this.decoderUpscale, outChannels: this.config.outChannels }, decode) : decode(t);
    return { sample: await perItem(z, options.sliced === true, one) };
  }

  /** image [B, Cin, H, W] in [−1, 1] → raw latents [B, latent, ⌈H/8⌉, ⌈W/8⌉] (no distribution, no scaling factor). */
  async encode(image: TensorLike, options: VaeRunOptions = {}): Promise<{ latents: Tensor<'float32'> }> {
    const x = expectFloat32('image', image, [null, this.config.inChannels, null, null]);
    assertFinite('image', x);
    const encode = (t: Tensor<'float32'>) => this.encoderPart.call('image', t, 'latents');
    const one = (t: Tensor<'float32'>): Promise<Tensor<'float32'>> =>
      options.tiled
        ? tinyTiledEncode(t, this.tiling, { latentChannels: this.config.latentChannels, downscale: this.encoderDownscale }, encode)
        : encode(t);
    return { latents: await perItem(x, options.sliced === true, one) };
  }

  /** diffusers' `scale_latents`: raw latents → [0, 1], `(x / (2·latent_magnitude) + latent_shift).clamp(0, 1)` in float32. */
  scaleLatents(latents: TensorLike): Tensor<'float32'> {
    const x = expectFloat32('latents', latents, latents.dims.map(() => null));
    const div = Math.fround(2 * this.config.latentMagnitude);
    const shift = Math.fround(this.config.latentShift);
    return map(x, (v) => clamp01(Math.fround(Math.fround(v / div) + shift)));
  }

  /** diffusers' `unscale_latents`: [0, 1] → raw latents, `(y − latent_shift) · 2·latent_magnitude` in float32. */
  unscaleLatents(scaled: TensorLike): Tensor<'float32'> {
    const y = expectFloat32('scaled latents', scaled, scaled.dims.map(() => null));
    const mul = Math.fround(2 * this.config.latentMagnitude);
    const shift = Math.fround(this.config.latentShift);
    return map(y, (v) => Math.fround(Math.fround(v - shift) * mul));
  }

  /**
   * Raw latents as bytes, as if stored in an 8-bit image (what `forward` does between encode and
   * decode): `scale_latents(x) · 255`, rounded half to even, as uint8.
   */
  quantizeLatents(latents: TensorLike): Tensor<'uint8'> {
    const s = this.scaleLatents(latents);
    const out = new Uint8Array(s.data.length);
    for (let i = 0; i < out.length; i++) out[i] = roundHalfEven(Math.fround(s.data[i]! * 255));
    return new Tensor('uint8', out, s.dims);
  }

  /** Bytes from `quantizeLatents` back to raw latents: `unscale_latents(q / 255)` in float32. */
  dequantizeLatents(quantized: TensorLike): Tensor<'float32'> {
    if (!(quantized.data instanceof Uint8Array)) throw new InputError(`quantized latents must hold a Uint8Array, got ${quantized.data.constructor.name}`);
    const q = quantized.data;
    const y = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) y[i] = Math.fround(q[i]! / 255);
    return this.unscaleLatents(new Tensor('float32', y, quantized.dims));
  }

  /** diffusers' `forward`: encode, store the latents as uint8 and read them back, decode. image [B, Cin, H, W] in [−1, 1]. */
  async forward(image: TensorLike, options: VaeRunOptions = {}): Promise<{ sample: Tensor<'float32'> }> {
    const { latents } = await this.encode(image, options);
    return this.decode(this.dequantizeLatents(this.quantizeLatents(latents)), options);
  }


  private get tiling(): TinyTiling {
    return { spatialScaleFactor: this.spatialScaleFactor, tileSampleMinSize: this.tileSampleMinSize, tileOverlapFactor: this.tileOverlapFactor };
  }
}

function clamp01(v: number): number {
  return Number.isNaN(v) ? v : Math.min(1, Math.max(0, v)); // torch's clamp keeps NaN
}

/** numpy / torch `round`: halves go to the even neighbour. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function map(t: Tensor<'float32'>, f: (v: number) => number): Tensor<'float32'> {
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(t.data[i]!);
  return new Tensor('float32', out, t.dims);
}

