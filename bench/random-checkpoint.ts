/**
 * Writes a random-weight checkpoint with real SD 2.1-base dimensions (bench/configs, copied from the
 * project's perf-configs) so anyone can benchmark without downloading. Shapes come from our own module
 * trees; values are distinct (onnxruntime de-duplicates identical initializers) and scaled like an init.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlNetXSAdapterNet, parseAdapterConfig } from '../src/models/controlnet-xs-adapter.js';
import { readConfigJson } from '../src/models/loading.js';
import { UNet2DConditionNet, unetLayout } from '../src/models/unet-2d-condition.js';
import { parseUNet2DConditionConfig } from '../src/models/unet-2d-condition-config.js';
import { numel } from '../src/tensor.js';
import type { ParameterSpec } from '../src/weights/source.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CONFIGS = join(HERE, 'configs');

/** xorshift32 uniforms in [-a, a): fast, seeded, distinct per tensor. */
function randomBytes(p: ParameterSpec, seed: number): Uint8Array {
  const n = numel(p.shape);
  const out = new Float32Array(n);
  const fanIn = p.shape.length > 1 ? numel(p.shape.slice(1)) : 1;
  const isNormWeight = p.shape.length === 1 && /norm/.test(p.key) && p.key.endsWith('.weight');
  const scale = p.shape.length > 1 ? Math.sqrt(3 / fanIn) : 0.1;
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = (isNormWeight ? 1 : 0) + scale * (x / 2 ** 31 - 1);
  }
  return new Uint8Array(out.buffer);
}

function writeRandom(dir: string, params: ParameterSpec[]): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(
    join(dir, 'diffusion_pytorch_model.safetensors'),
    params.map((p, i) => ({ name: p.key, dtype: 'F32', shape: p.shape, bytes: () => randomBytes(p, i + 1) })),
  );
}

/** Ensure `<out>/unet` and `<out>/controlnet` exist with random weights; returns `out`. */
export function ensureRandomCheckpoint(out: string): string {
  const quiet = () => {};
  if (!existsSync(join(out, 'unet', 'diffusion_pytorch_model.safetensors'))) {
    const raw = readConfigJson(join(CONFIGS, 'unet'));
    const config = parseUNet2DConditionConfig(raw, 'bench unet', quiet);
    const net = new UNet2DConditionNet(config, unetLayout(config, 'bench unet'));
    console.error(`writing random UNet weights to ${out}/unet …`);
    writeRandom(join(out, 'unet'), [...net.parameters()]);
    copyFileSync(join(CONFIGS, 'unet', 'config.json'), join(out, 'unet', 'config.json'));
  }
  if (!existsSync(join(out, 'controlnet', 'diffusion_pytorch_model.safetensors'))) {
    const config = parseAdapterConfig(readConfigJson(join(CONFIGS, 'controlnet')), 'bench controlnet', quiet);
    const net = new ControlNetXSAdapterNet(config, 'bench controlnet');
    console.error(`writing random adapter weights to ${out}/controlnet …`);
    writeRandom(join(out, 'controlnet'), [...net.parameters()]);
    copyFileSync(join(CONFIGS, 'controlnet', 'config.json'), join(out, 'controlnet', 'config.json'));
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  ensureRandomCheckpoint(process.argv[2] ?? join(HERE, 'out', 'sd21-random'));
}
