/**
 * Pipelines from the tiny single files against diffusers' `from_single_file` runs
 * (test/fixtures/single-file/cases.json, kind pipeline_from_single_file): prompt embeddings, the
 * latents after every step and the images, whole tensors at the README tolerances (max(1e-4, 20 ×
 * the case's fp32-vs-fp64 hint)). The call, control image and input latents are those of the source
 * folder's case, as in the reference. Plus the load attempts of that reference and bad files.
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, cpSync, ftruncateSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { InputError, SafetensorsError } from '../src/errors.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { SingleFileComponentError, SingleFileConfigMismatchError, UnknownArchitectureError } from '../src/models/single-file/errors.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { parsePythonJson } from '../src/util/json.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { callArgs, tolerance, type PipelineCase } from './pipeline-cases.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture, tempDir } from './helpers.js';

const SF = fixture('single-file');
const SD15 = join(SF, 'checkpoints', 'tiny-sd15.fp16.safetensors');
const SDXL = join(SF, 'checkpoints', 'tiny-sdxl-base.fp16.safetensors');
const D = fixture('tiny-sd-cnxs');
const DX = fixture('tiny-sdxl-cnxs');
const tmp = tempDir('cnxs-single-file-');

type SfCase = PipelineCase & { kind: string; source_case: string };
const CASES = (parsePythonJson(readFileSync(join(SF, 'cases.json'), 'utf8')) as SfCase[]).filter((c) => c.kind === 'pipeline_from_single_file');
const sfTensors = loadSafetensorsSync(join(SF, 'tensors.safetensors'));

/** The case's tensors: its own from single-file/, the call's inputs (`inputs.*`) from the source folder's pipeline/. */
function reader(folder: string): (key: string) => Tensor {
  const source = loadSafetensorsSync(join(folder, 'pipeline', 'tensors.safetensors'));
  return (key) => (key.startsWith('inputs.') ? source.read(key) : sfTensors.read(key));
}

function caseNamed(name: string): SfCase {
  const c = CASES.find((x) => x.name === name);
  assert.ok(c, `no case ${name}`);
  return c;
}

function assertSteps(steps: Tensor<'float32'>[], each: Tensor, atol: number): void {
  assert.equal(steps.length, each.dims[0]);
  const per = each.data.length / steps.length;
  steps.forEach((s, i) => assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), atol, `latents after step ${i}`));
}

describe('pipelines from single files equal diffusers’ from_single_file', () => {
  test('sf_sd15_n_variant_fp16', async () => {
    const c = caseNamed('sf_sd15_n_variant_fp16');
    const read = reader(D);
    const controlnet = await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'), { variant: 'fp16' });
    const loaded = await StableDiffusionControlNetXSPipeline.fromSingleFile(SD15, { config: D, controlnet });
    const p = new StableDiffusionControlNetXSPipeline({ ...loaded.components, scheduler: schedulerFromConfig(c.scheduler.config) });
    const args = callArgs<Parameters<typeof p.run>[0]>(c, join(D, 'pipeline'), read);
    const T = (name: string): Tensor => read(c.tensors[name]!);
    const { promptEmbeds } = await p.encodePrompt(args.prompt, { numImagesPerPrompt: 1, doClassifierFreeGuidance: false });
    assertClose(promptEmbeds, T('prompt_embeds'), tolerance(c, 'prompt_embeds', 1e-5), 'prompt_embeds');
    const steps: Tensor<'float32'>[] = [];
    const out = await p.run({ ...args, callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents) });
    assertSteps(steps, T('latents_after_each_step'), tolerance(c, 'latents_final', 1e-4));
    assertClose(out.images as Tensor, T('images'), tolerance(c, 'images', 1e-4), 'images');
  });

  test('sf_sdxl_A_default_latents (adapter from the config folder, second encoder from its own keys)', async () => {
    const c = caseNamed('sf_sdxl_A_default_latents');
    const read = reader(DX);
    const loaded = await StableDiffusionXLControlNetXSPipeline.fromSingleFile(SDXL, { config: DX });
    const p = new StableDiffusionXLControlNetXSPipeline({ ...loaded.components, scheduler: schedulerFromConfig(c.scheduler.config) });
    const args = callArgs<Parameters<typeof p.run>[0]>(c, join(DX, 'pipeline'), read);
    const T = (name: string): Tensor => read(c.tensors[name]!);
    const emb = await p.encodePrompt(args, { numImagesPerPrompt: 1, doClassifierFreeGuidance: true });
    const embTol = tolerance(c, 'prompt_embeds', 1e-5);
    assertClose(emb.promptEmbeds, T('prompt_embeds'), embTol, 'prompt_embeds');
    assertClose(emb.pooledPromptEmbeds, T('pooled_prompt_embeds'), embTol, 'pooled_prompt_embeds');
    assertClose(emb.negativePromptEmbeds!, T('negative_prompt_embeds'), embTol, 'negative_prompt_embeds');
    const steps: Tensor<'float32'>[] = [];
    const out = await p.run({ ...args, callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents) });
    assertSteps(steps, T('latents_after_each_step'), tolerance(c, 'latents_final', 1e-4));
    assertClose(out.images as Tensor, T('images'), tolerance(c, 'images', 1e-4), 'images');
  });
});

