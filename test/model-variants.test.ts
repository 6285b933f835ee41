/**
 * Settings the reference checkpoints do not use, checked by exact relations instead:
 * `bgr` adapters, `use_linear_projection: false`, and the real SD 2.1 / SDXL layouts (4 levels,
 * 10-layer transformers) whose fused module tree must be covered exactly by the rename table.
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ControlNetXSAdapter, parseAdapterConfig } from '../src/models/controlnet-xs-adapter.js';
import { fusedConfig, fusedKey } from '../src/models/controlnet-xs-fusion.js';
import { readConfigJson } from '../src/models/loading.js';
import { parseAutoencoderKLConfig } from '../src/models/autoencoder-kl-config.js';
import { parseCLIPTextConfig } from '../src/models/clip-text-config.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { parseUNet2DConditionConfig } from '../src/models/unet-2d-condition-config.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { AutoencoderKLNet } from '../src/nn/autoencoder-kl-net.js';
import { CLIPTextNet } from '../src/nn/clip-text-net.js';
import { ControlNetXSAdapterNet } from '../src/nn/controlnet-xs-adapter-net.js';
import { UNet2DConditionNet, unetLayout } from '../src/nn/unet-2d-condition-net.js';
import { UNetControlNetXSNet } from '../src/nn/unet-controlnet-xs-net.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { assertClose, fixture, tempDir } from './helpers.js';

const D = fixture('tiny-sd-cnxs');
const ref = loadSafetensorsSync(`${D}/reference/tensors.safetensors`);
const inputs = () => ({
  sample: ref.read('inputs.sample'),
  timestep: 981,
  encoderHiddenStates: ref.read('inputs.encoder_hidden_states'),
});
const quiet = { warn: () => {} };

/**
 * A copy of a model folder with config changes and (optionally) every tensor passed through `edit`,
 * removed when the calling test ends.
 */
function variant(folder: string, config: Record<string, unknown>, edit?: (name: string, shape: number[]) => number[]): string {
  const dir = tempDir('cnxs-variant-');
  cpSync(folder, dir, { recursive: true });
  const raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...raw, ...config }));
  if (edit) {
    const src = loadSafetensorsSync(join(folder, 'diffusion_pytorch_model.safetensors'));
    writeSafetensors(
      join(dir, 'diffusion_pytorch_model.safetensors'),
      src.keys().map((name) => ({ name, dtype: 'F32', shape: edit(name, [...src.info(name).shape]), bytes: () => src.readBytes(name) })),
    );
  }
  return dir;
}

