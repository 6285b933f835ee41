/**
 * The web UI (src/server/ui) in a real browser: Debian's Chromium, headless, driven by playwright-core,
 * against `cnxs serve`'s server in this process (the embedded queue over the tiny checkpoint), with an
 * API key, so every call the page makes must carry it. The Canny previews are compared with OpenCV's
 * outputs (test/fixtures/canny), the gallery's image with the API's PNG of the same job.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { loadImage } from '../src/image/load.js';
import { SCHEDULER_ALIASES } from '../src/schedulers/aliases.js';
import { EmbeddedQueue } from '../src/server/embedded-queue.js';
import { startServer } from '../src/server/http.js';
import type { GenerationOutput, GenerationRequest, GenerationRunner, RunOptions } from '../src/server/jobs.js';
import { DEFAULT_LIMITS } from '../src/server/request.js';
import { createPipelineRunner, type PipelineRunner } from '../src/server/runner.js';
import { launchChromium } from './chromium.js';
import { fixture, tempDir } from './helpers.js';

const KEY = 'ui-test-key';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const D = fixture('tiny-sd-cnxs');
/** Seconds of work on the tiny model (a few ms a step); Cancel comes after the first. */
const LONG_RUN_STEPS = 500;

/**
 * The real runner behind a gate: a job waits until the test opens it, so the page is following the
 * job's events before its first step (the tiny model's steps take milliseconds) and sees every one.
 */
class GatedRunner implements GenerationRunner {
  #gate: Promise<void> = Promise.resolve();
  #open = () => {};
  constructor(readonly inner: GenerationRunner) {}
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }
  open(): void {
    this.#open();
  }
  async run(request: GenerationRequest, options?: RunOptions): Promise<GenerationOutput> {
    await this.#gate;
    return this.inner.run(request, options);
  }
}

const graphs = tempDir('cnxs-ui-graphs-');
let queue: EmbeddedQueue | undefined;
let server: { url: string; close(): Promise<void> } | undefined;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;
let pipeline: PipelineRunner | undefined;
let runner: GatedRunner;
/** Everything the page logged as an error, and uncaught exceptions. */
const pageErrors: string[] = [];

before(async () => {
  // first, so a machine without the browser fails at once with the reason, before any model loads
  browser = await launchChromium();
  pipeline = await createPipelineRunner({ model: D, controlnet: join(D, 'controlnet'), offline: true, graphCacheDir: graphs });
  runner = new GatedRunner(pipeline);
  queue = new EmbeddedQueue({ runner, maxQueue: 4, resultTtlSeconds: 600 });
  // more steps than the default cap, so a run to cancel is long enough to still be running when Cancel arrives
  server = await startServer({ queue, limits: { ...DEFAULT_LIMITS, maxSteps: LONG_RUN_STEPS }, apiKey: KEY, host: '127.0.0.1', port: 0 });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => pageErrors.push(`uncaught: ${e.message}`));
});

after(async () => {
  await browser?.close();
  await server?.close();
  await queue?.close();
  await pipeline?.close();
});

/** Run `fn(arg)` in the page: the test's tsconfig has no DOM types, so browser code travels as source. */
function inPage<T>(fn: string, arg?: unknown): Promise<T> {
  return page.evaluate(`(${fn})(${JSON.stringify(arg ?? null)})`) as Promise<T>;
}

/** An `<img>`'s pixels as the page decoded them (RGBA), drawn once it has loaded. */
function pagePixels(selector: string): Promise<{ width: number; height: number; rgba: number[] }> {
  return inPage(
    `async (selector) => {
      const img = document.querySelector(selector);
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      return { width: canvas.width, height: canvas.height, rgba: Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data) };
    }`,
    selector,
  );
}

/** Assert the page's pixels equal an RGB image's exactly (opaque). */
function assertSamePixels(got: { width: number; height: number; rgba: number[] }, want: { width: number; height: number; data: Uint8Array }, what: string): void {
  assert.deepEqual([got.width, got.height], [want.width, want.height], `${what}: size`);
  let differing = 0;
  for (let p = 0; p < want.width * want.height; p++) {
    for (let c = 0; c < 3; c++) if (got.rgba[p * 4 + c] !== want.data[p * 3 + c]) differing++;
    if (got.rgba[p * 4 + 3] !== 255) differing++;
  }
  assert.equal(differing, 0, `${what}: ${differing} channel values differ`);
}

