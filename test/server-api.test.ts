/**
 * The HTTP API of `cnxs serve`, in-process on port 0 over A's EmbeddedQueue: with the real runner on the
 * tiny checkpoint where the pixels matter (native route = `cnxs generate`, A1111 = native, the event
 * stream, cancelling a running job), and with a scripted fake runner where the model adds nothing (auth,
 * caps and bad input, 429, cancelling a queued job, metrics, the OpenAPI document).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addPngText, readPngText } from '../src/image/png-text.js';
import { loadImage } from '../src/image/load.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { EmbeddedQueue } from '../src/server/embedded-queue.js';
import { routeTable, startServer, type RunningServer } from '../src/server/http.js';
import type { GenerationOutput, GenerationRequest, GenerationRunner, JobQueue, RunOptions } from '../src/server/jobs.js';
import { DEFAULT_LIMITS, type ServerLimits } from '../src/server/limits.js';
import { ServerMetrics, instrumentRunner } from '../src/server/metrics.js';
import { openApiDocument } from '../src/server/openapi.js';
import { GENERATION_FIELDS } from '../src/server/request.js';
import { createPipelineRunner } from '../src/server/runner.js';
import { defaultUiDir } from '../src/server/static.js';
import { fixture, tempDir } from './helpers.js';

const D = fixture('tiny-sd-cnxs');
const CONTROL = join(D, 'pipeline', 'control.png');
const CONTROL_BASE64 = readFileSync(CONTROL).toString('base64');

interface Api {
  url: string;
  call(method: string, path: string, o?: { json?: unknown; body?: string; key?: string; headers?: Record<string, string> }): Promise<Response>;
}

function api(url: string, defaultKey?: string): Api {
  return {
    url,
    call(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      const key = o.key ?? defaultKey;
      if (key !== undefined) headers['authorization'] = `Bearer ${key}`;
      let body: string | undefined = o.body;
      if (o.json !== undefined) {
        headers['content-type'] = 'application/json';
        body = JSON.stringify(o.json);
      }
      return fetch(`${url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    },
  };
}

async function json<T = Record<string, unknown>>(r: Response): Promise<T> {
  return (await r.json()) as T;
}

/** Poll a job until `done(status)` (the tests' own clock: no timings asserted). */
async function waitFor(a: Api, id: string, done: (s: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (;;) {
    const s = await json(await a.call('GET', `/v1/generations/${id}`));
    if (done(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const terminal = (s: Record<string, unknown>) => ['succeeded', 'failed', 'canceled'].includes(s['status'] as string);

/** Events of an SSE body, parsed as the spec says (blank-line separated, `event:` + `data:` lines, `:` comments). */
async function readEvents(r: Response): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const text = await r.text();
  return text
    .split('\n\n')
    .filter((block) => block.split('\n').some((l) => l.startsWith('data:')))
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'message';
      const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      return { event, data: JSON.parse(data) as Record<string, unknown> };
    });
}

/**
 * A runner the test drives: every step waits for `release()` (or runs at once with `auto`), checks the
 * signal between steps as the real runner does, and reports a 1×1 preview.
 */
class ScriptedRunner implements GenerationRunner {
  started = 0;
  private waiters: (() => void)[] = [];
  constructor(private auto = false) {}

  release(all = false): void {
    if (all) this.auto = true;
    for (const w of this.waiters.splice(0)) w();
  }

  async run(request: GenerationRequest, options: RunOptions = {}): Promise<GenerationOutput> {
    this.started++;
    const preview = await RGBImage.blank(1, 1).toPNG();
    for (let step = 1; step <= request.steps; step++) {
      if (!this.auto) await new Promise<void>((r) => this.waiters.push(r));
      options.signal?.throwIfAborted();
      options.onProgress?.({ step, total: request.steps, previewPng: preview });
    }
    const png = addPngText(await RGBImage.blank(8, 8).toPNG(), { parameters: request.prompt });
    return {
      images: Array.from({ length: request.numImages }, () => png),
      info: { parameters: [request.prompt], seeds: [request.seed], width: 8, height: 8, sampler: 'DDIM', device: 'cpu', nsfwContentDetected: null, seconds: 0 },
    };
  }
}

/** Every server a test starts, stopped when the file is done (an `after` in a `before` hook would run as the hook ends). */
const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const stop of stops) await stop();
});

