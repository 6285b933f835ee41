/**
 * The SD pipeline with diffusers' safety checker (test/fixtures/safety-checker over the tiny SD
 * folder, as the reference set overlays them): `pipeline_sc_on` — image 0 flagged and black, image 1
 * diffusers' image — run_safety_checker on diffusers' own decoded images, the load-time rules of
 * `requires_safety_checker` (the `behaviour` cases), model offload, the Hub download and the CLI.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, InputError } from '../src/errors.js';
import { loadImage } from '../src/image/load.js';
import { StableDiffusionSafetyChecker } from '../src/models/safety-checker.js';
import { NSFW_WARNING } from '../src/pipelines/safety-checker.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture, tempDir } from './helpers.js';
import { callArgs, tolerance, type PipelineCase } from './pipeline-cases.js';

const BASE = fixture('tiny-sd-cnxs');
const S = fixture('safety-checker');
const ref = loadSafetensorsSync(join(S, 'tensors.safetensors'));
const read = (key: string) => ref.read(key);
const cases = JSON.parse(readFileSync(join(S, 'cases.json'), 'utf8')) as (PipelineCase & { kind: string; label?: string; warnings?: string[]; output?: { nsfw_content_detected: boolean[] } })[];
const scOn = cases.find((c) => c.name === 'pipeline_sc_on')!;
const behaviour = (label: string) => cases.find((c) => c.kind === 'behaviour' && c.label === label)!;
const W1 = /^You have disabled the safety checker for StableDiffusionControlNetXSPipeline by passing `safetyChecker: null`\. Ensure that you abide/;

/** An SD 1.5-style folder: the tiny base components + this set's safety_checker/, feature_extractor/ and model_index.json. */
function overlay(index: Record<string, unknown> = JSON.parse(readFileSync(join(S, 'model_index.json'), 'utf8')) as Record<string, unknown>, parts = ['safety_checker', 'feature_extractor']): string {
  const dir = tempDir('cnxs-sc-folder-');
  for (const name of readdirSync(BASE)) if (name !== 'model_index.json' && name !== 'pipeline') symlinkSync(resolve(BASE, name), join(dir, name));
  for (const name of parts) symlinkSync(resolve(S, name), join(dir, name));
  writeFileSync(join(dir, 'model_index.json'), JSON.stringify(index));
  return dir;
}

const FOLDER = overlay();
let pipe: StableDiffusionControlNetXSPipeline;
const loadWarnings: string[] = [];
const runWarnings: string[] = [];

before(async () => {
  pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(FOLDER, { warn: (m) => (pipe ? runWarnings : loadWarnings).push(m) });
  pipe.scheduler = schedulerFromConfig(scOn.scheduler.config);
});

