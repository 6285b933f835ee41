/**
 * AutoencoderTiny's (TAESD's) module tree (diffusers' autoencoder_tiny.py) with diffusers' keys:
 * `encoder.layers.*` and `decoder.layers.*`. `encode` and `decode` emit the nodes of its two graphs;
 * the runtime class (sessions, latent scaling, tiling) is models/autoencoder-tiny.ts.
 */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { DecoderTiny, EncoderTiny, type TinyActivation, type TinyUpsample } from './autoencoder-tiny-blocks.js';
import { Module } from './module.js';

/**
 * The fields of diffusers' AutoencoderTiny config (camelCased, defaults filled) this tree reads.
 * A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface AutoencoderTinyNetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly latentChannels: number;
  readonly encoderBlockOutChannels: readonly number[];
  readonly decoderBlockOutChannels: readonly number[];
  readonly numEncoderBlocks: readonly number[];
  readonly numDecoderBlocks: readonly number[];
  readonly actFn: TinyActivation;
  readonly upsampleFn: TinyUpsample;
  readonly upsamplingScalingFactor: number;
}

export class AutoencoderTinyNet extends Module {
  readonly encoder: EncoderTiny;
  readonly decoder: DecoderTiny;

  constructor(readonly config: AutoencoderTinyNetConfig) {
    super('');
    const c = config;
    this.encoder = this.child(
      'encoder',
      (p) =>
        new EncoderTiny(p, {
          inChannels: c.inChannels,
          outChannels: c.latentChannels,
          blockOutChannels: c.encoderBlockOutChannels,
          numBlocks: c.numEncoderBlocks,
          act: c.actFn,
        }),
    );
    this.decoder = this.child(
      'decoder',
      (p) =>
        new DecoderTiny(p, {
          inChannels: c.latentChannels,
          outChannels: c.outChannels,
          blockOutChannels: c.decoderBlockOutChannels,
          numBlocks: c.numDecoderBlocks,
          act: c.actFn,
          upsamplingScalingFactor: c.upsamplingScalingFactor,
          upsampleFn: c.upsampleFn,
        }),
    );
  }

  /** image [B, Cin, H, W] in [−1, 1] → raw latents [B, latent, h, w] (no distribution, no scaling factor) */
  encode(op: GraphBuilder, image: Value): Value {
    return this.encoder.build(op, image);
  }

  /** latents [B, latent, h, w] → image [B, Cout, H, W] in about [−1, 1] */
  decode(op: GraphBuilder, latents: Value): Value {
    return this.decoder.build(op, latents);
  }
}