test('a bgr adapter on an image equals the rgb adapter on the channel-flipped image (bit for bit)', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
  const rgb = UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`));
  const bgr = UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(variant(`${D}/controlnet`, { conditioning_channel_order: 'bgr' }), quiet));
  const cond = ref.read('inputs.controlnet_cond') as Tensor<'float32'>;
  const [b, c, h, w] = cond.dims as [number, number, number, number];
  const flipped = new Float32Array(cond.data.length);
  for (let n = 0; n < b; n++) for (let k = 0; k < c; k++) flipped.set(cond.data.subarray((n * c + k) * h * w, (n * c + k + 1) * h * w), (n * c + (c - 1 - k)) * h * w);
  const a = (await bgr.forward({ ...inputs(), controlnetCond: cond })).sample;
  const e = (await rgb.forward({ ...inputs(), controlnetCond: new Tensor('float32', flipped, cond.dims) })).sample;
  assertClose(a, e, 0, 'bgr vs flipped rgb');
  await Promise.all([rgb.release(), bgr.release()]);
});

test('use_linear_projection false (1×1 conv projections) reproduces the reference with the same weights', async () => {
  const toConv = (name: string, shape: number[]) => (/\.proj_(in|out)\.weight$/.test(name) ? [...shape, 1, 1] : shape);
  const unet = await UNet2DConditionModel.fromPretrained(variant(`${D}/unet`, { use_linear_projection: false }, toConv), quiet);
  const adapter = await ControlNetXSAdapter.fromPretrained(variant(`${D}/controlnet`, { use_linear_projection: false }, toConv), quiet);
  const model = UNetControlNetXSModel.fuse(unet, adapter);
  const { sample } = await model.forward({ ...inputs(), controlnetCond: ref.read('inputs.controlnet_cond') });
  assertClose(sample, ref.read('unet_cnxs_forward_t981_s1.sample'), 1e-4, 'conv projections');
  const plain = (await unet.forward(inputs())).sample;
  assertClose(plain, ref.read('unet_base_forward_t981.sample'), 1e-4, 'plain UNet, conv projections');
  await Promise.all([model.release(), unet.release()]);
});

/** Structure only (no weights): real layouts must fuse key for key, shape for shape. */
function checkLayout(unetConfig: Record<string, unknown>, adapterConfig: Record<string, unknown>, counts: { unet: number; adapter: number }) {
  const uc = parseUNet2DConditionConfig(unetConfig, 'unet', () => {});
  const ac = parseAdapterConfig(adapterConfig, 'adapter', () => {});
  const unet = [...new UNet2DConditionNet(uc, unetLayout(uc, 'unet')).parameters()];
  const adapterNet = new ControlNetXSAdapterNet(ac, 'adapter');
  const adapter = [...adapterNet.parameters()];
  const sum = (ps: { shape: readonly number[] }[]) => ps.reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  assert.equal(sum(unet), counts.unet, 'UNet parameters');
  assert.equal(Math.round(sum(adapter) / 1e4), Math.round(counts.adapter / 1e4), 'adapter parameters');
  const groups = { down: adapterNet.down_blocks.map((d) => d.resnets[0]!.norm1.numGroups), mid: adapterNet.mid_block.midblock.resnets[0]!.norm1.numGroups };
  const fused = new Map([...new UNetControlNetXSNet(fusedConfig(uc, ac), groups, 'fused').parameters()].map((p) => [p.key, p.shape.join(',')]));
  const mapped = new Map<string, string>();
  for (const p of unet) mapped.set(fusedKey('unet', p.key)!, p.shape.join(','));
  for (const p of adapter) mapped.set(fusedKey('controlnet', p.key)!, p.shape.join(','));
  assert.equal(mapped.size, unet.length + adapter.length);
  assert.deepEqual(mapped, fused);
}

test('SD 2.1-base + the published SD2.1 canny adapter: 865,910,724 + 14.19M parameters, fused exactly; VAE and text encoder sizes', () => {
  const cfg = (n: string) => readConfigJson(fixture('..', '..', 'bench', 'configs', n));
  checkLayout(cfg('unet'), cfg('controlnet'), { unet: 865910724, adapter: 14.19e6 });
  const count = (ps: Iterable<{ shape: readonly number[] }>) => [...ps].reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  assert.equal(count(new AutoencoderKLNet(parseAutoencoderKLConfig(cfg('vae'), 'vae', () => {})).parameters()), 83653863);
  assert.equal(count(new CLIPTextNet(parseCLIPTextConfig(cfg('text_encoder'), 'te', () => {}), false).parameters()), 340387840);
});

test('SDXL-shaped layout (3 levels, 1/2/10 transformer layers, text_time): fused exactly', () => {
  const unet = {
    ...readConfigJson(fixture('tiny-sdxl-cnxs', 'unet')),
    transformer_layers_per_block: [1, 2, 10],
  };
  const adapter = { ...readConfigJson(fixture('tiny-sdxl-cnxs', 'controlnet')), transformer_layers_per_block: [1, 2, 10], upcast_attention: null };
  const uc = parseUNet2DConditionConfig(unet, 'unet', () => {});
  const count = (c: typeof uc) => [...new UNet2DConditionNet(c, unetLayout(c, 'unet')).parameters()].reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  const ac = parseAdapterConfig(adapter, 'adapter', () => {});
  const adapterCount = [...new ControlNetXSAdapterNet(ac, 'adapter').parameters()].reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  checkLayout(unet, adapter, { unet: count(uc), adapter: adapterCount });
});

test('bf16 checkpoints are cast in-graph exactly: a BF16 UNet equals an F32 UNet holding the same rounded values', async () => {
  const src = loadSafetensorsSync(`${D}/unet/diffusion_pytorch_model.safetensors`);
  const round = (name: string) => {
    const f = src.read(name).data as Float32Array;
    const u = new Uint32Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
    const hi = new Uint16Array(u.length);
    for (let i = 0; i < u.length; i++) hi[i] = u[i]! >>> 16; // truncate to bfloat16
    return hi;
  };
  const write = (dtype: 'BF16' | 'F32') => {
    const dir = tempDir(`cnxs-${dtype}-`);
    cpSync(join(D, 'unet', 'config.json'), join(dir, 'config.json'));
    writeSafetensors(
      join(dir, 'diffusion_pytorch_model.safetensors'),
      src.keys().map((name) => ({
        name,
        dtype,
        shape: src.info(name).shape,
        bytes: () => {
          const hi = round(name);
          if (dtype === 'BF16') return new Uint8Array(hi.buffer);
          const u = new Uint32Array(hi.length);
          for (let i = 0; i < hi.length; i++) u[i] = hi[i]! << 16;
          return new Uint8Array(u.buffer);
        },
      })),
    );
    return dir;
  };
  const bf16 = await UNet2DConditionModel.fromPretrained(write('BF16'));
  const f32 = await UNet2DConditionModel.fromPretrained(write('F32'));
  assert.equal(bf16.toOnnx().graph.initializers.find((t) => t.name === 'conv_in.weight')!.dataType, 16);
  assertClose((await bf16.forward(inputs())).sample, (await f32.forward(inputs())).sample, 0, 'bf16 vs f32 of the same values');
  await Promise.all([bf16.release(), f32.release()]);
});

test('the SDXL-base UNet layout has SDXL’s 2,567,463,684 parameters', () => {
  const c = parseUNet2DConditionConfig(
    {
      addition_embed_type: 'text_time',
      addition_time_embed_dim: 256,
      attention_head_dim: [5, 10, 20],
      block_out_channels: [320, 640, 1280],
      cross_attention_dim: 2048,
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
      up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
      projection_class_embeddings_input_dim: 2816,
      transformer_layers_per_block: [1, 2, 10],
      use_linear_projection: true,
    },
    'sdxl',
    () => {},
  );
  const n = [...new UNet2DConditionNet(c, unetLayout(c, 'sdxl')).parameters()].reduce((s, p) => s + p.shape.reduce((a, d) => a * d, 1), 0);
  assert.equal(n, 2567463684);
});
