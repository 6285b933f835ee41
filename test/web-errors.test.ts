/**
 * The browser build's bad-input cases (issue 16), in Debian's Chromium (headless, playwright-core):
 *  - `device: 'webgpu'` in a browser without WebGPU: one DeviceFallback per model naming WebGPU, why and
 *    that wasm runs it (or the `warn` line), and the pipeline's image is the wasm image, bit for bit;
 *  - a model too large for the browser, refused before its weights are downloaded, from the safetensors
 *    header alone (the server holds only the header and declares the full size; a whole-file GET of it
 *    would get no body): a file over 2 GiB − 1, and on wasm more weights than the wasm32 budget;
 *  - float16 on a WebGPU adapter without shader-f16 (SwiftShader has none): a ConfigError before any
 *    weights file is downloaded.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { fixture, tempDir } from './helpers.js';
import { launchChromium, startStaticServer, WEBGPU_ARGS, type StaticServer } from './web-helpers.js';
// @ts-expect-error: a plain ES module without types
import { buildWeb } from '../scripts/build-web.mjs';

const MODEL = fixture('tiny-sd-cnxs');
const TEXT_ENCODER = join(MODEL, 'text_encoder');
const SETTINGS = { prompt: 'a red house by the sea', numInferenceSteps: 2, seed: 1234, width: 64, height: 64 };
/** One ArrayBuffer in Chromium, and the weights budget in wasm memory the README states (4 GiB − 1 GiB). */
const MAX_FILE = 2 ** 31 - 1;
const WASM_BUDGET = 3 * 2 ** 30;

interface Header {
  [name: string]: { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>;
}
const BYTES: Record<string, number> = { F32: 4, F16: 2 };

/**
 * The tiny text encoder with `vocab` tokens: config.json, and model.safetensors holding only its header
 * (offsets laid out for the full data section). Returns the file's full size and the header's tensors.
 */
function bigTextEncoder(dir: string, vocab: number, source: 'model.safetensors' | 'model.fp16.safetensors') {
  mkdirSync(dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(TEXT_ENCODER, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: vocab }));
  const file = readFileSync(join(TEXT_ENCODER, source));
  const header = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString('utf8')) as Header;
  const tensors: { name: string; dtype: string; shape: number[]; bytes: number }[] = [];
  let offset = 0;
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__' || !('dtype' in e)) continue;
    const t = e as { dtype: string; shape: number[] };
    const shape = name === 'text_model.embeddings.token_embedding.weight' ? [vocab, t.shape[1]!] : t.shape;
    const bytes = shape.reduce((a, d) => a * d, 1) * BYTES[t.dtype]!;
    header[name] = { dtype: t.dtype, shape, data_offsets: [offset, offset + bytes] };
    tensors.push({ name, dtype: t.dtype, shape, bytes });
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([len, json]));
  return { headerEnd: 8 + json.length, size: 8 + json.length + offset, tensors };
}

const out = tempDir('cnxs-web-errors-');
const big = join(out, 'big');
let server: StaticServer;
/** Over 2 GiB in one file: 17M tokens × 32 float32 = 2.18 GB. */
let tooBigFile: ReturnType<typeof bigTextEncoder>;
/** 1.6 GB of float16 (a file the browser can hand over) that wasm would hold twice: as stored and cast to float32. */
let tooBigForWasm: ReturnType<typeof bigTextEncoder>;

before(async () => {
  await buildWeb(join(out, 'web'));
  tooBigFile = bigTextEncoder(join(big, 'file'), 17_000_000, 'model.safetensors');
  tooBigForWasm = bigTextEncoder(join(big, 'wasm'), 25_000_000, 'model.fp16.safetensors');
  server = await startStaticServer({ '/web': join(out, 'web'), '/model': MODEL, '/plain': MODEL, '/big': big });
  server.declaredSize.set('/big/file/model.safetensors', tooBigFile.size);
  server.declaredSize.set('/big/wasm/model.safetensors', tooBigForWasm.size);
});

after(async () => {
  await server?.close();
});