/** An OpenCV Canny output (single-channel PNG) as the RGB image the page shows for it. */
async function openCvEdges(name: string) {
  return loadImage(fixture('canny', name));
}

interface JobJson {
  status: string;
  progress: { step: number; total: number };
  images: string[];
  result: { parameters: string[] };
}

async function apiGet(path: string): Promise<Response> {
  const r = await fetch(`${server!.url}${path}`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(r.status, 200, `GET ${path}: ${r.status}`);
  return r;
}

test('the page: labelled controls, the schedulers cnxs generate names, a random seed', async () => {
  await page.goto(server!.url);
  const schedulers = await inPage<string[]>(`() => [...document.querySelectorAll('#scheduler option')].map((o) => o.value)`);
  assert.deepEqual(schedulers, ['', ...Object.keys(SCHEDULER_ALIASES)]);
  assert.equal(await page.locator('#scheduler').inputValue(), '');
  // every control has an accessible name (a <label for>, or aria-label where a label cannot sit)
  const unnamed = await inPage<string[]>(`() => [...document.querySelectorAll('input, select, textarea, button, [role=button]')]
    .filter((el) => !(el.labels?.length > 0 || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim())))
    .map((el) => el.id || el.outerHTML)`);
  assert.deepEqual(unnamed, []);
  await page.locator('#dice').click();
  assert.match(await page.locator('#seed').inputValue(), /^\d+$/);
  await page.locator('#seed').fill('');
});

test('the file picker and the Canny preview: the server\'s edges equal OpenCV\'s; without the key, the 401 shows at the key field', async () => {
  // not an image: refused on its bytes, at the image's field, before any call
  await page.locator('#control-file').setInputFiles({ name: 'edges.png', mimeType: 'image/png', buffer: Buffer.from('GIF89a, not a PNG') });
  await page.locator('#error-image').filter({ hasText: 'edges.png is not a PNG or JPEG file' }).waitFor();
  assert.equal(await page.locator('#control-thumb').isHidden(), true);

  await page.locator('#control-file').setInputFiles(fixture('canny', 'scene1_128x96.png'));
  await page.waitForFunction(`document.querySelector('#control-thumb').naturalWidth === 128`);
  assertSamePixels(await pagePixels('#control-thumb'), await loadImage(fixture('canny', 'scene1_128x96.png')), 'control thumbnail');
  assert.equal(await page.locator('#canny-thumb').isHidden(), true, 'Canny is off by default, as in cnxs generate');

  await page.locator('#use-canny').check();
  await page.locator('#error-apiKey').filter({ hasText: /API key/ }).waitFor();
  assert.equal(await page.locator('#api-key').getAttribute('aria-invalid'), 'true');

  await page.locator('#api-key').fill(KEY);
  assert.equal(await page.locator('#error-apiKey').textContent(), '', 'typing the key clears its error');
  await page.locator('#use-canny').uncheck();
  await page.locator('#use-canny').check();
  await page.locator('#canny-caption').filter({ hasText: 'Canny edges (100, 200)' }).waitFor();
  assertSamePixels(await pagePixels('#canny-thumb'), await openCvEdges('scene1_128x96_canny_100_200.png'), 'Canny 100/200');

  await page.locator('#canny-low').fill('50');
  await page.locator('#canny-high').fill('150');
  await page.locator('#canny-caption').filter({ hasText: 'Canny edges (50, 150)' }).waitFor();
  assertSamePixels(await pagePixels('#canny-thumb'), await openCvEdges('scene1_128x96_canny_50_150.png'), 'Canny 50/150');

  // the key outlives the page (localStorage): a new tab of the same profile has it
  const other = await context.newPage();
  await other.goto(server!.url);
  assert.equal(await other.locator('#api-key').inputValue(), KEY);
  await other.close();
});

test('drop the control image, Generate with 2 steps: progress and a live preview per step, then the API\'s image in the gallery', async () => {
  // a real drop: a DataTransfer holding the file, through dragenter, dragover and drop on the zone
  const transfer = await page.evaluateHandle(
    `(() => {
      const bytes = Uint8Array.from(atob(${JSON.stringify(readFileSync(join(D, 'pipeline', 'control.png')).toString('base64'))}), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'control.png', { type: 'image/png' }));
      return dt;
    })()`,
  );
  for (const type of ['dragenter', 'dragover', 'drop']) await page.locator('#drop-zone').dispatchEvent(type, { dataTransfer: transfer });
  await page.waitForFunction(`document.querySelector('#control-thumb').naturalWidth === 64`);
  assertSamePixels(await pagePixels('#control-thumb'), await loadImage(join(D, 'pipeline', 'control.png')), 'dropped control image');
  await page.locator('#canny-low').fill('100');
  await page.locator('#canny-high').fill('200');
  await page.locator('#canny-caption').filter({ hasText: 'Canny edges (100, 200)' }).waitFor();

  await page.locator('#prompt').fill('a photo of a bird');
  await page.locator('#steps').fill('2');
  await page.locator('#seed').fill('1234');
  // record every change of the progress bar and the preview, however fast they come
  await inPage(`() => {
    window.__seen = { progress: [], previews: [] };
    const progress = document.querySelector('#progress');
    const preview = document.querySelector('#preview');
    new MutationObserver(() => window.__seen.progress.push([progress.value, progress.max])).observe(progress, { attributes: true });
    new MutationObserver(() => window.__seen.previews.push(preview.src)).observe(preview, { attributes: true, attributeFilter: ['src'] });
  }`);
  runner.hold();
  const following = page.waitForResponse((r) => r.url().endsWith('/events') && r.status() === 200);
  await page.locator('#generate').click();
  await following;
  runner.open();
  const card = page.locator('#gallery li.result').first();
  await card.waitFor({ timeout: 120_000 });

  const id = await card.getAttribute('data-job-id');
  assert.ok(id);
  const job = (await (await apiGet(`/v1/generations/${id}`)).json()) as JobJson;
  assert.equal(job.status, 'succeeded');
  assert.deepEqual(job.progress, { step: 2, total: 2 });

  // the bar went through every step, in order, and the page showed at least one live preview
  const seen = await inPage<{ progress: [number, number][]; previews: string[] }>(`() => window.__seen`);
  const values = seen.progress.filter(([, max]) => max === 2).map(([v]) => v);
  assert.ok(values.every((v, i) => i === 0 || v >= values[i - 1]!), `the bar went back: ${JSON.stringify(seen.progress)}`);
  assert.ok(values.includes(1) && values.at(-1) === 2, `steps seen: ${JSON.stringify(seen.progress)}`);
  assert.ok(seen.previews.length >= 1 && seen.previews.every((s) => s.startsWith('data:image/png;base64,')), `previews: ${seen.previews.length}`);
  assert.match((await page.locator('#status').textContent()) ?? '', /^Done in /);

  const png = new Uint8Array(await (await apiGet(job.images[0]!)).arrayBuffer());
  assertSamePixels(await pagePixels('#gallery li.result img'), await loadImage(png), 'gallery image vs the API\'s PNG');
  // the download link hands over the stored file itself, parameters chunk and all
  const downloaded = await inPage<number[]>(`async () => Array.from(new Uint8Array(await (await fetch(document.querySelector('#gallery li.result a').href)).arrayBuffer()))`);
  assert.deepEqual(downloaded, [...png]);
  assert.equal(await card.locator('a').getAttribute('download'), `cnxs-${id}-0.png`);
  assert.equal(await card.locator('.parameters').textContent(), job.result.parameters[0]);
  assert.match(job.result.parameters[0]!, /^a photo of a bird\nSteps: 2, .*Seed: 1234,/);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'ui.png') });
});