describe('pipeline_sc_on: the checker runs in step 9', () => {
  const args = () => callArgs<StableDiffusionControlNetXSCallArgs>(scOn, join(BASE, 'pipeline'), read);

  test("'np': image 0 flagged and exactly 0, image 1 diffusers' image; diffusers' warning once", async () => {
    assert.deepEqual(loadWarnings, [], 'from_pretrained_folder_with_checker: no warnings');
    assert.ok(pipe.safetyChecker instanceof StableDiffusionSafetyChecker);
    assert.equal(pipe.requiresSafetyChecker, true);
    runWarnings.length = 0;
    const out = await pipe.run({ ...args(), outputType: 'np' });
    assert.deepEqual(out.nsfwContentDetected, scOn.output!.nsfw_content_detected);
    assertClose(out.images, read(scOn.tensors['images']!), tolerance(scOn, 'images', 1e-4), 'images');
    const half = out.images.data.length / 2;
    assert.ok(out.images.data.subarray(0, half).every((v) => v === 0), 'the flagged image is black');
    assert.deepEqual(runWarnings, [NSFW_WARNING]);
  });

  test("'pil': the flagged image is black, the other one numpy_to_pil of 'np'", async () => {
    const pil = await pipe.run({ ...args(), outputType: 'pil' });
    assert.deepEqual(pil.nsfwContentDetected, [true, false]);
    assert.ok(pil.images[0]!.data.every((v) => v === 0));
    const expected = read(scOn.tensors['images']!).data as Float32Array;
    const second = pil.images[1]!.data;
    for (let i = 0; i < second.length; i++) assert.ok(Math.abs(second[i]! - expected[second.length + i]! * 255) <= 0.5 + 1e-2, `pixel ${i}`);
  });

  test("'latent': no checker, nsfwContentDetected null (diffusers' output_type_latent)", async () => {
    const c = behaviour('output_type_latent');
    const out = await pipe.run({ ...args(), outputType: 'latent' });
    assert.equal(out.nsfwContentDetected, (c as unknown as { result: { nsfw_content_detected: null } }).result.nsfw_content_detected);
    assertClose(out.images, read(scOn.tensors['latents_final']!), tolerance(scOn, 'latents_final', 1e-4), 'latents');
  });

  test("runSafetyChecker on diffusers' decoded images: its uint8 feature-extractor input and clip_input exactly, then its scores", async () => {
    const decoded = read(scOn.tensors['safety_checker.images_in']!) as Tensor<'float32'>;
    const uint8 = read(scOn.tensors['feature_extractor_input_uint8']!);
    const pils = pipe.imageProcessor.postprocess(decoded, 'pil');
    assert.deepEqual(Buffer.concat(pils.map((p) => Buffer.from(p.data))), Buffer.from(uint8.data.buffer, uint8.data.byteOffset, uint8.data.byteLength));
    const clipInput = pipe.featureExtractor!.preprocess(pils);
    assertClose(clipInput, read(scOn.tensors['safety_checker.clip_input']!), 0, 'clip_input');
    const scored = await pipe.safetyChecker!.forward({ clipInput, images: decoded });
    assertClose(scored.pooledOutput, read(scOn.tensors['safety_checker.pooled']!), 2e-5, 'pooled');
    assertClose(scored.imageEmbeds, read(scOn.tensors['safety_checker.image_embeds']!), 2e-5, 'image_embeds');
    assertClose(scored.cosDist, read(scOn.tensors['safety_checker.cos_dist']!), 1e-5, 'cos_dist');
    assertClose(scored.specialCosDist, read(scOn.tensors['safety_checker.special_cos_dist']!), 1e-5, 'special_cos_dist');
    const { images, nsfwContentDetected } = await pipe.runSafetyChecker(decoded);
    assert.deepEqual(nsfwContentDetected, [true, false]);
    const half = decoded.data.length / 2;
    assert.ok(images.data.subarray(0, half).every((v) => v === 0));
    assert.deepEqual(images.data.subarray(half), decoded.data.subarray(half));
  });

  test('model offload releases the checker after its stage too', async () => {
    const p = new StableDiffusionControlNetXSPipeline({ ...pipe.components }, { warn: () => {} });
    p.offload.enabled = true;
    const released: string[] = [];
    const restore: (() => void)[] = [];
    for (const [name, m] of [['textEncoder', p.textEncoder], ['unet', p.unet], ['vae', p.vae], ['safetyChecker', p.safetyChecker!]] as const) {
      const original = m.release;
      m.release = async function (this: typeof m) {
        released.push(name);
        await original.call(this);
      };
      restore.push(() => (m.release = original));
    }
    after(() => restore.forEach((r) => r()));
    const out = await p.run({ ...args(), outputType: 'np' });
    assert.deepEqual(out.nsfwContentDetected, [true, false]);
    assert.deepEqual(released, ['textEncoder', 'unet', 'vae', 'safetyChecker']);
  });
});

