/**
 * The browser build in Debian's Chromium (headless, playwright-core): the page imports
 * dist-like output of scripts/build-web.mjs over HTTP and runs the tiny SD pipeline on
 * onnxruntime-web's wasm backend; its image equals the Node run of the same settings within the
 * pipeline tests' fp32 tolerance. Then: a second load with the model routes switched off comes
 * from Cache Storage; a download cut halfway is a DownloadError and leaves no cache entry. WebGPU
 * (SwiftShader, the adapter Chromium has without a GPU): the same pipeline within 1.4× that
 * tolerance, and the onnxruntime-web Split bug the WebGPU trace works around, still there. Those
 * are skipped, saying why, only where Chromium offers no WebGPU adapter at all (a failure instead
 * with CNXS_REQUIRE_WEBGPU=1, as in CI).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { Generator } from '../src/random/index.js';
import { GraphBuilder, traceDefaultsFor } from '../src/graph/builder.js';
import { OnnxDataType, type ModelProto } from '../src/graph/onnx-proto.js';
import { allNodes, assertClose, fixture, tempDir } from './helpers.js';
import { launchChromium, startStaticServer, WEBGPU_ARGS, type StaticServer } from './web-helpers.js';
// @ts-expect-error: a plain ES module without types (the build script the lead's `npm run build` calls)
import { buildWeb } from '../scripts/build-web.mjs';

const MODEL = fixture('tiny-sd-cnxs');
const SETTINGS = { prompt: 'a red house by the sea', numInferenceSteps: 2, seed: 1234, width: 64, height: 64 };

/** What a page run gives back: the float output ('np', [1, H, W, 3] values in [0, 1]) and, when asked, images[0]. */
interface PageRun {
  np: number[];
  npDims: number[];
  image?: { width: number; height: number; data: number[] };
  fallbacks: string[];
}

/**
 * What the page runs: the contract, with `device` and the model's URL as arguments; `pil` adds a
 * second run for images[0] (the default output). Plain JavaScript text, so the test's own TypeScript
 * transform adds no helpers the page lacks.
 */
const PAGE_RUN = `async ({ s, device, pil }) => {
  const m = await import('/web/index.js');
  const base = location.origin + '/model';
  const fallbacks = [];
  const controlnet = await m.ControlNetXSAdapter.fromPretrained(base + '/controlnet');
  const runtime = { onDeviceFallback: (f) => void fallbacks.push(f.model + ': ' + f.requested + ': ' + f.reason) };
  const pipe = await m.StableDiffusionControlNetXSPipeline.fromPretrained(base, { controlnet, device, runtime });
  const args = { prompt: s.prompt, image: '/model/pipeline/control.png', numInferenceSteps: s.numInferenceSteps, width: s.width, height: s.height };
  const np = await pipe.run({ ...args, generator: new m.Generator().manualSeed(s.seed), outputType: 'np' });
  const run = { np: Array.from(np.images.data), npDims: [...np.images.dims], fallbacks };
  if (!pil) return run;
  const img = (await pipe.run({ ...args, generator: new m.Generator().manualSeed(s.seed) })).images[0];
  return { ...run, image: { width: img.width, height: img.height, data: Array.from(img.data) } };
}`;

async function runInPage(page: Page, device: 'wasm' | 'webgpu', o: { pil: boolean }): Promise<PageRun> {
  return page.evaluate(`(${PAGE_RUN})(${JSON.stringify({ s: SETTINGS, device, pil: o.pil })})`) as Promise<PageRun>;
}

let server: StaticServer;
let node: { data: Uint8Array; np: Float32Array; npDims: readonly number[]; width: number; height: number };
const out = tempDir('cnxs-web-');

before(async () => {
  await buildWeb(join(out, 'web'));
  server = await startStaticServer({ '/web': join(out, 'web'), '/model': MODEL });
  const controlnet = await ControlNetXSAdapter.fromPretrained(join(MODEL, 'controlnet'));
  const pipe = await StableDiffusionControlNetXSPipeline.fromPretrained(MODEL, { controlnet });
  const args = { prompt: SETTINGS.prompt, image: join(MODEL, 'pipeline', 'control.png'), numInferenceSteps: SETTINGS.numInferenceSteps, width: SETTINGS.width, height: SETTINGS.height };
  const pil = await pipe.run({ ...args, generator: new Generator().manualSeed(SETTINGS.seed) });
  const np = await pipe.run({ ...args, generator: new Generator().manualSeed(SETTINGS.seed), outputType: 'np' });
  const img = pil.images[0]!;
  node = { data: img.data, width: img.width, height: img.height, np: np.images.data as Float32Array, npDims: np.images.dims };
});