test('Cancel stops a running generation; the gallery keeps only finished ones', async () => {
  await page.locator('#steps').fill(String(LONG_RUN_STEPS));
  runner.hold();
  const submitted = page.waitForResponse((r) => r.url().endsWith('/v1/generations') && r.request().method() === 'POST');
  const following = page.waitForResponse((r) => r.url().endsWith('/events') && r.status() === 200);
  await page.locator('#generate').click();
  const { id } = (await (await submitted).json()) as { id: string };
  await following;
  runner.open();
  // the first step, or the run's end (then the status line says why it never got there)
  await page.waitForFunction(`document.querySelector('#progress').value >= 1 || !document.querySelector('#generate').disabled`, undefined, { timeout: 60_000 });
  assert.equal(await page.locator('#cancel').isEnabled(), true, `not running: ${await page.locator('#status').textContent()} ${await page.locator('#error-form').textContent()}`);
  await page.locator('#cancel').click();
  await page.locator('#status').filter({ hasText: /^Canceled$/ }).waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('#gallery li.result').count(), 1);
  assert.equal(await page.locator('#generate').isEnabled(), true);
  assert.equal(await page.locator('#cancel').isDisabled(), true);
  const job = (await (await apiGet(`/v1/generations/${id}`)).json()) as JobJson;
  assert.equal(job.status, 'canceled');
  assert.ok(job.progress.step >= 1 && job.progress.step < job.progress.total, `stopped at ${job.progress.step} of ${job.progress.total}`);
  assert.deepEqual(job.images, []);
});

