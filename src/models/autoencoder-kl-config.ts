/** AutoencoderKL's config.json keys with diffusers' defaults, and the subset this port runs. */
import { ConfigError } from '../errors.js';
import { parseConfig, requirePositiveInteger, type Camelize, type Warn } from '../util/config.js';

const DEFAULTS = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ['DownEncoderBlock2D'] as string[],
  up_block_types: ['UpDecoderBlock2D'] as string[],
  block_out_channels: [64] as number[],
  layers_per_block: 1,
  act_fn: 'silu',
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32 as number | number[],
  scaling_factor: 0.18215,
  shift_factor: null as number | null,
  latents_mean: null as number[] | null,
  latents_std: null as number[] | null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

export type AutoencoderKLConfig = Camelize<typeof DEFAULTS>;

/** Fill diffusers' defaults into a raw config.json object and refuse what this port cannot run. */
export function parseAutoencoderKLConfig(raw: Record<string, unknown>, origin: string, warn: Warn): AutoencoderKLConfig {
  const c = parseConfig(raw, DEFAULTS, origin, warn);
  const unsupported = (key: string, v: unknown, want: unknown): never => {
    throw new ConfigError(`${origin}: ${key}=${JSON.stringify(v)} is not supported (supported: ${JSON.stringify(want)})`);
  };
  if (c.actFn !== 'silu') unsupported('act_fn', c.actFn, 'silu');
  const n = c.blockOutChannels.length;
  if (n === 0) throw new ConfigError(`${origin}: block_out_channels must not be empty`);
  if (c.downBlockTypes.length !== n || c.upBlockTypes.length !== n) {
    throw new ConfigError(`${origin}: down_block_types, up_block_types and block_out_channels must have the same length`);
  }
  for (const t of c.downBlockTypes) if (t !== 'DownEncoderBlock2D') unsupported('down_block_types', t, ['DownEncoderBlock2D']);
  for (const t of c.upBlockTypes) if (t !== 'UpDecoderBlock2D') unsupported('up_block_types', t, ['UpDecoderBlock2D']);
  const positiveInt = (key: string, v: number): void => requirePositiveInteger(origin, key, v);
  positiveInt('in_channels', c.inChannels);
  positiveInt('out_channels', c.outChannels);
  positiveInt('latent_channels', c.latentChannels);
  positiveInt('layers_per_block', c.layersPerBlock);
  positiveInt('norm_num_groups', c.normNumGroups);
  for (const ch of c.blockOutChannels) positiveInt('block_out_channels', ch);
  const sizes = Array.isArray(c.sampleSize) ? c.sampleSize : [c.sampleSize];
  if (sizes.length === 0) throw new ConfigError(`${origin}: "sample_size" must not be an empty list`);
  for (const s of sizes) positiveInt('sample_size', s);
  if (!Number.isFinite(c.scalingFactor) || c.scalingFactor === 0) {
    throw new ConfigError(`${origin}: "scaling_factor" must be a finite non-zero number, got ${JSON.stringify(c.scalingFactor)}`);
  }
  for (const key of ['latents_mean', 'latents_std'] as const) {
    const v = key === 'latents_mean' ? c.latentsMean : c.latentsStd;
    if (v !== null && (!Array.isArray(v) || v.length !== c.latentChannels || !v.every((x) => typeof x === 'number'))) {
      throw new ConfigError(`${origin}: "${key}" must be null or ${c.latentChannels} numbers (one per latent channel)`);
    }
  }
  return c;
}

/**
 * diffusers' tiling sizes: the image tile is `sample_size` (its first entry when a list), the
 * latent tile that image tile divided by 2^(levels−1), truncated as Python's `int()` does.
 */
export function vaeTileSizes(c: AutoencoderKLConfig): { sample: number; latent: number } {
  const sample = Array.isArray(c.sampleSize) ? c.sampleSize[0]! : c.sampleSize;
  return { sample, latent: Math.trunc(sample / 2 ** (c.blockOutChannels.length - 1)) };
}
