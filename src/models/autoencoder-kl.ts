/**
 * AutoencoderKL (diffusers' autoencoder_kl.py): its module tree (nn/autoencoder-kl-net.ts) traced
 * into two graphs (encoder + quant_conv, post_quant_conv + decoder) with their own lazily created sessions,
 * the diagonal Gaussian posterior, and diffusers' tiling and slicing done on the JS side.
 */
import { InputError } from '../errors.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { AutoencoderKLNet } from '../nn/autoencoder-kl-net.js';
import { randnTensor, type Generator } from '../random/index.js';
import { expectFloat32, Tensor, type TensorLike } from '../tensor.js';
import type { BoundWeights, WeightSource } from '../weights/source.js';
import { parseAutoencoderKLConfig, vaeTileSizes, type AutoencoderKLConfig } from './autoencoder-kl-config.js';
import { checkComputeDtype, type ComputeDtype } from './compute-dtype.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';
import { VAE_SPEC, modelFromSingleFile, type SingleFileComponentOptions } from './single-file/component.js';
import { assertFinite, type ModelRuntimeOptions } from './traced-model.js';
import { TwoPartVae, VaePart, perItem } from './vae-parts.js';
import { TILE_OVERLAP_FACTOR, decodeTilePlan, encodeTilePlan, tiledApply } from './vae-tiling.js';

/**
 * diffusers' DiagonalGaussianDistribution over the latents: the encoder's moments split along the
 * channels into mean and log-variance, the latter clamped to [−30, 20].
 */
export class DiagonalGaussianDistribution {
  readonly mean: Tensor<'float32'>;
  readonly logvar: Tensor<'float32'>;
  /** exp(0.5 · logvar) */
  readonly std: Tensor<'float32'>;
  /** exp(logvar) */
  readonly var: Tensor<'float32'>;

  /** `moments` [B, 2C, h, w]: channels [0, C) are the mean, [C, 2C) the log-variance. */
  constructor(readonly moments: Tensor<'float32'>) {
    if (moments.dims.length !== 4 || moments.dims[1]! % 2 !== 0) {
      throw new InputError(`moments must be [B, 2C, h, w], got [${moments.dims.join(', ')}]`);
    }
    const [b, c2, h, w] = moments.dims as [number, number, number, number];
    const c = c2 / 2;
    const plane = c * h * w;
    const dims = [b, c, h, w];
    const mean = new Float32Array(b * plane);
    const logvar = new Float32Array(b * plane);
    const std = new Float32Array(b * plane);
    const variance = new Float32Array(b * plane);
    const m = moments.data;
    for (let i = 0; i < b; i++) {
      mean.set(m.subarray(2 * i * plane, (2 * i + 1) * plane), i * plane);
      for (let k = 0; k < plane; k++) {
        const lv = Math.min(20, Math.max(-30, m[(2 * i + 1) * plane + k]!));
        logvar[i * plane + k] = lv;
        std[i * plane + k] = Math.exp(Math.fround(0.5 * lv));
        variance[i * plane + k] = Math.exp(lv);
      }
    }
    this.mean = new Tensor('float32', mean, dims);
    this.logvar = new Tensor('float32', logvar, dims);
    this.std = new Tensor('float32', std, dims);
    this.var = new Tensor('float32', variance, dims);
  }

  /**
   * mean + std · ε with ε = `randnTensor(mean.dims, { generator })` (torch-compatible: one
   * generator for the whole tensor or one per batch item), in float32 as torch computes it.
   */
  sample(generator?: Generator | readonly Generator[]): Tensor<'float32'> {
    const eps = randnTensor(this.mean.dims, generator === undefined ? {} : { generator });
    const out = new Float32Array(this.mean.data.length);
    const m = this.mean.data;
    const s = this.std.data;
    for (let i = 0; i < out.length; i++) out[i] = m[i]! + Math.fround(s[i]! * eps.data[i]!);
    return new Tensor('float32', out, this.mean.dims);
  }