test('an API error shows next to the field it names', async () => {
  await page.locator('#steps').fill('0');
  const answer = page.waitForResponse((r) => r.url().endsWith('/v1/generations') && r.request().method() === 'POST');
  await page.locator('#generate').click();
  const response = await answer;
  assert.equal(response.status(), 400);
  assert.equal(((await response.json()) as { error: { field: string } }).error.field, 'steps');
  await page.locator('#error-steps').filter({ hasText: /steps/ }).waitFor();
  assert.equal(await page.locator('#steps').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#error-form').textContent(), '');
  await page.locator('#steps').fill('2');
  assert.equal(await page.locator('#error-steps').textContent(), '', 'typing clears the error');
});

test('an event stream that ends before `done` (a proxy cutting it): the page polls the job and still shows its result', async () => {
  // the page's event stream, and only it, answered by a stand-in that says nothing and hangs up
  await page.route('**/events', (route) => route.fulfill({ status: 200, contentType: 'text/event-stream', body: ': cut\n\n' }));
  try {
    const cards = await page.locator('#gallery li.result').count();
    const submitted = page.waitForResponse((r) => r.url().endsWith('/v1/generations') && r.request().method() === 'POST');
    await page.locator('#steps').fill('2');
    await page.locator('#generate').click();
    const { id } = (await (await submitted).json()) as { id: string };
    await page.waitForFunction(`document.querySelectorAll('#gallery li.result').length === ${cards + 1}`, undefined, { timeout: 60_000 });
    assert.equal(await page.locator('#gallery li.result').first().getAttribute('data-job-id'), id);
    assert.match((await page.locator('#status').textContent()) ?? '', /^Done in /);
  } finally {
    await page.unroute('**/events');
  }
});

test('the SSE reader: messages split across chunks anywhere (CRLF, multi-line data, comments) come out whole', async () => {
  const got = await inPage<{ event: string; data: string }[][]>(`async () => {
    const { SseParser } = await import('./sse.js');
    const text = ': hi\\r\\nevent: status\\r\\ndata: {"a":1}\\r\\n\\r\\nevent: progress\\ndata: x\\ndata: ÿ€\\n\\n\\rdata: last\\r\\r';
    const runs = [];
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SseParser();
      runs.push([...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))]);
    }
    return runs;
  }`);
  const want = [
    { event: 'status', data: '{"a":1}' },
    { event: 'progress', data: 'x\nÿ€' },
    { event: 'message', data: 'last' },
  ];
  got.forEach((messages, cut) => assert.deepEqual(messages, want, `cut at ${cut}`));
});

test('a phone\'s width and dark mode', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  assert.equal(await inPage<number>(`() => document.documentElement.scrollWidth`), 390, 'no sideways scrolling');
  const background = () => inPage<string>(`() => getComputedStyle(document.body).backgroundColor`);
  const light = await background();
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.notEqual(await background(), light);
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('no errors in the page\'s console but the refusals the tests asked for', () => {
  const unexpected = pageErrors.filter((e) => !/^Failed to load resource: the server responded with a status of (400|401) /.test(e));
  assert.deepEqual(unexpected, []);
});
