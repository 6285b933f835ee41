/**
 * Writes a random-weight checkpoint with real SDXL-base dimensions, the SDXL twin of random-checkpoint.ts: UNet,
 * VAE, both text encoders, tokenizers and scheduler in the configs bundled for single files
 * (src/models/single-file/configs/sdxl-base, diffusers' stabilityai/stable-diffusion-xl-base-1.0), and a
 * ControlNet-XS adapter derived from that UNet as diffusers' `ControlNetXSAdapter.from_unet` derives one.
 * The files are streamed one tensor at a time (the UNet alone is 10.3 GB in fp32) and written once.
 *
 *   node --import tsx bench/random-sdxl-checkpoint.ts [out-dir]
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAdapterConfig } from '../src/models/controlnet-xs-adapter.js';
import { readConfigJson } from '../src/models/loading.js';
import { parseAutoencoderKLConfig } from '../src/models/autoencoder-kl-config.js';
import { parseAutoencoderTinyConfig } from '../src/models/autoencoder-tiny-config.js';
import { parseCLIPTextConfig } from '../src/models/clip-text-config.js';
import { parseUNet2DConditionConfig, type UNet2DConditionConfig } from '../src/models/unet-2d-condition-config.js';
import { AutoencoderKLNet } from '../src/nn/autoencoder-kl-net.js';
import { AutoencoderTinyNet } from '../src/nn/autoencoder-tiny-net.js';
import { CLIPTextNet } from '../src/nn/clip-text-net.js';
import { ControlNetXSAdapterNet } from '../src/nn/controlnet-xs-adapter-net.js';
import { UNet2DConditionNet, unetLayout } from '../src/nn/unet-2d-condition-net.js';
import { CONFIGS, writeRandomComponent, writeTokenizer } from './random-checkpoint.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const SDXL_CONFIGS = join(HERE, '..', 'src', 'models', 'single-file', 'configs', 'sdxl-base');

/** The settings of `from_unet` beyond the UNet: diffusers' keyword arguments, camelCased. */
export interface FromUnetSettings {
  /** `block_out_channels = [int(b * size_ratio) for b in unet.block_out_channels]`; give this or `blockOutChannels`. */
  sizeRatio?: number;
  /** The control widths themselves (diffusers' absolute sizing). */
  blockOutChannels?: number[];
  /** Default: the UNet's `attention_head_dim` (diffusers' naming confusion, kept). */
  numAttentionHeads?: number[];
  learnTimeEmbedding?: boolean;
  timeEmbeddingMix?: number;
  conditioningChannels?: number;
  conditioningChannelOrder?: 'rgb' | 'bgr';
  conditioningEmbeddingOutChannels?: number[];
}

/**
 * The adapter config diffusers 0.33.1's `ControlNetXSAdapter.from_unet(unet, size_ratio=…, …)` saves: the control
 * widths are the UNet's times `size_ratio` (truncated, as Python's `int`), everything structural (block types,
 * base widths, cross-attention width, transformer depths, sample size, GroupNorm bound, projections) is the
 * UNet's own.
 */
export function adapterConfigFromUnet(unet: UNet2DConditionConfig, s: FromUnetSettings): Record<string, unknown> {
  if ((s.sizeRatio === undefined) === (s.blockOutChannels === undefined)) {
    throw new Error('adapterConfigFromUnet: give exactly one of sizeRatio (relative sizing) and blockOutChannels (absolute sizing), as from_unet requires');
  }
  const ratio = s.sizeRatio;
  const blockOutChannels = s.blockOutChannels ?? unet.blockOutChannels.map((b) => Math.trunc(b * ratio!));
  const heads = s.numAttentionHeads ?? unet.attentionHeadDim;
  return {
    _class_name: 'ControlNetXSAdapter',
    _diffusers_version: '0.33.1',
    conditioning_channels: s.conditioningChannels ?? 3,
    conditioning_channel_order: s.conditioningChannelOrder ?? 'rgb',
    conditioning_embedding_out_channels: s.conditioningEmbeddingOutChannels ?? [16, 32, 96, 256],
    time_embedding_mix: s.timeEmbeddingMix ?? 1.0,
    learn_time_embedding: s.learnTimeEmbedding ?? false,
    num_attention_heads: heads,
    block_out_channels: blockOutChannels,
    base_block_out_channels: unet.blockOutChannels,
    cross_attention_dim: unet.crossAttentionDim,
    down_block_types: unet.downBlockTypes,
    sample_size: unet.sampleSize,
    transformer_layers_per_block: unet.transformerLayersPerBlock,
    upcast_attention: unet.upcastAttention,
    max_norm_num_groups: unet.normNumGroups,
    use_linear_projection: unet.useLinearProjection,
  };
}