after(async () => {
  await server?.close();
});

describe('the tiny SD pipeline in Chromium (wasm)', () => {
  const profile = 'cnxs-chromium-';
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  before(async () => {
    browser = await launchChromium(profile);
  });
  after(async () => {
    await browser?.close();
  });

  test('images[0] is an RGBImage with the Node run\'s pixels', async () => {
    const page = await browser.context.newPage();
    await page.goto(server.url + '/');
    const got = await runInPage(page, 'wasm', { pil: true });
    assert.deepEqual(got.fallbacks, []);
    assert.ok(got.image);
    assert.equal(got.image.width, node.width);
    assert.equal(got.image.height, node.height);
    // Float output within the pipeline tests' image tolerance (1e-4: fp32 kernels of another build, wasm SIMD vs
    // native x86, sum in another order); the bytes then differ by at most one step where a value sits at a rounding edge.
    const maxFloat = floatDifference(got);
    const { maxByte, differing } = byteDifferences(got.image.data);
    console.log(`wasm vs Node: float max |diff| ${maxFloat.toExponential(2)}, bytes max |diff| ${maxByte}, ${differing} of ${node.data.length} bytes differ`);
    assert.ok(maxFloat <= 1e-4, `np images differ by ${maxFloat}`);
    assert.ok(maxByte <= 1, `RGB bytes differ by up to ${maxByte}`);
    await page.close();
  });

  test('a second visit loads from Cache Storage with the model routes switched off', async () => {
    server.enabled.set('/model', false);
    try {
      const page = await browser.context.newPage();
      await page.goto(server.url + '/');
      const before = server.log.length;
      const got = (await page.evaluate(`(async (s) => {
        const m = await import('/web/index.js');
        const base = location.origin + '/model';
        const controlnet = await m.ControlNetXSAdapter.fromPretrained(base + '/controlnet');
        const pipe = await m.StableDiffusionControlNetXSPipeline.fromPretrained(base, { controlnet, device: 'wasm' });
        const image = new m.RGBImage(64, 64, new Uint8Array(64 * 64 * 3).fill(200));
        const { images } = await pipe.run({ prompt: s.prompt, image, numInferenceSteps: 1, generator: new m.Generator().manualSeed(s.seed), width: 64, height: 64 });
        return { w: images[0].width };
      })(${JSON.stringify(SETTINGS)})`)) as { w: number };
      assert.equal(got.w, 64);
      const modelHits = server.log.slice(before).filter((p) => p.startsWith('/model/'));
      assert.deepEqual(modelHits, [], 'no model file was requested');
      await page.close();
    } finally {
      server.enabled.set('/model', true);
    }
  });

  test('a download cut halfway is a DownloadError naming the file, and nothing is cached', async () => {
    const path = '/model/unet/diffusion_pytorch_model.fp16.safetensors';
    const { statSync } = await import('node:fs');
    const size = statSync(join(MODEL, 'unet', 'diffusion_pytorch_model.fp16.safetensors')).size;
    server.cutAfter.set(path, Math.floor(size / 2));
    try {
      const page = await browser.context.newPage();
      await page.goto(server.url + '/');
      const got = (await page.evaluate(`(async (p) => {
        const m = await import('/web/index.js');
        let error = { name: '', message: '' };
        try {
          // loading reads the header only (Range requests); the session reads the whole file
          const unet = await m.UNet2DConditionModel.fromPretrained(location.origin + '/model', { subfolder: 'unet', variant: 'fp16' });
          await unet.prepare();
        } catch (e) {
          error = { name: e.name, message: e.message };
        }
        const cache = await caches.open(m.FILE_CACHE);
        return { error, cached: (await cache.match(location.origin + p)) !== undefined };
      })(${JSON.stringify(path)})`)) as { error: { name: string; message: string }; cached: boolean };
      assert.equal(got.error.name, 'DownloadError', got.error.message);
      assert.match(got.error.message, /diffusion_pytorch_model\.fp16\.safetensors: download failed after \d+ of \d+ bytes/);
      assert.equal(got.cached, false);
      await page.close();
    } finally {
      server.cutAfter.delete(path);
    }
  });
});

test('the fused UNet traced for WebGPU has no Split node (the CPU trace has its GEGLU Splits)', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(join(MODEL, 'unet'));
  const fused = await UNetControlNetXSModel.fromUnet(unet, await ControlNetXSAdapter.fromPretrained(join(MODEL, 'controlnet')));
  const splits = (providers: string[]) => allNodes(fused.toOnnx(fused.traceOptions(providers)).graph).filter((n) => n.opType === 'Split').length;
  assert.equal(splits(['webgpu', 'cpu']), 0);
  assert.ok(splits(['cpu']) > 0);
});

