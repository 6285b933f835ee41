/**
 * AutoencoderKL's module tree (diffusers' autoencoder_kl.py) with diffusers' keys: encoder,
 * decoder and the optional 1×1 quant convs. `encode` and `decode` emit the nodes of the VAE's two
 * graphs; the runtime class (sessions, posterior, tiling) is models/autoencoder-kl.ts.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Conv2d } from './layers.js';
import { Module } from './module.js';
import { Decoder, Encoder } from './vae-blocks.js';

/**
 * The fields of diffusers' AutoencoderKL config (camelCased, defaults filled) this tree reads.
 * A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface AutoencoderKLNetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly latentChannels: number;
  readonly normNumGroups: number;
  readonly useQuantConv: boolean;
  readonly usePostQuantConv: boolean;
  readonly midBlockAddAttention: boolean;
}

export class AutoencoderKLNet extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: Conv2d | null;
  readonly post_quant_conv: Conv2d | null;

  constructor(readonly config: AutoencoderKLNetConfig) {
    super('');
    const c = config;
    const common = {
      blockOutChannels: c.blockOutChannels,
      layersPerBlock: c.layersPerBlock,
      groups: c.normNumGroups,
      midBlockAddAttention: c.midBlockAddAttention,
    };
    const z = c.latentChannels;
    this.encoder = this.child('encoder', (p) => new Encoder(p, { ...common, inChannels: c.inChannels, outChannels: z }));
    this.decoder = this.child('decoder', (p) => new Decoder(p, { ...common, inChannels: z, outChannels: c.outChannels }));
    this.quant_conv = c.useQuantConv ? this.child('quant_conv', (p) => new Conv2d(p, 2 * z, 2 * z, { kernel: 1 })) : null;
    this.post_quant_conv = c.usePostQuantConv ? this.child('post_quant_conv', (p) => new Conv2d(p, z, z, { kernel: 1 })) : null;
  }

  /** image [B, Cin, H, W] → moments [B, 2·latent, h, w] (mean and log-variance, before clamping) */
  encode(op: GraphBuilder, image: Value): Value {
    const h = this.encoder.build(op, image);
    return this.quant_conv ? this.quant_conv.build(op, h) : h;
  }

  /** latents [B, latent, h, w] → image [B, Cout, H, W] */
  decode(op: GraphBuilder, latents: Value): Value {
    const z = this.post_quant_conv ? this.post_quant_conv.build(op, latents) : latents;
    return this.decoder.build(op, z);
  }
}