describe("requires_safety_checker and a missing checker: diffusers' behaviour cases", () => {
  const load = async (dir: string, options: Parameters<typeof StableDiffusionControlNetXSPipeline.fromPretrained>[1] = {}) => {
    const warnings: string[] = [];
    const p = await StableDiffusionControlNetXSPipeline.fromPretrained(dir, { ...options, warn: (m) => warnings.push(m) });
    return { p, warnings };
  };
  const result = (p: StableDiffusionControlNetXSPipeline) => ({
    safety_checker: p.safetyChecker ? 'StableDiffusionSafetyChecker' : null,
    feature_extractor: p.featureExtractor ? 'CLIPImageProcessor' : null,
    requires_safety_checker: p.requiresSafetyChecker,
  });
  const expect = (label: string, got: { p: StableDiffusionControlNetXSPipeline; warnings: string[] }) => {
    const c = behaviour(label) as unknown as { result: unknown; warnings: string[] };
    assert.deepEqual(result(got.p), c.result, label);
    assert.equal(got.warnings.length, c.warnings.length, `${label}: ${got.warnings.join(' | ')}`);
    for (const w of got.warnings) assert.match(w, W1);
  };

  test('from_pretrained: the folder, safetyChecker: null (with and without requires), the base folder with requires', async () => {
    expect('from_pretrained_folder_checker_none', await load(FOLDER, { safetyChecker: null }));
    expect('from_pretrained_folder_checker_none_requires_false', await load(FOLDER, { safetyChecker: null, requiresSafetyChecker: false }));
    expect('from_pretrained_base_requires_true', await load(BASE, { requiresSafetyChecker: true }));
    // the base folder says requires_safety_checker false: no checker, no warning
    const base = await load(BASE);
    assert.deepEqual([base.warnings, base.p.safetyChecker, base.p.requiresSafetyChecker], [[], null, false]);
  });

  test('the constructor: requires defaults to true; a checker without a feature extractor is refused', () => {
    const { safetyChecker: _c, featureExtractor: _f, requiresSafetyChecker: _r, ...core } = pipe.components;
    const warnings: string[] = [];
    const none = new StableDiffusionControlNetXSPipeline(core, { warn: (m) => warnings.push(m) });
    assert.deepEqual(result(none), (behaviour('init_none_default') as unknown as { result: unknown }).result);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, W1);
    assert.match(warnings[0]!, /https:\/\/github\.com\/huggingface\/diffusers\/pull\/254 \.$/);
    warnings.length = 0;
    const off = new StableDiffusionControlNetXSPipeline({ ...core, requiresSafetyChecker: false }, { warn: (m) => warnings.push(m) });
    assert.deepEqual(result(off), (behaviour('init_none_requires_false') as unknown as { result: unknown }).result);
    assert.deepEqual(warnings, []);
    assert.equal((behaviour('init_checker_without_feature_extractor') as unknown as { error: { type: string } }).error.type, 'ValueError');
    assert.throws(
      () => new StableDiffusionControlNetXSPipeline({ ...core, safetyChecker: pipe.safetyChecker, featureExtractor: null }),
      (e: Error) => e instanceof InputError && /^Make sure to define a feature extractor when loading StableDiffusionControlNetXSPipeline if you want to use the safety checker/.test(e.message),
    );
  });

  test('a safety-checker folder without a feature extractor is a ConfigError, before the checker is opened', async () => {
    const index = JSON.parse(readFileSync(join(S, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    const undeclared = overlay({ ...index, feature_extractor: [null, null] }, ['safety_checker']);
    await assert.rejects(load(undeclared), (e: Error) => e instanceof ConfigError && /declares safety_checker StableDiffusionSafetyChecker but model_index\.json has no feature_extractor/.test(e.message));
    const missing = overlay(index, ['safety_checker']);
    await assert.rejects(load(missing), (e: Error) => e instanceof ConfigError && /feature_extractor: no preprocessor_config\.json/.test(e.message));
    const wrongClass = overlay({ ...index, safety_checker: ['stable_diffusion', 'FlaxStableDiffusionSafetyChecker'] });
    await assert.rejects(load(wrongClass), (e: Error) => e instanceof ConfigError && /safety_checker class "FlaxStableDiffusionSafetyChecker" is not supported/.test(e.message));
    // …and both are fine once the checker is turned off
    expect('from_pretrained_folder_checker_none_requires_false', await load(missing, { safetyChecker: null, requiresSafetyChecker: false, featureExtractor: pipe.featureExtractor }));
  });
});

test('from the Hub: safetyChecker: null does not download safety_checker/ (feature_extractor/ still comes)', { timeout: 60_000 }, async () => {
  const repo = tempDir('cnxs-sc-repo-');
  for (const p of ['unet', 'controlnet', 'vae', 'text_encoder', 'tokenizer', 'scheduler']) cpSync(join(BASE, p), join(repo, p), { recursive: true });
  for (const p of ['safety_checker', 'feature_extractor', 'model_index.json']) cpSync(join(S, p), join(repo, p), { recursive: true });
  const hub = await startHub(repo);
  try {
    const files: string[] = [];
    const common = { endpoint: hub.endpoint, token: false as const, onDownloadProgress: (p: { file: string }) => void files.push(p.file) };
    const off = await StableDiffusionControlNetXSPipeline.fromPretrained('org/tiny-pipe', { ...common, cacheDir: join(tempDir('cnxs-sc-cache-'), 'hub'), safetyChecker: null, requiresSafetyChecker: false, warn: () => {} });
    assert.equal(off.safetyChecker, null);
    assert.ok(files.includes('feature_extractor/preprocessor_config.json'), files.join(', '));
    assert.equal(files.some((f) => f.startsWith('safety_checker/')), false, files.join(', '));
    files.length = 0;
    const on = await StableDiffusionControlNetXSPipeline.fromPretrained('org/tiny-pipe', { ...common, cacheDir: join(tempDir('cnxs-sc-cache-'), 'hub'), warn: () => {} });
    assert.ok(on.safetyChecker instanceof StableDiffusionSafetyChecker);
    assert.ok(files.includes('safety_checker/model.safetensors'), files.join(', '));
  } finally {
    await hub.stop();
  }
});

test('cnxs generate runs the checker: the flagged image written black, named on stderr and in --json; --no-safety-checker skips it', async () => {
  const dir = tempDir('cnxs-sc-cli-');
  const cacheHome = tempDir('cnxs-sc-cli-cache-');
  // seed 7, one image: the reference's first image (its generator draws that image's latents first), which is flagged
  const cli = (out: string, ...extra: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'generate', '--model', FOLDER, '--controlnet', join(BASE, 'controlnet'),
      '--control', join(BASE, 'pipeline', 'control.png'), '--prompt', 'a photo of a bird', '--steps', '4', '--seed', '7', '--out', join(dir, out), '--json', ...extra],
    { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: cacheHome } });
  const on = cli('on.png');
  assert.equal(on.status, 0, on.stderr);
  assert.equal((JSON.parse(on.stdout) as { nsfwContentDetected: boolean[] | null }).nsfwContentDetected?.[0], true, on.stdout);
  const lines = on.stderr.split('\n').filter(Boolean);
  assert.deepEqual(lines, [`cnxs: warning: the safety checker flagged ${join(dir, 'on.png')} as potential NSFW content: written black, as diffusers returns them (--no-safety-checker skips the checker)`]);
  const black = await loadImage(join(dir, 'on.png'));
  assert.ok(black.data.every((v) => v === 0));

  const off = cli('off.png', '--no-safety-checker');
  assert.equal(off.status, 0, off.stderr);
  assert.equal((JSON.parse(off.stdout) as { nsfwContentDetected: null }).nsfwContentDetected, null);
  assert.match(off.stderr, /^cnxs: warning: You have disabled the safety checker for StableDiffusionControlNetXSPipeline/);
  assert.equal(off.stderr.trim().split('\n').length, 1, off.stderr);
  // unfiltered: diffusers' decoded image 0 as the checker saw it, HWC in [0, 255] (within one rounding step)
  const image = (await loadImage(join(dir, 'off.png'))).data;
  const decoded = read(scOn.tensors['safety_checker.images_in']!).data as Float32Array;
  const plane = 64 * 64;
  let worst = 0;
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const want = Math.min(1, Math.max(0, decoded[ch * plane + i]! / 2 + 0.5)) * 255;
      worst = Math.max(worst, Math.abs(image[i * 3 + ch]! - want));
    }
  }
  assert.ok(worst <= 0.5 + 1e-2, `pixel off by ${worst}`);
});
