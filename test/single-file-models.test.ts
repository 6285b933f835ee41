/**
 * Components out of the tiny single files (`fromSingleFile`) against diffusers' component checks
 * (test/fixtures/single-file/cases.json, kind component_check): every weight the model binds holds
 * exactly the bytes of the tiny folder's weights rounded to float16 (the files are fp16), the key
 * counts are diffusers', and the traced graphs point into the single file itself — row slices and
 * squeezes as narrower regions of it, the SDXL text projection as a Transpose — with no copy.
 */
import assert from 'node:assert/strict';
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text-model.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import type { TracedModel } from '../src/models/traced-model.js';
import type { BoundWeights } from '../src/weights/source.js';
import { openSingleFile } from '../src/models/single-file/open.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { readWeightBytes } from '../src/weights/view.js';
import { assertClose, fixture } from './helpers.js';

const SF = fixture('single-file');
const D = fixture('tiny-sd-cnxs');
const DX = fixture('tiny-sdxl-cnxs');
const SD15 = join(SF, 'checkpoints', 'tiny-sd15.fp16.safetensors');
const SDXL = join(SF, 'checkpoints', 'tiny-sdxl-base.fp16.safetensors');

interface ComponentCase {
  name: string;
  kind: string;
  file: string;
  component: string;
  n_keys_loaded: number;
  bitwise_equal: boolean;
}
const CASES = (JSON.parse(readFileSync(join(SF, 'cases.json'), 'utf8')) as ComponentCase[]).filter((c) => c.kind === 'component_check');

