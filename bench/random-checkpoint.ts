/**
 * Writes a random-weight checkpoint with real SD 2.1-base dimensions (bench/configs, copied from the
 * project's perf-configs) so anyone can benchmark without downloading. Shapes come from our own module
 * trees; values are distinct (onnxruntime de-duplicates identical initializers) and scaled like an init.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAdapterConfig } from '../src/models/controlnet-xs-adapter.js';
import { readConfigJson } from '../src/models/loading.js';
import { parseAutoencoderKLConfig } from '../src/models/autoencoder-kl-config.js';
import { parseAutoencoderTinyConfig } from '../src/models/autoencoder-tiny-config.js';
import { parseCLIPTextConfig } from '../src/models/clip-text-config.js';
import { parseUNet2DConditionConfig } from '../src/models/unet-2d-condition-config.js';
import { AutoencoderKLNet } from '../src/nn/autoencoder-kl-net.js';
import { AutoencoderTinyNet } from '../src/nn/autoencoder-tiny-net.js';
import { CLIPTextNet } from '../src/nn/clip-text-net.js';
import { ControlNetXSAdapterNet } from '../src/nn/controlnet-xs-adapter-net.js';
import { UNet2DConditionNet, unetLayout } from '../src/nn/unet-2d-condition-net.js';
import { Generator, randn } from '../src/random/index.js';
import { numel, type Tensor } from '../src/tensor.js';
import type { ParameterSpec } from '../src/weights/source.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { uniformFloat32Bytes } from './xorshift.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CONFIGS = join(HERE, 'configs');
/** The CLIP BPE files (the same vocabulary as every SD checkpoint). */
const TOKENIZER = join(HERE, '..', 'test', 'fixtures', 'clip-tokenizer');

/** Uniforms scaled like an init (±√(3 / fan-in); norm weights 1 ± 0.1, other vectors ±0.1), tensor stream `seed`. */
function randomBytes(p: ParameterSpec, seed: number): Uint8Array {
  const fanIn = p.shape.length > 1 ? numel(p.shape.slice(1)) : 1;
  const isNormWeight = p.shape.length === 1 && /norm/.test(p.key) && p.key.endsWith('.weight');
  const scale = p.shape.length > 1 ? Math.sqrt(3 / fanIn) : 0.1;
  return uniformFloat32Bytes(numel(p.shape), seed, { scale, offset: isNormWeight ? 1 : 0 });
}

function writeRandom(dir: string, params: ParameterSpec[], file = 'diffusion_pytorch_model.safetensors'): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(
    join(dir, file),
    params.map((p, i) => ({ name: p.key, dtype: 'F32', shape: p.shape, bytes: () => randomBytes(p, i + 1) })),
  );
}

/**
 * One component folder `out/name`: random weights shaped by `params(config)` (our module tree for that
 * config), then `config.json` — written last, so a folder with a config has its weights. Kept when its
 * weights file already exists, so a checkpoint is written once and reused.
 */
export function writeRandomComponent(
  out: string,
  name: string,
  config: Record<string, unknown>,
  params: (raw: Record<string, unknown>) => ParameterSpec[],
  file = 'diffusion_pytorch_model.safetensors',
): void {
  const dir = join(out, name);
  if (existsSync(join(dir, file))) return;
  console.error(`writing random ${name} weights to ${dir} …`);
  writeRandom(dir, params(config), file);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/** A CLIP tokenizer folder: the BPE files every SD checkpoint shares, with `configDir`'s token settings (default: the fixture's own). */
export function writeTokenizer(out: string, name: string, configDir: string = TOKENIZER): void {
  mkdirSync(join(out, name), { recursive: true });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(TOKENIZER, f), join(out, name, f));
  for (const f of ['tokenizer_config.json', 'special_tokens_map.json']) copyFileSync(join(configDir, f), join(out, name, f));
}

/** One component: its config from bench/configs, its weights random, its shapes from our module tree. */
function component(out: string, name: string, params: (raw: Record<string, unknown>) => ParameterSpec[], file?: string): void {
  writeRandomComponent(out, name, readConfigJson(join(CONFIGS, name)), params, file);
}

/**
 * Ensure `out` is a complete diffusers pipeline folder with random weights (SD 2.1-base dimensions):
 * model_index.json, unet, controlnet, vae, text_encoder, tokenizer, scheduler; plus `taesd/`, an
 * AutoencoderTiny in the real TAESD config (not a pipeline component: the benchmark's preview decoder).
 * Returns `out`.
 */
export function ensureRandomCheckpoint(out: string): string {
  const quiet = () => {};
  component(out, 'unet', (raw) => {
    const config = parseUNet2DConditionConfig(raw, 'bench unet', quiet);
    return [...new UNet2DConditionNet(config, unetLayout(config, 'bench unet')).parameters()];
  });
  component(out, 'controlnet', (raw) => [...new ControlNetXSAdapterNet(parseAdapterConfig(raw, 'bench controlnet', quiet), 'bench controlnet').parameters()]);
  component(out, 'vae', (raw) => [...new AutoencoderKLNet(parseAutoencoderKLConfig(raw, 'bench vae', quiet)).parameters()]);
  component(out, 'taesd', (raw) => [...new AutoencoderTinyNet(parseAutoencoderTinyConfig(raw, 'bench taesd', quiet)).parameters()]);
  component(out, 'text_encoder', (raw) => [...new CLIPTextNet(parseCLIPTextConfig(raw, 'bench text_encoder', quiet), false).parameters()], 'model.safetensors');
  mkdirSync(join(out, 'scheduler'), { recursive: true });
  copyFileSync(join(CONFIGS, 'scheduler', 'scheduler_config.json'), join(out, 'scheduler', 'scheduler_config.json'));
  writeTokenizer(out, 'tokenizer');
  writeFileSync(
    join(out, 'model_index.json'),
    JSON.stringify({
      _class_name: 'StableDiffusionControlNetXSPipeline',
      controlnet: ['diffusers', 'ControlNetXSAdapter'],
      feature_extractor: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    }, null, 2),
  );
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  ensureRandomCheckpoint(process.argv[2] ?? join(HERE, 'out', 'sd21-random'));
}

/**
 * The inputs of one UNet + ControlNet-XS step on the random SD 2.1-base checkpoint: batch 2 (CFG),
 * `size`×`size` latents, the 77×1024 text states and a control image 8× the latents, drawn from seed 1
 * so every benchmark times the same step.
 */
export function stepInputs(size: number): { sample: Tensor<'float32'>; timestep: number; encoderHiddenStates: Tensor<'float32'>; controlnetCond: Tensor<'float32'> } {
  const g = new Generator().manualSeed(1);
  return {
    sample: randn([2, 4, size, size], { generator: g }),
    timestep: 500,
    encoderHiddenStates: randn([2, 77, 1024], { generator: g }),
    controlnetCond: randn([2, 3, size * 8, size * 8], { generator: g }),
  };
}