/**
 * The published SDXL canny adapter (UmerHA/Testing-ConrolNetXS-SDXL-canny, the one diffusers' docs and tests use):
 * ControlNet-XS "model B" for SDXL, `control_model_ratio: 0.1` and `learn_embedding: true` in the authors' config
 * (vislearn/ControlNet-XS sdxl_encD_canny_48m.yaml), 64-channel heads there (so 1, 1, 2 heads for 32/64/128
 * control channels, which the published config lists instead of from_unet's default, the UNet's 5/10/20), and the
 * default conditioning embedding 16/32/96/256 on RGB.
 */
export const SDXL_ADAPTER_SETTINGS: Readonly<FromUnetSettings> = Object.freeze({
  sizeRatio: 0.1,
  numAttentionHeads: [1, 1, 2],
  learnTimeEmbedding: true,
  timeEmbeddingMix: 1.0,
  conditioningChannels: 3,
  conditioningChannelOrder: 'rgb',
  conditioningEmbeddingOutChannels: [16, 32, 96, 256],
});

/** A one-line statement of what the random SDXL checkpoint assumes, for the benchmark's header. */
export const SDXL_CHECKPOINT_ASSUMPTIONS =
  'SDXL-base configs (src/models/single-file/configs/sdxl-base); adapter = ControlNetXSAdapter.from_unet(unet, size_ratio=0.1, ' +
  'num_attention_heads=[1,1,2], learn_time_embedding=True, conditioning_embedding_out_channels=(16,32,96,256)): ' +
  'control channels 32/64/128, as the published UmerHA/Testing-ConrolNetXS-SDXL-canny adapter';

/**
 * Ensure `out` is a complete StableDiffusionXLControlNetXSPipeline folder with random weights in SDXL-base
 * dimensions: model_index.json, unet, controlnet, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2,
 * scheduler; plus `taesd/`, an AutoencoderTiny (TAESD XL has TAESD's architecture) for the preview-decode timing.
 * Returns `out`.
 */
export function ensureRandomSdxlCheckpoint(out: string): string {
  const quiet = () => {};
  const unetRaw = readConfigJson(join(SDXL_CONFIGS, 'unet'));
  const unetConfig = parseUNet2DConditionConfig(unetRaw, 'bench sdxl unet', quiet);
  writeRandomComponent(out, 'unet', unetRaw, () => [...new UNet2DConditionNet(unetConfig, unetLayout(unetConfig, 'bench sdxl unet')).parameters()]);
  writeRandomComponent(out, 'controlnet', adapterConfigFromUnet(unetConfig, SDXL_ADAPTER_SETTINGS), (raw) => [
    ...new ControlNetXSAdapterNet(parseAdapterConfig(raw, 'bench sdxl controlnet', quiet), 'bench sdxl controlnet').parameters(),
  ]);
  writeRandomComponent(out, 'vae', readConfigJson(join(SDXL_CONFIGS, 'vae')), (raw) => [
    ...new AutoencoderKLNet(parseAutoencoderKLConfig(raw, 'bench sdxl vae', quiet)).parameters(),
  ]);
  writeRandomComponent(out, 'taesd', readConfigJson(join(CONFIGS, 'taesd')), (raw) => [
    ...new AutoencoderTinyNet(parseAutoencoderTinyConfig(raw, 'bench sdxl taesd', quiet)).parameters(),
  ]);
  for (const [name, withProjection] of [['text_encoder', false], ['text_encoder_2', true]] as const) {
    writeRandomComponent(
      out,
      name,
      readConfigJson(join(SDXL_CONFIGS, name)),
      (raw) => [...new CLIPTextNet(parseCLIPTextConfig(raw, `bench sdxl ${name}`, quiet), withProjection).parameters()],
      'model.safetensors',
    );
  }
  writeTokenizer(out, 'tokenizer', join(SDXL_CONFIGS, 'tokenizer'));
  writeTokenizer(out, 'tokenizer_2', join(SDXL_CONFIGS, 'tokenizer_2'));
  mkdirSync(join(out, 'scheduler'), { recursive: true });
  copyFileSync(join(SDXL_CONFIGS, 'scheduler', 'scheduler_config.json'), join(out, 'scheduler', 'scheduler_config.json'));
  writeFileSync(
    join(out, 'model_index.json'),
    `${JSON.stringify(
      {
        _class_name: 'StableDiffusionXLControlNetXSPipeline',
        _diffusers_version: '0.33.1',
        controlnet: ['diffusers', 'ControlNetXSAdapter'],
        feature_extractor: [null, null],
        force_zeros_for_empty_prompt: true,
        scheduler: ['diffusers', 'EulerDiscreteScheduler'],
        text_encoder: ['transformers', 'CLIPTextModel'],
        text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
        tokenizer: ['transformers', 'CLIPTokenizer'],
        tokenizer_2: ['transformers', 'CLIPTokenizer'],
        unet: ['diffusers', 'UNet2DConditionModel'],
        vae: ['diffusers', 'AutoencoderKL'],
      },
      null,
      2,
    )}\n`,
  );
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  ensureRandomSdxlCheckpoint(process.argv[2] ?? join(HERE, 'out', 'sdxl-random'));
}