/** The largest difference of a page run's float output from the Node run's (same dims). */
function floatDifference(got: PageRun): number {
  assert.deepEqual(got.npDims, node.npDims);
  let max = 0;
  got.np.forEach((v, i) => (max = Math.max(max, Math.abs(v - node.np[i]!))));
  return max;
}

/** How far, and in how many bytes, a page's images[0] differs from the Node run's. */
function byteDifferences(data: readonly number[]): { maxByte: number; differing: number } {
  assert.equal(data.length, node.data.length);
  let maxByte = 0;
  let differing = 0;
  data.forEach((v, i) => {
    const d = Math.abs(v - node.data[i]!);
    maxByte = Math.max(maxByte, d);
    if (d > 0) differing++;
  });
  return { maxByte, differing };
}

/**
 * The feed-forward's GEGLU and output Linear as the UNet traces them ([2, 64, 128] → halves → h·GELU(gate)
 * → MatMul [64, 16]), with the weight as a graph input: `TraceOptions.split` decides how the halves are cut.
 */
function gegluModel(split: 'split' | 'slice'): ModelProto {
  const b = GraphBuilder.create(null, { ...traceDefaultsFor(['webgpu']), split });
  const x = b.input('x', OnnxDataType.FLOAT, ['B', 'L', 128]);
  const w = b.input('w', OnnxDataType.FLOAT, [64, 16]);
  const [h, gate] = b.chunk(x, { axis: -1, sizes: [64, 64] }); // [B, L, 128] → 2 × [B, L, 64]
  b.output(b.matMul(b.mul(h!, b.gelu(gate!, { approximate: 'none' })), w), 'y'); // [B, L, 16]
  return b.toModel(`geglu_${split}`);
}

/** A model as page.evaluate's JSON can carry it (initializer bytes as arrays). */
function forPage(m: ModelProto): unknown {
  const initializers = m.graph.initializers.map((t) => ({ ...t, raw: Array.from(t.raw ?? []) }));
  return { ...m, graph: { ...m.graph, initializers } };
}

/** Each model run through the bundle's ModelSession on 'webgpu' and on 'wasm': its output, or the error's message. */
const PAGE_GEGLU = `async ({ models, x, w }) => {
  const m = await import('/web/index.js');
  const out = {};
  for (const model of models) {
    const proto = { ...model, graph: { ...model.graph, initializers: model.graph.initializers.map((t) => ({ ...t, raw: Uint8Array.from(t.raw) })) } };
    for (const ep of ['webgpu', 'wasm']) {
      const fallbacks = [];
      try {
        const s = await m.ModelSession.create(proto, { executionProviders: [ep], onDeviceFallback: (f) => void fallbacks.push(f.reason) });
        const { y } = await s.run({ x: new m.Tensor('float32', Float32Array.from(x), [2, 64, 128]), w: new m.Tensor('float32', Float32Array.from(w), [64, 16]) });
        await s.release();
        out[model.graph.name + ' ' + ep] = { dims: [...y.dims], data: Array.from(y.data), fallbacks };
      } catch (e) {
        out[model.graph.name + ' ' + ep] = { error: String(e.message), fallbacks };
      }
    }
  }
  return out;
}`;

type GegluRun = { dims: number[]; data: number[]; fallbacks: string[] } | { error: string; fallbacks: string[] };

/**
 * What Chromium's WebGPU offers the page: the adapter's names (Chromium hides some without
 * --enable-webgpu-developer-features) and whether it has shader-f16, or 'none: why'.
 */
const PAGE_ADAPTER = `(async () => {
  if (navigator.gpu === undefined) return 'none: navigator.gpu is undefined';
  const a = await navigator.gpu.requestAdapter();
  if (a === null) return 'none: requestAdapter() gave null';
  const names = [a.info.vendor, a.info.architecture, a.info.description].filter(Boolean).join(' ') || 'unnamed adapter';
  return names + (a.info.isFallbackAdapter ? ', fallback' : '') + (a.features.has('shader-f16') ? ', shader-f16' : ', no shader-f16');
})()`;

