/** AutoencoderTiny's (TAESD's) config.json keys with diffusers' defaults, and what this port checks up front. */
import { ConfigError } from '../errors.js';
import { TINY_ACTIVATIONS, TINY_UPSAMPLE_MODES, type TinyActivation, type TinyUpsample } from '../nn/autoencoder-tiny-blocks.js';
import { parseConfig, requirePositiveInteger, type Camelize, type Warn } from '../util/config.js';

const DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  encoder_block_out_channels: [64, 64, 64, 64] as number[],
  decoder_block_out_channels: [64, 64, 64, 64] as number[],
  act_fn: 'relu' as string,
  upsample_fn: 'nearest' as string,
  latent_channels: 4,
  upsampling_scaling_factor: 2,
  num_encoder_blocks: [1, 3, 3, 3] as number[],
  num_decoder_blocks: [3, 3, 3, 1] as number[],
  latent_magnitude: 3,
  latent_shift: 0.5,
  force_upcast: false,
  scaling_factor: 1.0,
  /** Not read by AutoencoderTiny itself (SD3-style pipelines subtract it); kept so configs round-trip. */
  shift_factor: 0.0,
  /**
   * Not an `__init__` argument: diffusers registers `decoder_block_out_channels` under this name so
   * pipelines can compute `vae_scale_factor` as for AutoencoderKL. Always the decoder's channels.
   */
  block_out_channels: [64, 64, 64, 64] as number[],
};

type RawTinyConfig = Camelize<typeof DEFAULTS>;

export interface AutoencoderTinyConfig extends Omit<RawTinyConfig, 'actFn' | 'upsampleFn' | 'forceUpcast'> {
  readonly actFn: TinyActivation;
  readonly upsampleFn: TinyUpsample;
  /** Always false: diffusers' `__init__` registers `force_upcast=False` whatever the config says. */
  readonly forceUpcast: false;
}

/**
 * Fill diffusers' defaults into a raw config.json object. Besides diffusers' own checks (stage lists
 * of equal length) this refuses, as a ConfigError, what diffusers builds but cannot run: stages of
 * different widths (EncoderTiny's stride-2 conv and DecoderTiny's blocks keep a stage's width on both
 * sides, so torch fails on the first call), and activations or upsampling modes torch rejects.
 */
export function parseAutoencoderTinyConfig(raw: Record<string, unknown>, origin: string, warn: Warn): AutoencoderTinyConfig {
  const c = parseConfig(raw, DEFAULTS, origin, warn);
  const positiveInt = (key: string, v: number): void => requirePositiveInteger(origin, key, v);
  positiveInt('in_channels', c.inChannels);
  positiveInt('out_channels', c.outChannels);
  positiveInt('latent_channels', c.latentChannels);
  positiveInt('upsampling_scaling_factor', c.upsamplingScalingFactor);
  const stages = (side: 'encoder' | 'decoder', channels: readonly number[], blocks: readonly number[]): void => {
    if (!Array.isArray(channels) || !Array.isArray(blocks)) {
      throw new ConfigError(`${origin}: "${side}_block_out_channels" and "num_${side}_blocks" must be lists`);
    }
    if (channels.length === 0) throw new ConfigError(`${origin}: "${side}_block_out_channels" must not be empty`);
    if (channels.length !== blocks.length) {
      throw new ConfigError(`${origin}: "${side}_block_out_channels" should have the same length as "num_${side}_blocks"`);
    }
    for (const ch of channels) positiveInt(`${side}_block_out_channels`, ch);
    for (const n of blocks) {
      if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${origin}: "num_${side}_blocks" must hold non-negative integers, got ${JSON.stringify(n)}`);
    }
    if (channels.some((ch) => ch !== channels[0])) {
      throw new ConfigError(
        `${origin}: "${side}_block_out_channels" ${JSON.stringify(channels)} must all be equal: ` +
          `${side === 'encoder' ? "EncoderTiny's stride-2 convs" : "DecoderTiny's blocks"} keep each stage's width, so diffusers fails on the first call`,
      );
    }
  };
  stages('encoder', c.encoderBlockOutChannels, c.numEncoderBlocks);
  stages('decoder', c.decoderBlockOutChannels, c.numDecoderBlocks);
  const actFn = c.actFn as TinyActivation;
  if (!TINY_ACTIVATIONS.includes(actFn)) {
    throw new ConfigError(`${origin}: act_fn=${JSON.stringify(c.actFn)} is not supported (supported: ${JSON.stringify(TINY_ACTIVATIONS)})`);
  }
  const upsampleFn = c.upsampleFn as TinyUpsample;
  if (!TINY_UPSAMPLE_MODES.includes(upsampleFn)) {
    throw new ConfigError(`${origin}: upsample_fn=${JSON.stringify(c.upsampleFn)} is not supported (supported: ${JSON.stringify(TINY_UPSAMPLE_MODES)})`);
  }
  for (const [key, v] of [['latent_magnitude', c.latentMagnitude], ['latent_shift', c.latentShift], ['shift_factor', c.shiftFactor]] as const) {
    if (!Number.isFinite(v)) throw new ConfigError(`${origin}: "${key}" must be a finite number, got ${JSON.stringify(v)}`);
  }
  if (c.latentMagnitude === 0) throw new ConfigError(`${origin}: "latent_magnitude" must not be 0 (scale_latents divides by it)`);
  if (!Number.isFinite(c.scalingFactor) || c.scalingFactor === 0) {
    throw new ConfigError(`${origin}: "scaling_factor" must be a finite non-zero number, got ${JSON.stringify(c.scalingFactor)}`);
  }
  return { ...c, actFn, upsampleFn, blockOutChannels: c.decoderBlockOutChannels, forceUpcast: false };
}