/** Loads a text encoder by URL, opens its session, and gives back the error (name, message) or where it runs. */
const PAGE_PREPARE = `async ({ path, providers }) => {
  const m = await import('/web/index.js');
  const warnings = [];
  try {
    const model = await m.CLIPTextModel.fromPretrained(location.origin + path, { runtime: { executionProviders: providers, warn: (l) => void warnings.push(l) } });
    await model.prepare();
    return { running: await model.executionProvider(), warnings };
  } catch (e) {
    return { error: { name: e.name, message: e.message }, warnings };
  }
}`;
type Prepared = { running: string; warnings: string[] } | { error: { name: string; message: string }; warnings: string[] };

async function prepareInPage(page: Page, path: string, providers: string[]): Promise<Prepared> {
  return page.evaluate(`(${PAGE_PREPARE})(${JSON.stringify({ path, providers })})`) as Promise<Prepared>;
}

/** Requests of `path` since log entry `from`: each must be a Range request inside the file's header. */
function assertHeaderOnly(path: string, from: number, headerEnd: number): void {
  const hits = server.requests.slice(from).filter((r) => r.path === path);
  assert.ok(hits.length > 0, `${path} was not asked at all`);
  for (const r of hits) {
    assert.ok(r.range !== null, `${path} was requested whole`);
    const end = Number(/^bytes=\d+-(\d+)$/.exec(r.range)?.[1] ?? NaN);
    assert.ok(end < headerEnd, `${path}: ${r.range} reaches past the header (${headerEnd} bytes)`);
  }
}

const gb = (n: number) => (n / 1e9).toFixed(2);

