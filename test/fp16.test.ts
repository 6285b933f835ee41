/**
 * float16 graphs on WebGPU (onnxruntime-node's 'webgpu' provider; in CI Mesa's llvmpipe, whose adapter
 * exposes `shader-f16`) against the float32 diffusers 0.33.1 / transformers 4.44 references of the tiny
 * SD and SDXL checkpoints: the fused UNet + ControlNet-XS (also with a LoRA as branches and fused, and
 * FreeU), the plain UNet (also with upcast_attention), the VAE decoder, TAESD, the text encoders, every
 * SD and SDXL pipeline case, and overflow detection.
 *
 * Tolerances, derived:
 * - Models: max |ours − reference| ≤ 32·u·max|reference|, u = 2⁻¹¹ the float16 unit roundoff (1.6 % of
 *   the output's range). Each float16 stage (a conv/matmul output, a norm, an activation, a residual
 *   add) rounds with relative error ≤ u; the tiny UNet's longest path has about 100 such stages, whose
 *   independent errors add like a random walk (√100 = 10·u), and GroupNorm / LayerNorm outputs of
 *   unit scale feed values up to ~3× larger downstream: ~32·u. Measured on llvmpipe: 7–15·u
 *   (UNet 1.3–1.6e-2 at |x| ≤ 2.7, VAE 3.1e-2 at 4.2, text encoders ≤ 1.8e-2 at 6.1), while the same
 *   graphs traced in float32 on the same adapter are within 4.3e-5 — so everything above that is
 *   float16 rounding, and a real fault (a wrong upcast, a −∞ mask, a layout slip) is O(0.1–1).
 * - Pipelines: the images' PSNR ≥ 40 dB against diffusers' float32 images (values in [0, 1]; the bar
 *   apple/ml-stable-diffusion uses for float16 against float32). Per-step latents are not compared
 *   element-wise: guidance multiplies the UNet's float16 error by up to 1 + 2·guidance_scale each step,
 *   so the bound grows too fast to catch anything the images do not (measured: 44.4–63.6 dB, 31 cases).
 *   Cases with `output_type: 'latent'` decode both latents with the float32 VAE on the CPU (itself within
 *   1e-4 of diffusers: autoencoder-kl.test.ts) and compare those images the same way.
 *
 * Without a WebGPU adapter the suite is skipped with the reason printed; with CNXS_REQUIRE_WEBGPU=1
 * (CI, where Mesa is installed) that is a failure instead. Any other failure to open the probe session
 * fails, so a broken provider never reads as "no adapter".
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { AutoencoderTiny } from '../src/models/autoencoder-tiny.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text-model.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { NonFiniteOutputError } from '../src/models/non-finite.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import type { DeviceFallback } from '../src/runtime/device-fallback.js';
import { ModelSession } from '../src/runtime/session.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor, type TensorLike } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture, maxAbsDiff, oneNodeModel, tempDir, unetCaseArgs } from './helpers.js';
import { loraModelLayers, readLoraFile } from '../src/models/lora-file.js';
import { parsePythonJson } from '../src/util/json.js';
import { callArgs, readCases, type PipelineCase } from './pipeline-cases.js';
import { tinySdReference, type TinySdCase } from './tiny-sd-reference.js';

const U = 2 ** -11;
const quiet = { warn: () => {} };
const GPU = { runtime: { executionProviders: ['webgpu'] }, dtype: 'float16' as const, ...quiet };

// Mesa's Vulkan drivers want a runtime folder; a test process may not have one.
process.env['XDG_RUNTIME_DIR'] ??= tempDir('cnxs-xdg-');

/** Why WebGPU cannot run here (the suite is skipped), or null when it can. */
async function webgpuUnavailable(): Promise<string | null> {
  const seen: DeviceFallback[] = [];
  const s = await ModelSession.create(oneNodeModel({ name: 'webgpu-probe', opType: 'Relu', shape: [2] }), {
    executionProviders: ['webgpu'],
    onDeviceFallback: (f) => seen.push(f),
  });
  await s.release();
  const f = seen[0];
  if (f === undefined) return null;
  const noAdapter = f.kind === 'not-in-build' || /adapter/i.test(`${f.reason} ${f.detail}`);
  assert.ok(noAdapter, `WebGPU failed to start for another reason than a missing adapter: ${f.reason} (${f.detail})`);
  return `no WebGPU here: ${f.reason}`;
}