async function serveWith(o: {
  runner: GenerationRunner;
  limits?: Partial<ServerLimits>;
  apiKey?: string;
  loopbackOnly?: boolean;
  log?: (l: string) => void;
  queue?: (q: JobQueue) => JobQueue;
}): Promise<{ server: RunningServer; queue: EmbeddedQueue }> {
  const limits = { ...DEFAULT_LIMITS, ...o.limits };
  const metrics = new ServerMetrics();
  const queue = new EmbeddedQueue({ runner: instrumentRunner(o.runner, metrics), maxQueue: limits.maxQueue, resultTtlSeconds: 60 });
  const server = await startServer({
    queue: o.queue ? o.queue(queue) : queue,
    limits,
    metrics,
    host: '127.0.0.1',
    port: 0,
    heartbeatMs: 50,
    ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}),
    ...(o.loopbackOnly ? { loopbackOnly: true } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  stops.push(async () => {
    await server.close();
    await queue.close();
  });
  return { server, queue };
}

describe('with the tiny checkpoint', () => {
  let a: Api;
  const cacheHome = tempDir('cnxs-serve-cache-');
  before(async () => {
    const runner = await createPipelineRunner({ model: D, controlnet: join(D, 'controlnet'), offline: true, graphCacheDir: join(cacheHome, 'graphs') });
    const { server } = await serveWith({ runner });
    a = api(server.url);
  });

  test('a generation through POST / GET / images has the pixels and parameters cnxs generate writes', async () => {
    const dir = tempDir('cnxs-serve-gen-');
    const out = join(dir, 'cli.png');
    const cli = spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'generate', '--model', D, '--controlnet', join(D, 'controlnet'),
      '--control', CONTROL, '--prompt', 'a photo of a bird', '--negative-prompt', 'blurry', '--steps', '3', '--seed', '7', '--guidance-scale', '5', '--out', out],
    { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: cacheHome } });
    assert.equal(cli.status, 0, cli.stderr);

    const r = await a.call('POST', '/v1/generations', { json: { prompt: 'a photo of a bird', negativePrompt: 'blurry', image: `data:image/png;base64,${CONTROL_BASE64}`, steps: 3, seed: 7, guidanceScale: 5 } });
    assert.equal(r.status, 202);
    const { id, status, position } = await json<{ id: string; status: string; position: number }>(r);
    assert.equal(status, 'queued');
    assert.equal(position, 0);
    assert.equal(r.headers.get('location'), `/v1/generations/${id}`);
    const done = await waitFor(a, id, terminal);
    assert.equal(done['status'], 'succeeded', JSON.stringify(done));
    assert.deepEqual(done['progress'], { step: 3, total: 3 });
    assert.deepEqual(done['images'], [`/v1/generations/${id}/images/0.png`]);
    const png = await a.call('GET', `/v1/generations/${id}/images/0.png`);
    assert.equal(png.status, 200);
    assert.equal(png.headers.get('content-type'), 'image/png');
    const bytes = new Uint8Array(await png.arrayBuffer());
    const [served, written] = [await loadImage(bytes), await loadImage(out)];
    assert.deepEqual([served.width, served.height], [written.width, written.height]);
    assert.ok(Buffer.from(served.data).equals(Buffer.from(written.data)), 'pixels differ from cnxs generate');
    assert.equal(readPngText(bytes)['parameters'], readPngText(readFileSync(out))['parameters']);
    assert.equal((done['result'] as { parameters: string[] }).parameters[0], readPngText(bytes)['parameters']);
    assert.equal((await a.call('GET', `/v1/generations/${id}/images/1.png`)).status, 404);
  });

  test('the event stream: status, then progress with previews, then done; A1111 gives the native images', async () => {
    const body = { prompt: 'a bird', image: CONTROL_BASE64, steps: 2, seed: 3, numImages: 2 };
    const { id } = await json<{ id: string }>(await a.call('POST', '/v1/generations', { json: body }));
    const r = await a.call('GET', `/v1/generations/${id}/events`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = await readEvents(r);
    assert.equal(events[0]!.event, 'status');
    assert.equal(events[0]!.data['id'], id);
    assert.equal(events.at(-1)!.event, 'done');
    assert.equal(events.at(-1)!.data['status'], 'succeeded');
    const progress = events.filter((e) => e.event === 'progress');
    assert.deepEqual(progress.map((e) => [e.data['step'], e.data['total']]), [[1, 2], [2, 2]]);
    for (const p of progress) {
      const preview = p.data['preview'] as string;
      assert.match(preview, /^data:image\/png;base64,/);
      await loadImage(Buffer.from(preview.slice(preview.indexOf(',') + 1), 'base64')); // a decodable PNG
    }
    // status (more than one while it goes from queued to running), progress, then done
    assert.match(events.map((e) => e.event).join(','), /^status(,status)*(,progress)+,done$/);

    const a1111 = await a.call('POST', '/sdapi/v1/txt2img', {
      json: { prompt: 'a bird', steps: 2, seed: 3, batch_size: 2, alwayson_scripts: { controlnet: { args: [{ image: CONTROL_BASE64, module: 'none' }] } } },
    });
    assert.equal(a1111.status, 200);
    const res = await json<{ images: string[]; parameters: Record<string, unknown>; info: string }>(a1111);
    assert.equal(res.images.length, 2);
    for (let n = 0; n < 2; n++) {
      const native = new Uint8Array(await (await a.call('GET', `/v1/generations/${id}/images/${n}.png`)).arrayBuffer());
      const [x, y] = [await loadImage(native), await loadImage(Buffer.from(res.images[n]!, 'base64'))];
      assert.ok(Buffer.from(x.data).equals(Buffer.from(y.data)), `A1111 image ${n} differs from the native route's`);
    }
    assert.equal(res.parameters['prompt'], 'a bird');
    assert.equal(typeof res.info, 'string');
  });

  test('DELETE stops a running job between steps', async () => {
    const { id } = await json<{ id: string }>(await a.call('POST', '/v1/generations', { json: { prompt: 'x', image: CONTROL_BASE64, steps: 150, seed: 1 } }));
    await waitFor(a, id, (s) => (s['progress'] as { step: number }).step >= 1);
    const r = await a.call('DELETE', `/v1/generations/${id}`);
    assert.equal(r.status, 200);
    const after = await waitFor(a, id, terminal);
    assert.equal(after['status'], 'canceled');
    assert.ok((after['progress'] as { step: number }).step < 150, 'stopped before the last step');
    assert.deepEqual(after['images'], []);
  });
});