describe('Chromium without WebGPU (--disable-gpu, no --enable-unsafe-webgpu)', () => {
  const profile = 'cnxs-chromium-nogpu-';
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  before(async () => {
    browser = await launchChromium(profile);
  });
  after(async () => {
    await browser?.close();
  });

  test("device 'webgpu' falls back to wasm, reported per model, and gives the wasm image", async () => {
    const page = await browser.context.newPage();
    await page.goto(server.url + '/');
    const got = (await page.evaluate(`(async (s) => {
      const m = await import('/web/index.js');
      const base = location.origin + '/model';
      const controlnet = await m.ControlNetXSAdapter.fromPretrained(base + '/controlnet');
      const args = { prompt: s.prompt, image: '/model/pipeline/control.png', numInferenceSteps: s.numInferenceSteps, width: s.width, height: s.height, outputType: 'np' };
      const out = {};
      for (const device of ['wasm', 'webgpu']) {
        const reports = [];
        const runtime = { onDeviceFallback: (f) => void reports.push(f) };
        const pipe = await m.StableDiffusionControlNetXSPipeline.fromPretrained(base, { controlnet, device, runtime });
        const { images } = await pipe.run({ ...args, generator: new m.Generator().manualSeed(s.seed) });
        out[device] = { data: Array.from(images.data), reports };
      }
      return out;
    })(${JSON.stringify(SETTINGS)})`)) as Record<'wasm' | 'webgpu', { data: number[]; reports: Record<string, string>[] }>;
    assert.deepEqual(got.wasm.reports, []);
    const models = got.webgpu.reports.map((r) => r['model']).sort();
    assert.deepEqual(models, ['AutoencoderKL.decoder', 'CLIPTextModel', 'UNetControlNetXSModel'], 'one report per model that ran');
    console.log(`no WebGPU here: ${got.webgpu.reports[0]!['reason']}`);
    for (const r of got.webgpu.reports) {
      assert.equal(r['requested'], 'webgpu');
      assert.equal(r['running'], 'wasm');
      assert.equal(r['kind'], 'failed-to-start');
      // Which of the two Chromium shows here depends on its version: no navigator.gpu, or no adapter behind it.
      assert.match(r['reason']!, /^this browser has no WebGPU \(navigator\.gpu is missing\)$|^no WebGPU adapter \(navigator\.gpu\.requestAdapter\(\) gave none\)$/);
      assert.match(r['hint']!, /device 'wasm'/);
    }
    assert.equal(got.webgpu.data.length, 64 * 64 * 3);
    assert.deepEqual(got.webgpu.data, got.wasm.data, 'the fallback computes exactly what wasm computes');
    await page.close();
  });

  test('without navigator.gpu: one warn line naming WebGPU, why and wasm', async () => {
    const page = await browser.context.newPage();
    await page.addInitScript('Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined })');
    await page.goto(server.url + '/');
    const got = await prepareInPage(page, '/model/text_encoder', ['webgpu', 'cpu']);
    assert.ok('running' in got, JSON.stringify(got));
    assert.equal(got.running, 'wasm');
    assert.deepEqual(got.warnings, [
      'CLIPTextModel: execution provider webgpu is not available here (this browser has no WebGPU (navigator.gpu is missing)); running on wasm. ' +
        "Use a browser with WebGPU enabled and a GPU it accepts, or device 'wasm' (the same pipeline, without this notice)",
    ]);
    await page.close();
  });

  test('a server without ranges, or refusing them, still serves: each file is downloaded whole once', async () => {
    const page = await browser.context.newPage();
    await page.goto(server.url + '/');
    const path = '/plain/text_encoder/model.safetensors';
    for (const mode of ['ignore', 'refuse'] as const) {
      server.rangeMode.set('/plain', mode);
      await page.evaluate('(async () => caches.delete((await import("/web/index.js")).FILE_CACHE))()');
      const from = server.requests.length;
      const got = await prepareInPage(page, '/plain/text_encoder', ['wasm']);
      assert.ok('running' in got, JSON.stringify(got));
      const hits = server.requests.slice(from).filter((r) => r.path === path).map((r) => (r.range === null ? 'whole' : 'range'));
      // ignored: the first Range request brings the whole file, cached; refused: one plain GET after the refusal
      assert.deepEqual(hits, mode === 'ignore' ? ['range'] : ['range', 'whole'], mode);
    }
    await page.close();
  });

  test('a weights file over 2 GiB is refused by name from its header; its body is never asked for', async () => {
    assert.ok(tooBigFile.size > MAX_FILE && tooBigFile.size < 2.3e9);
    const page = await browser.context.newPage();
    await page.goto(server.url + '/');
    const from = server.requests.length;
    const got = await prepareInPage(page, '/big/file', ['wasm']);
    assert.ok('error' in got, JSON.stringify(got));
    assert.equal(got.error.name, 'BrowserLimitError', got.error.message);
    const url = `${server.url}/big/file/model.safetensors`;
    const want = `${url} is ${gb(tooBigFile.size)} GB; the browser hands onnxruntime-web at most 2 GB per file (one ArrayBuffer: ${MAX_FILE} bytes): `;
    assert.ok(got.error.message.startsWith(want), got.error.message);
    assert.match(got.error.message, /use a checkpoint sharded below 2 GB \(<name>\.safetensors\.index\.json/);
    assertHeaderOnly('/big/file/model.safetensors', from, tooBigFile.headerEnd);
    await page.close();
  });

  test('on wasm, more weights than wasm memory holds is refused from the header (webgpu falling back too)', async () => {
    const stored = tooBigForWasm.tensors.reduce((a, t) => a + t.bytes, 0);
    const cast = tooBigForWasm.tensors.reduce((a, t) => a + (t.bytes / 2) * 4, 0);
    assert.ok(tooBigForWasm.size < MAX_FILE && stored + cast > WASM_BUDGET && stored < WASM_BUDGET);
    const page = await browser.context.newPage();
    await page.goto(server.url + '/');
    const from = server.requests.length;
    const want = `model CLIPTextModel needs ${gb(stored + cast)} GB of weights in wasm memory (${gb(stored)} GB as stored + ${gb(cast)} GB cast to float32)`;
    const tail = `; wasm32 memory holds 4 GB at most, ${gb(WASM_BUDGET)} GB of it for weights: use device 'webgpu' (weights in GPU buffers), with dtype 'float16' for SD 2.1`;
    const onWasm = await prepareInPage(page, '/big/wasm', ['wasm']);
    assert.ok('error' in onWasm, JSON.stringify(onWasm));
    assert.equal(onWasm.error.name, 'BrowserLimitError');
    assert.equal(onWasm.error.message, want + tail);
    const fallback = await prepareInPage(page, '/big/wasm', ['webgpu', 'cpu']);
    assert.ok('error' in fallback, JSON.stringify(fallback));
    assert.equal(fallback.error.name, 'BrowserLimitError');
    assert.match(fallback.error.message, /, on wasm because webgpu: (this browser has no WebGPU|no WebGPU adapter)/);
    assert.ok(fallback.error.message.startsWith(want) && fallback.error.message.endsWith(tail), fallback.error.message);
    assertHeaderOnly('/big/wasm/model.safetensors', from, tooBigForWasm.headerEnd);
    await page.close();
  });
});

describe('Chromium with WebGPU (SwiftShader: no shader-f16)', () => {
  const profile = 'cnxs-chromium-swiftshader-';
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  let adapter = 'none: not asked';
  before(async () => {
    browser = await launchChromium(profile, WEBGPU_ARGS, { withoutDisableGpu: true });
    page = await browser.context.newPage();
    await page.goto(server.url + '/');
    adapter = (await page.evaluate(`(async () => {
      const a = navigator.gpu && (await navigator.gpu.requestAdapter());
      if (!a) return 'none: ' + (navigator.gpu ? 'requestAdapter() gave null' : 'navigator.gpu is undefined');
      return a.features.has('shader-f16') ? 'shader-f16' : 'no shader-f16';
    })()`)) as string;
  });
  after(async () => {
    await browser?.close();
  });
  /** Skip (saying why) without an adapter — a failure under CNXS_REQUIRE_WEBGPU=1 — or on one with shader-f16. */
  const unusable = (t: TestContext): boolean => {
    if (adapter === 'no shader-f16') return false;
    assert.ok(process.env['CNXS_REQUIRE_WEBGPU'] !== '1' || adapter === 'shader-f16', `CNXS_REQUIRE_WEBGPU=1 but Chromium offers no WebGPU adapter (${adapter})`);
    t.skip(adapter === 'shader-f16' ? 'this adapter has shader-f16: float16 runs' : `no WebGPU adapter (${adapter})`);
    return true;
  };

  test("dtype 'float16' on an adapter without shader-f16: a ConfigError before any weights file is downloaded", async (t) => {
    if (unusable(t)) return;
    const from = server.requests.length;
    const got = (await page.evaluate(`(async (s) => {
      const m = await import('/web/index.js');
      const base = location.origin + '/model';
      try {
        const controlnet = await m.ControlNetXSAdapter.fromPretrained(base + '/controlnet');
        const pipe = await m.StableDiffusionControlNetXSPipeline.fromPretrained(base, { controlnet, device: 'webgpu', dtype: 'float16' });
        await pipe.run({ prompt: s.prompt, image: '/model/pipeline/control.png', numInferenceSteps: 1, width: 64, height: 64 });
        return { name: '', message: 'ran' };
      } catch (e) {
        return { name: e.name, message: e.message };
      }
    })(${JSON.stringify(SETTINGS)})`)) as { name: string; message: string };
    assert.equal(got.name, 'ConfigError', got.message);
    assert.match(got.message, /^CLIPTextModel: dtype "float16" on WebGPU needs the adapter feature "shader-f16", which this browser's adapter \(.+\) does not have: use dtype "float32"/);
    const weights = server.requests.slice(from).filter((r) => r.path.endsWith('.safetensors'));
    assert.ok(weights.length >= 4, 'the headers were read');
    assert.deepEqual(weights.filter((r) => r.range === null), [], 'no weights file was downloaded whole');
  });

  test('the wasm budget does not apply on WebGPU: the same model goes on to download (and gets no body)', async (t) => {
    if (unusable(t)) return;
    const got = await prepareInPage(page, '/big/wasm', ['webgpu']);
    assert.ok('error' in got, JSON.stringify(got));
    assert.equal(got.error.name, 'DownloadError', got.error.message);
    assert.match(got.error.message, /\/big\/wasm\/model\.safetensors: (download failed|cannot fetch)/);
  });
});