const unavailable = await webgpuUnavailable();
if (unavailable !== null) {
  assert.ok(process.env['CNXS_REQUIRE_WEBGPU'] !== '1', `CNXS_REQUIRE_WEBGPU=1 but ${unavailable}`);
  console.log(`# fp16.test.ts skipped: ${unavailable} (install Mesa ≥ 25 Vulkan drivers; see .ci/run)`);
}
const skip = unavailable ?? false;

function maxAbs(t: TensorLike): number {
  let m = 0;
  for (const v of t.data as Float32Array) m = Math.max(m, Math.abs(v));
  return m;
}
function assertHalfClose(got: TensorLike, want: TensorLike, what: string): void {
  const tol = 32 * U * maxAbs(want);
  const d = maxAbsDiff(got, want);
  assert.ok(d <= tol, `${what}: max abs diff ${d.toExponential(3)} > 32·u·max|ref| = ${tol.toExponential(3)}`);
}
/** PSNR in dB of images in [0, 1]. */
function psnr(got: TensorLike, want: TensorLike): number {
  assert.deepEqual([...got.dims], [...want.dims]);
  const a = got.data as Float32Array, b = want.data as Float32Array;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return 10 * Math.log10(a.length / s);
}

describe('float16 models on WebGPU equal the float32 references', { skip }, () => {
  const ref = tinySdReference();
  const { dir: D, cases, input, unetArgs, cnxsArgs } = ref;
  let unet: UNet2DConditionModel;
  let fused: UNetControlNetXSModel;
  let folder: UNetControlNetXSModel;
  before(async () => {
    unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`, GPU);
    fused = await UNetControlNetXSModel.fromUnet(unet, await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`, { dtype: 'float16' }), unet.runtimeSettings);
    folder = await UNetControlNetXSModel.fromPretrained(`${D}/unet_controlnet_xs`, GPU);
  });
  after(async () => {
    await Promise.all([unet?.release(), fused?.release(), folder?.release()]);
  });

  test('UNetControlNetXSModel: every forward case (fromUnet and the saved fused folder)', async () => {
    assert.equal(await fused.executionProvider(), 'webgpu');
    for (const c of cases.filter((c) => c.kind === 'unet_cnxs_forward')) {
      const m = c.model_folders[0] === 'unet_controlnet_xs' ? folder : fused;
      const { sample } = await m.forward(cnxsArgs(c));
      assertHalfClose(sample, ref.read(c.outputs['sample']!), c.name);
    }
  });

  test('UNet2DConditionModel, also with upcast_attention (a float32 no-op: the same reference)', async () => {
    const upcast = UNet2DConditionModel.fromSource({ ...unet.config, upcastAttention: true }, unet.source, GPU);
    try {
      for (const c of cases.filter((c) => c.kind === 'unet_base_forward')) {
        for (const m of [unet, upcast]) {
          const { sample } = await m.forward(unetArgs(c));
          assertHalfClose(sample, ref.read(c.outputs['sample']!), `${c.name}${m === upcast ? ' (upcast_attention)' : ''}`);
        }
      }
    } finally {
      await upcast.release();
    }
  });

  test('AutoencoderKL decode, from float32 and from float16 (variant fp16) weights', async () => {
    const c = cases.find((c) => c.kind === 'vae_decode')!;
    for (const variant of [undefined, 'fp16']) {
      const vae = await AutoencoderKL.fromPretrained(`${D}/vae`, { ...GPU, ...(variant ? { variant } : {}) });
      try {
        if (variant) {
          // float16 weights stay float16: no Cast reads them
          const g = vae.decoderOnnx().graph;
          const stored = g.initializers.filter((t) => t.external !== undefined);
          assert.ok(stored.length > 0 && stored.every((t) => t.dataType === OnnxDataType.FLOAT16));
          assert.ok(!g.nodes.some((n) => n.opType === 'Cast' && stored.some((t) => n.inputs[0] === t.name)));
        }
        const { sample } = await vae.decode(input(c, 'latents'));
        assertHalfClose(sample, ref.read(c.outputs['sample']!), `vae_decode${variant ? ' (fp16 weights)' : ''}`);
      } finally {
        await vae.release();
      }
    }
  });

  test('AutoencoderTiny (TAESD) decode and encode, every case', async () => {
    const T = fixture('taesd');
    const tref = loadSafetensorsSync(join(T, 'tensors.safetensors'));
    const tcases: TinySdCase[] = JSON.parse(readFileSync(join(T, 'cases.json'), 'utf8'));
    const taesd = await AutoencoderTiny.fromPretrained(join(T, 'tiny-taesd'), GPU);
    try {
      for (const c of tcases.filter((c) => c.kind === 'taesd_decode')) {
        assertHalfClose((await taesd.decode(tref.read(c.inputs['latents'] as string))).sample, tref.read(c.outputs['sample']!), c.name);
      }
      for (const c of tcases.filter((c) => c.kind === 'taesd_encode')) {
        assertHalfClose((await taesd.encode(tref.read(c.inputs['image'] as string))).latents, tref.read(c.outputs['latents']!), c.name);
      }
    } finally {
      await taesd.release();
    }
  });

  test('CLIPTextModel and CLIPTextModelWithProjection (SD and SDXL encoders, every output)', async () => {
    for (const p of ['tiny-sd-cnxs', 'tiny-sdxl-cnxs']) {
      const dir = fixture(p, 'reference-text');
      const r = loadSafetensorsSync(join(dir, 'tensors.safetensors'));
      const textCases: { class: string; folder: string; inputs: { input_ids: string }; outputs: Record<string, string> }[] = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
      for (const c of textCases) {
        const path = fixture(p, c.folder);
        const m = c.class === 'CLIPTextModel' ? await CLIPTextModel.fromPretrained(path, GPU) : await CLIPTextModelWithProjection.fromPretrained(path, GPU);
        try {
          const out = await m.forward(r.read(c.inputs.input_ids), { outputHiddenStates: true });
          const named: Record<string, Tensor | undefined> = {
            last_hidden_state: out.lastHiddenState,
            pooler_output: 'poolerOutput' in out ? out.poolerOutput : undefined,
            text_embeds: 'textEmbeds' in out ? out.textEmbeds : undefined,
          };
          for (const [name, key] of Object.entries(c.outputs)) {
            const got = name.startsWith('hidden_states.') ? out.hiddenStates?.[Number(name.slice('hidden_states.'.length))] : named[name];
            assert.ok(got, `${p} ${c.folder}: no output ${name}`);
            assertHalfClose(got, r.read(key), `${p} ${c.folder} ${name}`);
          }
        } finally {
          await m.release();
        }
      }
    }
  });

  test('LoRA branches with FreeU, and LoRA fused into the weights (merged in float32), on the float16 fused UNet', async () => {
    const A = fixture('adapters', 'lora');
    interface LoraCase { name: string; recipe: { lora: { adapters: { path: string; weight_name: string; adapter_name: string }[]; scale: number }; freeu?: [number, number, number, number] }; inputs: Record<string, unknown>; outputs: Record<string, string> }
    const lcases = parsePythonJson(readFileSync(join(A, 'cases.json'), 'utf8')) as LoraCase[];
    const lref = loadSafetensorsSync(join(A, 'tensors.safetensors'));
    const c = lcases.find((x) => x.name === 'unet_cnxs.sd.freeu+lora_a.s1')!;
    const a = c.recipe.lora.adapters[0]!;
    const layers = loraModelLayers(readLoraFile(join(A, a.path.replace(/^lora\/?/, ''), a.weight_name), { layersPerBlock: 2 }), 'unet', { fused: true });
    const [s1, s2, b1, b2] = c.recipe.freeu!;
    const want = lref.read(c.outputs['sample']!);
    try {
      fused.setLoraAdapter(a.adapter_name, layers, c.recipe.lora.scale);
      fused.enableFreeu({ s1, s2, b1, b2 });
      assertHalfClose((await fused.forward(unetCaseArgs(c.inputs, (k) => lref.read(k)))).sample, want, `${c.name} (branches)`);
      fused.fuseLoraAdapters(new Map([[a.adapter_name, c.recipe.lora.scale]]));
      assertHalfClose((await fused.forward(unetCaseArgs(c.inputs, (k) => lref.read(k)))).sample, want, `${c.name} (fused into the weights)`);
    } finally {
      fused.disableFreeu();
      fused.unfuseLora();
      fused.deleteLoraAdapter(a.adapter_name);
    }
  });

  test('a float16 overflow is a NonFiniteOutputError naming the model and output, not NaN latents', async () => {
    const c = cases.find((c) => c.kind === 'unet_cnxs_forward')!;
    const x = input(c, 'sample');
    const huge = new Tensor('float32', (x.data as Float32Array).map((v) => v * 1e6), x.dims); // finite in float32, ±Infinity in float16
    await assert.rejects(
      fused.forward({ ...cnxsArgs(c), sample: huge }),
      (e: unknown) => e instanceof NonFiniteOutputError && e.detail.model === 'UNetControlNetXSModel' && e.detail.output === 'out_sample' && /float16 overflow/.test(e.message),
    );
  });
});