describe('with a scripted runner', () => {
  const KEY = 'test-key-123';
  const runner = new ScriptedRunner();
  let a: Api;
  const logged: string[] = [];
  before(async () => {
    const { server } = await serveWith({ runner, apiKey: KEY, limits: { maxQueue: 1, maxBodyBytes: 64 * 1024, maxSteps: 20, maxWidth: 512, maxHeight: 256 }, log: (l) => logged.push(l) });
    a = api(server.url, KEY);
  });
  const good = { prompt: 'x', image: CONTROL_BASE64, steps: 2 };

  test('auth: the API routes want the key (401 with WWW-Authenticate); probes, metrics, the document and the page do not', async () => {
    for (const [method, path, body] of [['POST', '/v1/generations', good], ['GET', '/v1/generations/x'], ['DELETE', '/v1/generations/x'], ['GET', '/v1/generations/x/events'],
      ['GET', '/v1/generations/x/images/0.png'], ['POST', '/v1/canny', { image: CONTROL_BASE64 }], ['POST', '/sdapi/v1/txt2img', {}]] as const) {
      for (const key of ['', 'wrong-key', `${KEY}x`]) {
        const r = await fetch(`${a.url}${path}`, { method, headers: key ? { authorization: `Bearer ${key}` } : {}, ...(body ? { body: JSON.stringify(body) } : {}) });
        assert.equal(r.status, 401, `${method} ${path} with "${key}"`);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer /);
        const e = await json<{ error: { message: string } }>(r);
        assert.match(e.error.message, key ? /wrong/ : /Authorization: Bearer/);
      }
    }
    const basic = await fetch(`${a.url}/v1/generations/x`, { headers: { authorization: `Basic ${Buffer.from(`u:${KEY}`).toString('base64')}` } });
    assert.equal(basic.status, 401);
    // the right key passes (then the route answers: 404 for an unknown id)
    assert.equal((await a.call('GET', '/v1/generations/x')).status, 404);
    // the Canny preview: OpenCV's edges of the canny fixture at the default thresholds
    const canny = await a.call('POST', '/v1/canny', { json: { image: readFileSync(fixture('canny', 'scene0_64x64.png')).toString('base64') } });
    assert.equal(canny.status, 200);
    assert.equal(canny.headers.get('content-type'), 'image/png');
    const edges = await loadImage(new Uint8Array(await canny.arrayBuffer()));
    const expected = await loadImage(fixture('canny', 'scene0_64x64_canny_100_200.png'));
    assert.ok(Buffer.from(edges.data).equals(Buffer.from(expected.data)), 'edges differ from OpenCV\'s');
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/', '/app.js', '/style.css']) {
      assert.equal((await fetch(`${a.url}${path}`)).status, 200, path);
    }
  });

  test('caps and bad input: 413, 400 naming the field, 404, 405 with Allow, 415; all as JSON errors', async () => {
    const cases: [string, string, { json?: unknown; body?: string; headers?: Record<string, string> }, number, string | undefined][] = [
      ['POST', '/v1/generations', { body: 'x'.repeat(65 * 1024), headers: { 'content-type': 'application/json' } }, 413, undefined],
      ['POST', '/v1/generations', { body: '{"prompt": ', headers: { 'content-type': 'application/json' } }, 400, undefined],
      ['POST', '/v1/generations', { json: [1, 2] }, 400, undefined],
      ['POST', '/v1/generations', { body: '{}', headers: { 'content-type': 'text/plain' } }, 415, undefined],
      ['POST', '/v1/generations', { body: '{}', headers: { 'content-type': 'application/jsonp' } }, 415, undefined],
      ['POST', '/sdapi/v1/txt2img', { body: '{}', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, undefined],
      ['POST', '/v1/generations', { json: { image: CONTROL_BASE64 } }, 400, 'prompt'],
      ['POST', '/v1/generations', { json: { prompt: 'x' } }, 400, 'image'],
      ['POST', '/v1/generations', { json: { ...good, image: 'not base64!' } }, 400, 'image'],
      ['POST', '/v1/generations', { json: { ...good, image: Buffer.from('GIF89a....').toString('base64') } }, 400, 'image'],
      ['POST', '/v1/generations', { json: { ...good, steps: 21 } }, 400, 'steps'],
      ['POST', '/v1/generations', { json: { ...good, steps: 0 } }, 400, 'steps'],
      ['POST', '/v1/generations', { json: { ...good, steps: '3' } }, 400, 'steps'],
      ['POST', '/v1/generations', { json: { ...good, width: 520 } }, 400, 'width'],
      ['POST', '/v1/generations', { json: { ...good, height: 264 } }, 400, 'height'],
      ['POST', '/v1/generations', { json: { ...good, numImages: 9 } }, 400, 'numImages'],
      ['POST', '/v1/generations', { json: { ...good, guidanceScale: 'high' } }, 400, 'guidanceScale'],
      ['POST', '/v1/generations', { json: { ...good, controlScale: null } }, 400, 'controlScale'],
      ['POST', '/v1/generations', { json: { ...good, controlStart: 0.8, controlEnd: 0.2 } }, 400, 'controlStart'],
      ['POST', '/v1/generations', { json: { ...good, controlEnd: 2 } }, 400, 'controlEnd'],
      ['POST', '/v1/generations', { json: { ...good, scheduler: 'warp-drive' } }, 400, 'scheduler'],
      ['POST', '/v1/generations', { json: { ...good, seed: -1 } }, 400, 'seed'],
      ['POST', '/v1/generations', { json: { ...good, canny: { low: 300, high: 100 } } }, 400, 'canny.low'],
      ['POST', '/v1/generations', { json: { ...good, negativePrompt: 5 } }, 400, 'negativePrompt'],
      ['POST', '/v1/generations', { json: { ...good, stepz: 3 } }, 400, 'stepz'],
      ['POST', '/sdapi/v1/txt2img', { json: { prompt: 'x', steps: 99, alwayson_scripts: { controlnet: { args: [{ image: CONTROL_BASE64 }] } } } }, 400, 'steps'],
      ['POST', '/sdapi/v1/txt2img', { json: { prompt: 'x' } }, 400, 'alwayson_scripts.controlnet.args[0].image'],
      ['POST', '/v1/canny', { json: { image: CONTROL_BASE64, low: 9, high: 1 } }, 400, 'low'],
      ['POST', '/v1/canny', { json: { image: 'AAAA' } }, 400, 'image'],
      ['GET', '/v1/generations/nope', {}, 404, undefined],
      ['DELETE', '/v1/generations/nope', {}, 404, undefined],
      ['GET', '/v1/generations/nope/images/0.png', {}, 404, undefined],
      ['GET', '/v1/generations/nope/events', {}, 404, undefined],
      ['GET', '/v2/nothing/here', {}, 404, undefined],
      ['GET', '/..%2f..%2fpackage.json', {}, 404, undefined],
      ['GET', '/%2e%2e/%2e%2e/package.json', {}, 404, undefined],
      ['GET', '/tsconfig.json/..%2f..%2f..%2fjobs.ts', {}, 404, undefined],
      ['GET', '/no-such-file.js', {}, 404, undefined],
      ['PUT', '/v1/generations', {}, 405, undefined],
      ['POST', '/healthz', {}, 405, undefined],
    ];
    for (const [method, path, o, status, field] of cases) {
      const r = await a.call(method, path, o);
      const what = `${method} ${path} ${JSON.stringify(o.json ?? o.body ?? '').slice(0, 80)}`;
      assert.equal(r.status, status, `${what}: ${r.status}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/, what);
      const e = await json<{ error: { message: string; field?: string } }>(r);
      assert.equal(typeof e.error.message, 'string', what);
      assert.doesNotMatch(e.error.message, /\n\s+at /, `${what}: a stack in the response`);
      assert.equal(e.error.field, field, `${what}: ${e.error.message}`);
    }
    // a body without any Content-Type (a Blob of no type) is what a page of another site could send unasked
    const untyped = await fetch(`${a.url}/v1/generations`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: new Blob([JSON.stringify(good)]) });
    assert.equal(untyped.status, 415);
    assert.equal((await a.call('PUT', '/v1/generations')).headers.get('allow'), 'POST');
    assert.equal((await a.call('PATCH', '/v1/generations/x')).headers.get('allow'), 'GET, DELETE');
    assert.equal(runner.started, 0, 'no bad request reached the runner');
  });

  test('the queue cap: 429 with Retry-After; DELETE cancels a queued job; /metrics counts the jobs', async () => {
    const first = await json<{ id: string }>(await a.call('POST', '/v1/generations', { json: good }));
    await waitFor(a, first.id, (s) => s['status'] === 'running');
    const second = await a.call('POST', '/v1/generations', { json: good });
    assert.equal(second.status, 202);
    const { id, position } = await json<{ id: string; position: number }>(second);
    assert.equal(position, 0);
    const full = await a.call('POST', '/v1/generations', { json: good });
    assert.equal(full.status, 429);
    assert.match(full.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
    assert.match((await json<{ error: { message: string } }>(full)).error.message, /full/);
    const canceled = await a.call('DELETE', `/v1/generations/${id}`);
    assert.equal(canceled.status, 200);
    assert.equal((await json(canceled))['status'], 'canceled');
    runner.release(true);
    assert.equal((await waitFor(a, first.id, terminal))['status'], 'succeeded');
    assert.equal(runner.started, 1, 'the canceled job never ran');

    const text = await (await fetch(`${a.url}/metrics`)).text();
    const samples = parsePrometheus(text);
    assert.equal(samples.get('cnxs_jobs{state="succeeded"}'), 1);
    assert.equal(samples.get('cnxs_jobs{state="canceled"}'), 1);
    assert.equal(samples.get('cnxs_jobs{state="queued"}'), 0);
    assert.equal(samples.get('cnxs_queue_depth'), 0);
    assert.ok(samples.get('process_resident_memory_bytes')! > 1e6);
    assert.equal(samples.get('cnxs_http_responses_total{method="POST",route="/v1/generations",code="429"}'), 1);
    // one job ran, with 2 steps: one gap between its progress reports
    assert.equal(samples.get('cnxs_job_seconds_count'), 1);
    assert.equal(samples.get('cnxs_job_seconds_bucket{le="+Inf"}'), 1);
    assert.equal(samples.get('cnxs_step_seconds_count'), 1);
  });

  test('a waiting event stream carries heartbeats; a client that hangs up on A1111\'s wait cancels its job', async () => {
    const slow = new ScriptedRunner();
    const { server } = await serveWith({ runner: slow });
    const b = api(server.url);
    const { id } = await json<{ id: string }>(await b.call('POST', '/v1/generations', { json: good }));
    const stream = new AbortController();
    const r = await fetch(`${b.url}/v1/generations/${id}/events`, { signal: stream.signal });
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!/: heartbeat\n\n/.test(text)) text += (await reader.read()).value ?? '';
    assert.match(text, /^event: status\ndata: \{"id":/);
    stream.abort();
    await reader.cancel().catch(() => {});

    const hangUp = new AbortController();
    const pending = fetch(`${b.url}/sdapi/v1/txt2img`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', steps: 2, alwayson_scripts: { controlnet: { args: [{ image: CONTROL_BASE64 }] } } }),
      signal: hangUp.signal,
    }).catch((e: unknown) => e);
    const jobs = async () => parsePrometheus(await (await fetch(`${b.url}/metrics`)).text());
    while ((await jobs()).get('cnxs_jobs{state="queued"}') !== 1) await new Promise((res) => setTimeout(res, 10));
    hangUp.abort();
    assert.equal(((await pending) as Error).name, 'AbortError');
    while ((await jobs()).get('cnxs_jobs{state="canceled"}') !== 1) await new Promise((res) => setTimeout(res, 10));
    slow.release(true);
    assert.equal((await waitFor(b, id, terminal))['status'], 'succeeded');
    assert.equal(slow.started, 1, 'the A1111 job never ran');
  });

  test('a keyless loopback server answers only requests addressed to a loopback name (DNS-rebinding guard)', async () => {
    const { server } = await serveWith({ runner, loopbackOnly: true });
    const port = new URL(server.url).port;
    const statusFor = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${server.url}/healthz`, { headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', `[::1]:${port}`]) assert.equal(await statusFor(host), 200, host);
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.nip.io:${port}`]) assert.equal(await statusFor(host), 403, host);
  });

  test('an unexpected error is a 500 with a generic message; the stack goes to the log only', async () => {
    const broken = await serveWith({
      runner,
      log: (l) => logged.push(l),
      queue: (q) => Object.assign(Object.create(q) as JobQueue, { get: () => Promise.reject(new TypeError('secret internals')) }),
    });
    const r = await fetch(`${broken.server.url}/v1/generations/abc`);
    assert.equal(r.status, 500);
    const text = await r.text();
    assert.doesNotMatch(text, /secret internals|TypeError|\.ts:/);
    assert.ok(logged.some((l) => l.includes('secret internals') && /\n\s+at /.test(l)), 'the stack is logged');
  });

  test('an error while the queue is unreachable (Redis down) is a 503 with Retry-After, not a 500', async () => {
    const down = await serveWith({
      runner,
      log: () => {},
      queue: (q) =>
        Object.assign(Object.create(q) as JobQueue, {
          get: () => Promise.reject(new Error('Stream isn\'t writeable and enableOfflineQueue options is false')),
          ready: () => Promise.resolve(false),
        }),
    });
    const r = await fetch(`${down.server.url}/v1/generations/abc`);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '5');
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /queue is unreachable/);
  });

  test('/openapi.json names every route the server answers, and only those; its request schema has the parser\'s fields', async () => {
    const doc = await json<{ openapi: string; paths: Record<string, Record<string, { security?: unknown[] }>>; components: { schemas: { GenerationRequest: { properties: Record<string, unknown> } } } }>(
      await fetch(`${a.url}/openapi.json`),
    );
    assert.equal(doc.openapi, '3.1.0');
    assert.deepEqual(doc, JSON.parse(JSON.stringify(openApiDocument())));
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    const served = routeTable(defaultUiDir()).map((r) => `${r.method} ${r.path}`).sort();
    assert.deepEqual(documented, served);
    // …and the server really answers each documented operation at that path (not a 404/405 of the router)
    for (const entry of documented) {
      const [method, template] = entry.split(' ') as [string, string];
      const path = template.replace('{id}', 'nope').replace('{n}', '0').replace('{file}', 'app.js');
      const r = await a.call(method, path, method === 'POST' ? { json: {} } : {});
      const body = r.headers.get('content-type')?.startsWith('application/json') ? await r.text() : '';
      assert.notEqual(r.status, 405, entry);
      assert.doesNotMatch(body, /no such route/, entry);
      // open operations are documented as open, the others as needing the key
      const needsKey = (await fetch(`${a.url}${path}`, { method, ...(method === 'POST' ? { body: '{}' } : {}) })).status === 401;
      const security = doc.paths[template]![method.toLowerCase()]!.security;
      assert.equal(security?.length !== 0, needsKey, `${entry}: security`);
    }
    assert.deepEqual(Object.keys(doc.components.schemas.GenerationRequest.properties).sort(), [...GENERATION_FIELDS].sort());
  });
});

/** `name{labels} value` samples of a Prometheus text exposition, every line checked against the format. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.trimEnd().split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      typed.add(type[1]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(typed.has(m[1]!) || typed.has(family), `${m[1]} has no # TYPE line before it`);
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value) || m[3] === 'NaN', line);
    samples.set(`${m[1]}${m[2] ?? ''}`, value);
  }
  return samples;
}