  /** The mean. */
  mode(): Tensor<'float32'> {
    return this.mean;
  }
}

export interface AutoencoderKLPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {
}

export interface VaeRunOptions {
  /**
   * diffusers' `enable_tiling`: inputs larger than one tile (latents wider or taller than
   * `tileLatentMinSize`, images than `tileSampleMinSize`) are processed in overlapping tiles that
   * are blended together. Output is close to, not equal to, the untiled one.
   */
  tiled?: boolean;
  /** diffusers' `enable_slicing`: run one batch item at a time. Same result as unsliced. */
  sliced?: boolean;
}

export class AutoencoderKL extends TwoPartVae {
  /** diffusers' `tile_overlap_factor`. */
  readonly tileOverlapFactor = TILE_OVERLAP_FACTOR;
  protected readonly encoderPart: VaePart;
  protected readonly decoderPart: VaePart;
  /** This VAE with its decoder upcast (`forDecodeUpcast`), made on first use. */
  private upcastTwin: AutoencoderKL | null = null;

  private constructor(
    readonly config: AutoencoderKLConfig,
    readonly net: AutoencoderKLNet,
    readonly source: WeightSource,
    readonly weights: BoundWeights,
    private readonly options: ModelRuntimeOptions,
  ) {
    super();
    const c = config;
    const F = OnnxDataType.FLOAT;
    // The VAE runs once per generation with the largest activations of the pipeline: without
    // onnxruntime's arena those are returned after the run (measured: 512 px decode peak 2.5 → 1.4 GB, same speed).
    options = { ...options, runtime: { enableCpuMemArena: false, ...options.runtime } };
    this.encoderPart = new VaePart('AutoencoderKL.encoder', weights, options, (op) => {
      const image = op.input('image', F, ['batch', c.inChannels, 'height', 'width']);
      op.output(net.encode(op, image), 'moments', F, ['batch', 2 * c.latentChannels, 'latent_height', 'latent_width']);
    });
    this.decoderPart = new VaePart('AutoencoderKL.decoder', weights, options, (op) => {
      const latents = op.input('latents', F, ['batch', c.latentChannels, 'height', 'width']);
      op.output(net.decode(op, latents), 'sample', F, ['batch', c.outChannels, 'sample_height', 'sample_width']);
    });
  }

  static async fromPretrained(dir: string, options: AutoencoderKLPretrainedOptions = {}): Promise<AutoencoderKL> {
    checkComputeDtype('AutoencoderKL', options.dtype, options.runtime?.executionProviders ?? ['cpu']); // before any download
    const folder = await resolveModelFolder(dir, options);
    const config = parseAutoencoderKLConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return AutoencoderKL.fromSource(config, source, options);
  }

  /**
   * The VAE of an original single file: `first_stage_model.*` of a whole checkpoint, or a VAE saved on
   * its own (no prefix, like vae-ft-mse-840000-ema-pruned); the config from `config` or the bundled default.
   */
  static async fromSingleFile(path: string, options: SingleFileComponentOptions & ModelRuntimeOptions = {}): Promise<AutoencoderKL> {
    return modelFromSingleFile(path, 'vae', VAE_SPEC, options, (config, source) => AutoencoderKL.fromSource(config, source, options));
  }

  /** Build from a parsed (possibly edited) config and a weight source; binding is strict. */
  static fromSource(config: AutoencoderKLConfig, source: WeightSource, options: ModelRuntimeOptions = {}): AutoencoderKL {
    const net = new AutoencoderKLNet(config);
    return new AutoencoderKL(config, net, source, source.bindStrict(net.parameters()), options);
  }

  /** The compute dtype (diffusers' `vae.dtype`). */
  get dtype(): ComputeDtype {
    return this.decoderPart.dtype;
  }