/** float32 → IEEE binary16, round to nearest even (torch's `.half()`), as raw bits. */
function toHalfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) {
    h++;
    if (h === 0x400) {
      h = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | h;
}

/** The reference bytes of `key` in a folder: its fp16 variant when it has one, else its fp32 weights rounded to fp16. */
function referenceBytes(folder: string, weightsName: string): (key: string) => Uint8Array {
  const fp16 = join(folder, `${weightsName}.fp16.safetensors`);
  let f16: ReturnType<typeof loadSafetensorsSync> | null = null;
  try {
    f16 = loadSafetensorsSync(fp16);
  } catch {
    f16 = null;
  }
  const f32 = loadSafetensorsSync(join(folder, `${weightsName}.safetensors`));
  return (key) => {
    if (f16) return f16.readBytes(key);
    const v = f32.read(key).data as Float32Array;
    return new Uint8Array(Uint16Array.from(v, toHalfBits).buffer);
  };
}

/** Every bound weight equals the reference bytes; returns how many were compared. */
function assertWeightsEqual(model: { weights: BoundWeights }, reference: (key: string) => Uint8Array, what: string): number {
  let n = 0;
  for (const [key, ref] of model.weights.entries()) {
    assert.equal(ref.info.dtype, 'F16', `${what} ${key} dtype`);
    assert.ok(Buffer.from(readWeightBytes(ref)).equals(Buffer.from(reference(key))), `${what} ${key}: bytes differ from the folder's weights rounded to fp16`);
    n++;
  }
  return n;
}

/** Every weight initializer of the traced graph is external data in `file` itself (nothing copied into the model). */
function assertPointsInto(model: TracedModel, file: string): void {
  const real = realpathSync(file);
  const weights = new Set([...model.weights.entries()].map(([k]) => k));
  const inits = model.toOnnx().graph.initializers.filter((t) => weights.has(t.name));
  assert.equal(inits.length, weights.size);
  for (const t of inits) {
    assert.ok(t.external, `${t.name} is not external data`);
    assert.equal(`/${t.external.location}`, real, `${t.name} points elsewhere`);
  }
}

function caseOf(file: string, component: string): ComponentCase {
  const c = CASES.find((x) => x.file === `checkpoints/${file}` && x.component === component);
  assert.ok(c && c.bitwise_equal, `no component_check case for ${file} ${component}`);
  return c;
}

describe('single-file components equal the folder weights rounded to fp16 (diffusers component_check)', () => {
  for (const [file, folder] of [
    [SD15, D],
    [SDXL, DX],
  ] as const) {
    const base = file.split('/').pop()!;
    test(`${base}: unet`, async () => {
      const unet = await UNet2DConditionModel.fromSingleFile(file, { config: folder });
      const n = assertWeightsEqual(unet, referenceBytes(join(folder, 'unet'), 'diffusion_pytorch_model'), 'unet');
      assert.equal(n, caseOf(base, 'unet').n_keys_loaded);
      assertPointsInto(unet, file);
    });
    test(`${base}: vae (mid-block attention 1×1 convs as narrower regions)`, async () => {
      const vae = await AutoencoderKL.fromSingleFile(file, { config: folder });
      const n = assertWeightsEqual(vae, referenceBytes(join(folder, 'vae'), 'diffusion_pytorch_model'), 'vae');
      assert.equal(n, caseOf(base, 'vae').n_keys_loaded);
      const q = vae.weights.get('decoder.mid_block.attentions.0.to_q.weight');
      assert.equal(q.view, undefined);
      assert.equal(q.info.shape.length, 2);
    });
    test(`${base}: text_encoder`, async () => {
      const te = await CLIPTextModel.fromSingleFile(file, { config: folder });
      const n = assertWeightsEqual(te, referenceBytes(join(folder, 'text_encoder'), 'model'), 'text_encoder');
      assert.equal(n, caseOf(base, 'text_encoder').n_keys_loaded);
      assertPointsInto(te, file);
    });
  }

  test('tiny-sdxl-base: text_encoder_2 (OpenCLIP: fused in_proj rows, transposed projection)', async () => {
    const te2 = await CLIPTextModelWithProjection.fromSingleFile(SDXL, { config: DX });
    const n = assertWeightsEqual(te2, referenceBytes(join(DX, 'text_encoder_2'), 'model'), 'text_encoder_2');
    assert.equal(n, caseOf('tiny-sdxl-base.fp16.safetensors', 'text_encoder_2').n_keys_loaded);
    assertPointsInto(te2, SDXL);
    // q/k/v are three consecutive regions of the stored in_proj_weight, no view
    const q = te2.weights.get('text_model.encoder.layers.0.self_attn.q_proj.weight');
    const k = te2.weights.get('text_model.encoder.layers.0.self_attn.k_proj.weight');
    assert.equal(q.view, undefined);
    assert.equal(k.info.fileOffset, q.info.fileOffset + q.info.byteLength);
    assert.deepEqual(te2.weights.get('text_projection.weight').view, { kind: 'transpose', perm: [1, 0] });
    // the first encoder of the same file is CLIP-L, not bigG (diffusers' limitation L1 with equal hidden sizes)
    const te1 = await CLIPTextModel.fromSingleFile(SDXL, { config: DX });
    assert.notEqual(te1.weights.get('text_model.encoder.layers.0.self_attn.q_proj.weight').info.fileOffset, q.info.fileOffset);
  });

  test('tiny-sd15: the fused UNetControlNetXSModel of the pipeline (unet_fused)', async () => {
    const adapter = await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'), { variant: 'fp16' });
    const fused = await UNetControlNetXSModel.fromUnet(await UNet2DConditionModel.fromSingleFile(SD15, { config: D }), adapter);
    const folder = await UNetControlNetXSModel.fromUnet(await UNet2DConditionModel.fromPretrained(join(D, 'unet'), { variant: 'fp16' }), adapter);
    let n = 0;
    for (const [key, ref] of fused.weights.entries()) {
      assert.ok(Buffer.from(readWeightBytes(ref)).equals(Buffer.from(readWeightBytes(folder.weights.get(key)))), key);
      n++;
    }
    assert.equal(n, caseOf('tiny-sd15.fp16.safetensors', 'unet (fused UNetControlNetXSModel)').n_keys_loaded);
  });
});

describe('a torch .ckpt single file (the VAE saved on its own, fp32, shared storages and a strided tensor)', () => {
  const CKPT = join(SF, 'checkpoints', 'tiny-sd15-vae.ckpt');

  test('component_check: every weight bitwise the folder’s fp32 weights, read through the views of the pickle', async () => {
    const vae = await AutoencoderKL.fromSingleFile(CKPT, { config: D });
    const folder = loadSafetensorsSync(join(D, 'vae', 'diffusion_pytorch_model.safetensors'));
    let n = 0;
    for (const [key, ref] of vae.weights.entries()) {
      assert.ok(Buffer.from(readWeightBytes(ref)).equals(Buffer.from(folder.readBytes(key))), key);
      n++;
    }
    assert.equal(n, caseOf('tiny-sd15-vae.ckpt', 'vae').n_keys_loaded);
    // squeezed 1×1 attention convs that live inside a shared storage stay regions of the file
    const q = vae.weights.get('decoder.mid_block.attentions.0.to_q.weight');
    assert.equal(q.view, undefined);
    assert.equal(q.info.shape.length, 2);
  });

  test('vae_decode_from_ckpt: decode equals diffusers at the README tolerance', async () => {
    const vae = await AutoencoderKL.fromSingleFile(CKPT, { config: D });
    const t = loadSafetensorsSync(join(SF, 'tensors.safetensors'));
    const { sample } = await vae.decode(t.read('vae_ckpt_decode.inputs.latents'));
    assertClose(sample, t.read('vae_ckpt_decode.sample'), 1e-4, 'vae_ckpt_decode.sample');
  });

  test('load_attempt detect: diffusers’ model type of all three files is "v1"; the components found', async () => {
    const expected = { 'tiny-sd15.fp16.safetensors': ['v1', 'text_encoder,unet,vae'], 'tiny-sdxl-base.fp16.safetensors': ['v1', 'text_encoder,text_encoder_2,unet,vae'], 'tiny-sd15-vae.ckpt': ['v1', 'vae'] };
    for (const [name, [type, comps]] of Object.entries(expected)) {
      const file = await openSingleFile(join(SF, 'checkpoints', name));
      assert.equal(file.inspection.modelType, type, name);
      assert.equal(file.inspection.components.map((c) => c.name).sort().join(','), comps, name);
      assert.deepEqual(file.inspection.stray, [], name);
    }
  });
});
