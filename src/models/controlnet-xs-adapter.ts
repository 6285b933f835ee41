/**
 * ControlNetXSAdapter: the control model on its own (diffusers' layout): its config and the checkpoint
 * bound strictly to its module tree (nn/controlnet-xs-adapter-net.ts). It cannot run by itself;
 * `UNetControlNetXSModel.fromUnet(unet, adapter)` fuses it with a base UNet.
 */
import { ConfigError } from '../errors.js';
import { ControlNetXSAdapterNet } from '../nn/controlnet-xs-adapter-net.js';
import type { WeightSource } from '../weights/source.js';
import { parseConfig, type Camelize, type Warn } from '../util/config.js';
import type { ComputeDtype } from './compute-dtype.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';

const DEFAULTS = {
  conditioning_channels: 3,
  conditioning_channel_order: 'rgb',
  conditioning_embedding_out_channels: [16, 32, 96, 256] as number[],
  time_embedding_mix: 1.0,
  learn_time_embedding: false,
  num_attention_heads: 4 as number | number[],
  block_out_channels: [4, 8, 16, 16] as number[],
  base_block_out_channels: [320, 640, 1280, 1280] as number[],
  cross_attention_dim: 1024 as number | number[],
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'] as string[],
  sample_size: 96 as number | null,
  transformer_layers_per_block: 1 as number | number[],
  upcast_attention: true,
  max_norm_num_groups: 32,
  use_linear_projection: true,
};

export type ControlNetXSAdapterConfig = Camelize<typeof DEFAULTS>;

export function parseAdapterConfig(raw: Record<string, unknown>, origin: string, warn: Warn): ControlNetXSAdapterConfig {
  const c = parseConfig(raw, DEFAULTS, origin, warn);
  if (c.conditioningChannelOrder !== 'rgb' && c.conditioningChannelOrder !== 'bgr') {
    throw new ConfigError(`${origin}: unknown conditioning_channel_order "${c.conditioningChannelOrder}"`);
  }
  const n = c.downBlockTypes.length;
  if (c.blockOutChannels.length !== n || c.baseBlockOutChannels.length !== n) {
    throw new ConfigError(`${origin}: block_out_channels, base_block_out_channels and down_block_types must have the same length`);
  }
  return c;
}

/**
 * diffusers' `torch_dtype` on the adapter, accepted for the same call: the adapter holds weights only, and the
 * fused model computes in its UNet's dtype (diffusers' `from_unet` casts it to `unet.dtype` as well).
 */
export interface AdapterDtypeOption {
  dtype?: ComputeDtype;
}

export class ControlNetXSAdapter {
  private constructor(
    readonly config: ControlNetXSAdapterConfig,
    readonly net: ControlNetXSAdapterNet,
    /** The checkpoint, re-keyed by `UNetControlNetXSModel.fromUnet`. */
    readonly source: WeightSource,
  ) {}

  static async fromPretrained(dir: string, options: PretrainedOptions & AdapterDtypeOption = {}): Promise<ControlNetXSAdapter> {
    const folder = await resolveModelFolder(dir, options);
    const origin = `${folder}/config.json`;
    const config = parseAdapterConfig(await loadConfigJson(folder), origin, options.warn ?? console.warn);
    const source = await openWeights(folder, 'diffusion_pytorch_model', options.variant);
    return ControlNetXSAdapter.fromSource(config, source);
  }

  /** Validate a checkpoint against the adapter built from `config` (strict both ways). */
  static fromSource(config: ControlNetXSAdapterConfig, source: WeightSource): ControlNetXSAdapter {
    const net = new ControlNetXSAdapterNet(config, source.origin);
    source.bindStrict(net.parameters());
    return new ControlNetXSAdapter(config, net, source);
  }
}