describe('the tiny SD pipeline in Chromium (WebGPU)', () => {
  const profile = 'cnxs-chromium-gpu-';
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  /** The adapter, or 'none: why' (then each test is skipped, saying so). */
  let adapter = 'none: not asked';
  before(async () => {
    // CNXS_WEBGPU_CHROMIUM_ARGS (space-separated) replaces the flags, to try another adapter (see docs/onnxruntime-measurements.md).
    const flags = process.env['CNXS_WEBGPU_CHROMIUM_ARGS']?.split(' ').filter(Boolean) ?? WEBGPU_ARGS;
    browser = await launchChromium(profile, flags, { withoutDisableGpu: true });
    page = await browser.context.newPage();
    await page.goto(server.url + '/');
    adapter = (await page.evaluate(PAGE_ADAPTER)) as string;
    if (adapter.startsWith('none')) console.log(`WebGPU tests skipped: Chromium offers no adapter (${adapter})`);
  });
  after(async () => {
    await browser?.close();
  });
  /** Skip `t` when Chromium offers no adapter, saying so — a failure instead under CNXS_REQUIRE_WEBGPU=1 (CI). */
  const noAdapter = (t: TestContext): boolean => {
    if (!adapter.startsWith('none')) return false;
    assert.ok(process.env['CNXS_REQUIRE_WEBGPU'] !== '1', `CNXS_REQUIRE_WEBGPU=1 but Chromium offers no WebGPU adapter (${adapter})`);
    t.skip(`no WebGPU adapter (${adapter})`);
    return true;
  };

  test("onnxruntime-web's WebGPU Split gives empty parts; the WebGPU trace's Slices do not", async (t) => {
    if (noAdapter(t)) return;
    const x = Array.from({ length: 2 * 64 * 128 }, (_, i) => Math.cos(i * 0.11));
    const w = Array.from({ length: 64 * 16 }, (_, i) => Math.sin(i * 0.37) / 8);
    const models = [gegluModel('slice'), gegluModel('split')].map(forPage);
    const got = (await page.evaluate(`(${PAGE_GEGLU})(${JSON.stringify({ models, x, w })})`)) as Record<string, GegluRun>;
    // Expected independently: h·GELU(gate)·W in float64 (GELU through erf's Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
    const want = new Float64Array(2 * 64 * 16);
    for (let r = 0; r < 2 * 64; r++) {
      for (let o = 0; o < 16; o++) {
        let acc = 0;
        for (let k = 0; k < 64; k++) acc += x[r * 128 + k]! * gelu(x[r * 128 + 64 + k]!) * w[k * 16 + o]!;
        want[r * 16 + o] = acc;
      }
    }
    for (const key of ['geglu_slice webgpu', 'geglu_slice wasm', 'geglu_split wasm']) {
      const run = got[key]!;
      assert.ok('data' in run, `${key}: ${'error' in run ? run.error : ''}`);
      assert.deepEqual(run.fallbacks, [], `${key} ran where it was asked to`);
      assert.deepEqual(run.dims, [2, 64, 16], key);
      assertClose({ data: Float32Array.from(run.data), dims: run.dims }, { data: Float32Array.from(want), dims: [2, 64, 16] }, 1e-5, key);
    }
    // The bug the WebGPU trace avoids (onnxruntime-web 1.30's JSEP Split, see TraceOptions.split): when this passes
    // no more, onnxruntime-web has fixed it and `split: 'slice'` can leave traceDefaultsFor.
    const split = got['geglu_split webgpu']!;
    assert.ok('error' in split, "onnxruntime-web's WebGPU Split now cuts along axis -1: drop the Slice workaround");
    assert.match(split.error, /MatMul.*shared dimension does not match/);
  });

  test("the image matches the Node run's within 1.4× the wasm tolerance", async (t) => {
    if (noAdapter(t)) return;
    const started = Date.now();
    // One run (float output): images[0] is the same postprocessing, checked on wasm; SwiftShader takes ~10 s a run.
    const got = await runInPage(page, 'webgpu', { pil: false });
    assert.deepEqual(got.fallbacks, [], 'every model ran on WebGPU');
    const maxFloat = floatDifference(got);
    console.log(`WebGPU (${adapter}) vs Node: float max |diff| ${maxFloat.toExponential(2)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    // The README's GPU rule: pipeline images within 1.4× the CPU tolerance (here wasm's 1e-4 on [0, 1] floats).
    assert.ok(maxFloat <= 1.4e-4, `np images differ by ${maxFloat}`);
  });
});

/** GELU (exact form) in float64: x·Φ(x), erf by Abramowitz–Stegun 7.1.26. */
function gelu(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = Math.sign(x) * (1 - poly * Math.exp(-z * z));
  return 0.5 * x * (1 + erf);
}