/** Every pipeline case in float16 on WebGPU: images at PSNR ≥ 40 dB against diffusers' float32 images. */
function pipelineCases<P extends StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline>(
  name: string,
  load: (dir: string, o: typeof GPU & { controlnet: ControlNetXSAdapter }) => Promise<P>,
  withScheduler: (p: P, c: PipelineCase) => P,
): void {
  describe(`${name} pipeline in float16 on WebGPU`, { skip }, () => {
    const D = fixture(name);
    const P = join(D, 'pipeline');
    const { cases, read } = readCases(P);
    let pipe: P;
    let decoder: AutoencoderKL; // float32 on the CPU, for the latent-output cases
    before(async () => {
      pipe = await load(D, { ...GPU, controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet')) });
      decoder = await AutoencoderKL.fromPretrained(join(D, 'vae'), quiet);
    });
    after(async () => {
      const c = pipe?.components;
      await Promise.all([c?.unet.release(), c?.vae.release(), decoder?.release(), pipe?.textEncoder.release(), 'textEncoder2' in (pipe ?? {}) ? (pipe as StableDiffusionXLControlNetXSPipeline).textEncoder2.release() : undefined]);
    });
    for (const c of cases) {
      test(c.name, async () => {
        const args = callArgs<Record<string, unknown>>(c, P, read);
        const out = await withScheduler(pipe, c).run({ ...args, outputType: c.call['output_type'] === 'latent' ? 'latent' : 'np' } as never);
        const images = out.images as unknown as Tensor<'float32'>;
        if (c.call['output_type'] === 'latent') {
          const scale = decoder.config.scalingFactor;
          const dec = async (l: TensorLike) => (await decoder.decode(new Tensor('float32', (l.data as Float32Array).map((v) => v / scale), l.dims))).sample;
          const [ours, theirs] = [await dec(images), await dec(read(c.tensors['latents_final']!))];
          const to01 = (t: Tensor<'float32'>) => new Tensor('float32', t.data.map((v) => Math.min(1, Math.max(0, v / 2 + 0.5))), t.dims);
          const db = psnr(to01(ours), to01(theirs));
          assert.ok(db >= 40, `${c.name}: decoded latents at ${db.toFixed(1)} dB < 40 dB`);
        } else {
          const db = psnr(images, read(c.tensors['images']!));
          assert.ok(db >= 40, `${c.name}: images at ${db.toFixed(1)} dB < 40 dB`);
        }
      });
    }

    test('an overflow names the denoising step', async () => {
      const c = cases[0]!;
      const args = callArgs(c, P, read) as { latents: Tensor<'float32'> };
      const latents = new Tensor('float32', args.latents.data.map((v) => v * 1e6), args.latents.dims);
      await assert.rejects(withScheduler(pipe, c).run({ ...args, latents } as never), (e: unknown) =>
        e instanceof NonFiniteOutputError && e.detail.step?.index === 0 && /at denoising step 0/.test(e.message));
    });
  });
}

pipelineCases(
  'tiny-sd-cnxs',
  (dir, o) => StableDiffusionControlNetXSPipeline.fromPretrained(dir, o),
  (p, c) => new StableDiffusionControlNetXSPipeline({ ...p.components, scheduler: schedulerFromConfig(c.scheduler.config) }),
);
pipelineCases(
  'tiny-sdxl-cnxs',
  (dir, o) => StableDiffusionXLControlNetXSPipeline.fromPretrained(dir, o),
  (p, c) => new StableDiffusionXLControlNetXSPipeline({ ...p.components, scheduler: schedulerFromConfig(c.scheduler.config) }),
);