  /**
   * What diffusers' SDXL pipelines decode with: this VAE itself, unless it is float16 with `force_upcast`
   * in its config (SDXL's VAE overflows in float16) — then the same weights with the decoder's up blocks
   * onward in float32, as after `upcast_vae()` (one more session, kept, and released with this VAE's).
   */
  forDecodeUpcast(): AutoencoderKL {
    if (this.dtype !== 'float16' || !this.config.forceUpcast) return this;
    this.upcastTwin ??= new AutoencoderKL(this.config, this.net, this.source, this.weights, {
      ...this.options,
      trace: { ...this.options.trace, upcastVaeDecoder: true },
    });
    return this.upcastTwin;
  }

  override async release(): Promise<void> {
    await Promise.all([super.release(), this.upcastTwin?.release()]);
  }

  /** Side of an image tile (diffusers' `tile_sample_min_size`). */
  get tileSampleMinSize(): number {
    return vaeTileSizes(this.config).sample;
  }

  /** Side of a latent tile (diffusers' `tile_latent_min_size`). */
  get tileLatentMinSize(): number {
    return vaeTileSizes(this.config).latent;
  }


  /**
   * Raw decode: post_quant_conv then the decoder. Latents are NOT divided by `scaling_factor`
   * here (a pipeline passes `latents / scalingFactor`). latents [B, latent, h, w] → sample [B, Cout, H, W].
   */
  async decode(latents: TensorLike, options: VaeRunOptions = {}): Promise<{ sample: Tensor<'float32'> }> {
    const z = expectFloat32('latents', latents, [null, this.config.latentChannels, null, null]);
    assertFinite('latents', z);
    const one = (x: Tensor<'float32'>): Promise<Tensor<'float32'>> => {
      const [, , h, w] = x.dims as [number, number, number, number];
      const sizes = vaeTileSizes(this.config);
      if (options.tiled && (h > sizes.latent || w > sizes.latent)) {
        return tiledApply(x, decodeTilePlan(sizes, this.tileOverlapFactor), (t) => this.decoderPart.call('latents', t, 'sample'));
      }
      return this.decoderPart.call('latents', x, 'sample');
    };
    return { sample: await perItem(z, options.sliced === true, one) };
  }

  /**
   * image [B, Cin, H, W] in [−1, 1] → the posterior over latents (no `scaling_factor` applied).
   */
  async encode(image: TensorLike, options: VaeRunOptions = {}): Promise<{ latentDist: DiagonalGaussianDistribution }> {
    const x = expectFloat32('image', image, [null, this.config.inChannels, null, null]);
    assertFinite('image', x);
    const one = (t: Tensor<'float32'>): Promise<Tensor<'float32'>> => {
      const [, , h, w] = t.dims as [number, number, number, number];
      const sizes = vaeTileSizes(this.config);
      if (options.tiled && (h > sizes.sample || w > sizes.sample)) {
        return tiledApply(t, encodeTilePlan(sizes, this.tileOverlapFactor), (tile) => {
          this.checkEncodable(tile, 'an edge tile of the tiled image');
          return this.encoderPart.call('image', tile, 'moments');
        });
      }
      this.checkEncodable(t, 'image');
      return this.encoderPart.call('image', t, 'moments');
    };
    const moments = await perItem(x, options.sliced === true, one);
    return { latentDist: new DiagonalGaussianDistribution(moments) };
  }


  /** Refuse an image (or tile) side the encoder's padded stride-2 convolutions would shrink to nothing. */
  private checkEncodable(t: Tensor<'float32'>, what: string): void {
    const downsamplers = this.config.blockOutChannels.length - 1;
    for (const axis of [2, 3]) {
      let n = t.dims[axis]!;
      for (let k = 0; k < downsamplers; k++) {
        if (n < 2) {
          throw new InputError(
            `${what} is ${t.dims[2]}×${t.dims[3]} pixels: too small for the encoder's ${downsamplers} downsamplers (each needs at least 2 pixels)`,
          );
        }
        n = Math.floor((n - 2) / 2) + 1;
      }
    }
  }

}