/** A safetensors file of `file`'s tensors, renamed / filtered / added to (bytes copied: the tiny files are small). */
function rewrite(name: string, file: string, edit: (key: string) => string | null, extra: { name: string; shape: number[] }[] = []): string {
  const src = loadSafetensorsSync(file);
  const out = join(tmp, name);
  const kept = src.keys().flatMap((k) => {
    const to = edit(k);
    const info = src.info(k);
    // the writer knows float and int64 widths only; the I32 model_ema counter is not needed here
    return to === null || info.dtype === 'I32' ? [] : [{ name: to, dtype: info.dtype, shape: info.shape, bytes: () => src.readBytes(k) }];
  });
  const added = extra.map((e) => ({ name: e.name, dtype: 'F32' as const, shape: e.shape, bytes: () => new Uint8Array(4 * e.shape.reduce((a, d) => a * d, 1)) }));
  writeSafetensors(out, [...kept, ...added]);
  return out;
}

describe('load attempts of the reference, and bad single files', () => {
  const adapter = (): Promise<ControlNetXSAdapter> => ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'), { variant: 'fp16' });

  test('without config the bundled SD 1.5 configs are used (offline), and a tiny file does not fit them: named error', async () => {
    // diffusers: LocalEntryNotFoundError / OSError (it fetches the SD 1.5 repo's configs from the Hub)
    await assert.rejects(UNet2DConditionModel.fromSingleFile(SD15), (e: unknown) => e instanceof SingleFileConfigMismatchError && /bundled Stable Diffusion 1\.5/.test(e.message) && /mis-shaped/.test(e.message));
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(SD15, { controlnet: await adapter() }), SingleFileConfigMismatchError);
    // the bundled repo's Hub id means the same configs, offline
    await assert.rejects(UNet2DConditionModel.fromSingleFile(SD15, { config: 'stable-diffusion-v1-5/stable-diffusion-v1-5' }), SingleFileConfigMismatchError);
  });

  test('a config folder needs no subfolder for a component (diffusers: OSError without subfolder=)', async () => {
    const a = await UNet2DConditionModel.fromSingleFile(SD15, { config: D });
    const b = await UNet2DConditionModel.fromSingleFile(SD15, { config: D, subfolder: 'unet' });
    const c = await UNet2DConditionModel.fromSingleFile(SD15, { config: join(D, 'unet') });
    assert.equal(a.weights.size, b.weights.size);
    assert.equal(a.weights.size, c.weights.size);
  });

  test('a config override that does not fit the file: named error before any session', async () => {
    await assert.rejects(UNet2DConditionModel.fromSingleFile(SD15, { config: DX }), (e: unknown) => e instanceof SingleFileConfigMismatchError && e.message.includes(DX));
    await assert.rejects(AutoencoderKL.fromSingleFile(SDXL, { config: join(D, 'unet') }), /config/);
  });

  test('the wrong pipeline for the file, and a pipeline without an adapter: named errors', async () => {
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(SDXL, { config: DX }), (e: unknown) => e instanceof InputError && /StableDiffusionXLControlNetXSPipeline/.test(e.message));
    await assert.rejects(StableDiffusionXLControlNetXSPipeline.fromSingleFile(SD15, { config: D }), (e: unknown) => e instanceof InputError && /StableDiffusionControlNetXSPipeline\.fromSingleFile/.test(e.message));
    // the bundled configs have no adapter (tiny-sd-cnxs has one: it loads from there, as diffusers does)
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(SD15), (e: unknown) => e instanceof InputError && /controlnet/.test(e.message));
  });

  test('a VAE-only file: loads as a VAE (no prefix), refused as a pipeline naming what it holds', async () => {
    const vaeOnly = rewrite('vae-only.safetensors', SD15, (k) => (k.startsWith('first_stage_model.') ? k.slice('first_stage_model.'.length) : null));
    const vae = await AutoencoderKL.fromSingleFile(vaeOnly, { config: D });
    const ref = await AutoencoderKL.fromSingleFile(SD15, { config: D });
    assert.equal(vae.weights.size, ref.weights.size);
    // diffusers: SingleFileComponentError "Failed to load CLIPTextModel" (limitation L4)
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(vaeOnly, { config: D }), (e: unknown) => e instanceof SingleFileComponentError && /no UNet/.test(e.message) && /vae: VAE/.test(e.message));
    await assert.rejects(UNet2DConditionModel.fromSingleFile(vaeOnly, { config: D }), SingleFileComponentError);
  });

  test('the VAE .ckpt (load_attempt vae_ckpt.*): as a pipeline a named error; without config the bundled SD 1.5 VAE config, which it does not fit', async () => {
    const ckpt = join(SF, 'checkpoints', 'tiny-sd15-vae.ckpt');
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(ckpt, { config: D }), (e: unknown) => e instanceof SingleFileComponentError && /no UNet/.test(e.message));
    await assert.rejects(AutoencoderKL.fromSingleFile(ckpt), (e: unknown) => e instanceof SingleFileConfigMismatchError && /bundled Stable Diffusion 1\.5/.test(e.message));
    assert.equal((await AutoencoderKL.fromSingleFile(ckpt, { config: D })).weights.size, 180);
  });

  test('a file without text encoder: named error naming the option that supplies it; given, it loads', async () => {
    const noText = rewrite('no-text.safetensors', SD15, (k) => (k.startsWith('cond_stage_model.') ? null : k));
    await assert.rejects(
      StableDiffusionControlNetXSPipeline.fromSingleFile(noText, { config: D, controlnet: await adapter() }),
      (e: unknown) => e instanceof SingleFileComponentError && /text_encoder/.test(e.message) && /textEncoder/.test(e.message),
    );
    const full = await StableDiffusionControlNetXSPipeline.fromSingleFile(SD15, { config: D, controlnet: await adapter() });
    const pipe = await StableDiffusionControlNetXSPipeline.fromSingleFile(noText, { config: D, controlnet: await adapter(), textEncoder: full.textEncoder });
    assert.equal(pipe.textEncoder, full.textEncoder);
  });

  test('unknown architectures: named errors listing what was recognised', async () => {
    const flux = rewrite('flux-like.safetensors', SD15, () => null, [{ name: 'double_blocks.0.img_attn.norm.key_norm.scale', shape: [4] }]);
    for (const options of [{}, { config: D }]) {
      await assert.rejects(UNet2DConditionModel.fromSingleFile(flux, options), (e: unknown) => e instanceof UnknownArchitectureError && /"flux"/.test(e.message) && /components: none/.test(e.message));
    }
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(flux, { config: D }), UnknownArchitectureError);
    // an SD-family type without bundled configs (diffusers' "xl_refiner"): refused without config
    const refiner = rewrite('refiner-like.safetensors', SD15, (k) => (k.startsWith('model.diffusion_model.') ? k : null), [
      { name: 'conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias', shape: [4] },
    ]);
    await assert.rejects(UNet2DConditionModel.fromSingleFile(refiner), (e: unknown) => e instanceof UnknownArchitectureError && /"xl_refiner"/.test(e.message) && /UNet \(LDM\)/.test(e.message));
  });

  test('strict both ways: an unknown key inside a component and a key outside every component are named', async () => {
    const inUnet = rewrite('unet-extra.safetensors', SD15, (k) => k, [{ name: 'model.diffusion_model.extra_block.weight', shape: [2] }]);
    await assert.rejects(UNet2DConditionModel.fromSingleFile(inUnet, { config: D }), /model\.diffusion_model\.extra_block\.weight/);
    const outside = rewrite('stray.safetensors', SD15, (k) => k, [{ name: 'something_else.weight', shape: [2] }]);
    await assert.rejects(StableDiffusionControlNetXSPipeline.fromSingleFile(outside, { config: D, controlnet: await adapter() }), /something_else\.weight/);
    // a component ignores keys of the others (a UNet from a whole checkpoint)
    assert.ok(await UNet2DConditionModel.fromSingleFile(outside, { config: D }));
  });

  test('a truncated single file: named error naming the tensor past the end', async () => {
    const cut = join(tmp, 'truncated.safetensors');
    copyFileSync(SD15, cut);
    const fd = openSync(cut, 'r+');
    ftruncateSync(fd, Math.floor(statSync(SD15).size / 2));
    closeSync(fd);
    await assert.rejects(UNet2DConditionModel.fromSingleFile(cut, { config: D }), (e: unknown) => e instanceof SafetensorsError && /truncated/.test(e.message));
    await assert.rejects(UNet2DConditionModel.fromSingleFile(join(tmp, 'missing.safetensors'), { config: D }), SafetensorsError);
  });
});

test('config as a Hub repo id: only its config files are downloaded (no weights)', { timeout: 60_000 }, async () => {
  const repo = join(tmp, 'hub-repo');
  for (const p of ['model_index.json', 'unet', 'controlnet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) cpSync(join(D, p), join(repo, p), { recursive: true });
  const hub = await startHub(repo);
  try {
    const controlnet = await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'), { variant: 'fp16' });
    const pipe = await StableDiffusionControlNetXSPipeline.fromSingleFile(SD15, { config: 'org/tiny-pipe', cacheDir: join(tmp, 'hf'), endpoint: hub.endpoint, token: false, controlnet });
    assert.equal(pipe.unet.config.blockOutChannels.length, 3);
    const fetched = hub.log.filter((l) => l.method === 'GET' && l.path.includes('/resolve/')).map((l) => l.path);
    assert.ok(fetched.some((p) => p.endsWith('unet/config.json')) && fetched.some((p) => p.endsWith('tokenizer/vocab.json')), fetched.join(', '));
    assert.deepEqual(fetched.filter((p) => /\.(safetensors|bin)$/.test(p)), [], 'weights downloaded');
  } finally {
    await hub.stop();
  }
});
