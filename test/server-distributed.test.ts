/**
 * The distributed mode end to end on the tiny checkpoint: a real redis-server (test/redis-server.ts), the
 * API as `cnxs serve --redis URL --workers 0` and two `cnxs worker` processes, all children of this test,
 * talking HTTP to the API only. In order, on the same processes:
 *  1. 200 jobs submitted at once all succeed exactly once: one run each (the worker's Redis run counter),
 *     each id its own image (its seed in the PNG's parameters), the reference settings' image within one
 *     rounding step of diffusers' (pipeline case b_generator_seed0), nothing left queued or failed;
 *  2. the worker running a long job is SIGKILLed: the other worker takes the job over and finishes it;
 *  3. Redis is killed and restarted (append-only file) under a batch of jobs: every one completes once it is back;
 *  4. SIGTERM to the worker running a long job: it hands the job back after its grace period and exits 0, the
 *     job finishes on the other worker; SIGTERM to the API: exit 0.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadImage } from '../src/image/load.js';
import { readPngText } from '../src/image/png-text.js';
import { RedisQueue } from '../src/server/redis-queue.js';
import { freePort, spawnCnxs, waitForHttp, type CnxsProcess } from './cnxs-process.js';
import { fixture, tempDir } from './helpers.js';
import { readCases } from './pipeline-cases.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

const D = fixture('tiny-sd-cnxs');
const CONTROL = readFileSync(join(D, 'pipeline', 'control.png')).toString('base64');
const PROMPT = 'a photo of a bird';
/** Short locks so a dead worker's job comes back within seconds. */
const WORKER_ARGS = ['--lock-seconds', '4', '--stalled-check-seconds', '1', '--grace-seconds', '1', '--offline'];
const cacheHome = tempDir('cnxs-dist-cache-');

let redis: RedisServer;
let api: CnxsProcess;
let apiUrl: string;
let queue: RedisQueue;
const workers: CnxsProcess[] = [];

const env = { ...process.env, XDG_CACHE_HOME: cacheHome, HF_HUB_OFFLINE: '1' };
const startWorker = (name: string) => {
  const w = spawnCnxs(name, ['worker', '--redis', redis.url, '--model', D, '--controlnet', join(D, 'controlnet'), ...WORKER_ARGS], env);
  workers.push(w);
  return w;
};

before(async () => {
  redis = await startRedisServer();
  const port = await freePort();
  apiUrl = `http://127.0.0.1:${port}`;
  api = spawnCnxs('cnxs serve', ['serve', '--redis', redis.url, '--workers', '0', '--host', '127.0.0.1', '--port', String(port), '--max-queue', '1000'], env);
  const ws = [startWorker('worker 1'), startWorker('worker 2')];
  await Promise.all([
    waitForHttp(`${apiUrl}/healthz`, 60_000, () => api.output()),
    ...ws.map((w) => w.waitFor(/ready: taking jobs/, 60_000)),
  ]);
  queue = await RedisQueue.connect({ url: redis.url });
});

after(async () => {
  await queue?.close();
  await Promise.all([api, ...workers].filter(Boolean).map((p) => p.kill('SIGKILL')));
  await redis?.stop();
});

interface Submitted {
  id: string;
  seed: number;
  steps: number;
}

async function submit(seed: number, steps = 2): Promise<Submitted> {
  const r = await fetch(`${apiUrl}/v1/generations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: PROMPT, image: CONTROL, steps, seed: String(seed) }),
  });
  const body = (await r.json()) as { id: string; status: string; position: number };
  assert.equal(r.status, 202, JSON.stringify(body));
  assert.equal(body.status, 'queued');
  return { id: body.id, seed, steps };
}

interface StatusBody {
  id: string;
  status: string;
  progress: { step: number; total: number };
  images?: string[];
  error?: string;
}

async function status(id: string): Promise<StatusBody> {
  const r = await fetch(`${apiUrl}/v1/generations/${id}`);
  assert.equal(r.status, 200);
  return (await r.json()) as StatusBody;
}

async function png(url: string): Promise<Uint8Array> {
  const r = await fetch(new URL(url, apiUrl));
  assert.equal(r.status, 200, url);
  assert.equal(r.headers.get('content-type'), 'image/png');
  return new Uint8Array(await r.arrayBuffer());
}

/** Wait until no job is queued or running (the queue's own counts), then return the counts. */
async function drained(timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await queue.counts().catch(() => null);
    if (c && c.queued === 0 && c.running === 0) return c;
    if (Date.now() > deadline) throw new Error(`jobs still pending after ${timeoutMs} ms: ${JSON.stringify(c)}\n${workers.map((w) => `--- ${w.name}\n${w.output().slice(-3000)}`).join('\n')}`);
    await sleep(200);
  }
}

/** Every job succeeded once, with one image that is its own (its seed and steps in the parameters). */
async function checkSucceeded(jobs: readonly Submitted[], maxRuns: number): Promise<Map<string, Uint8Array>> {
  const images = new Map<string, Uint8Array>();
  for (let i = 0; i < jobs.length; i += 20) {
    await Promise.all(
      jobs.slice(i, i + 20).map(async (job) => {
        const s = await status(job.id);
        assert.equal(s.status, 'succeeded', `${job.id}: ${JSON.stringify(s)}`);
        assert.equal(s.images?.length, 1);
        const bytes = await png(s.images![0]!);
        const parameters = readPngText(bytes)['parameters'] ?? '';
        assert.match(parameters, new RegExp(`^${PROMPT}\\nSteps: ${job.steps}, .*Seed: ${job.seed}, Size: 64x64`), job.id);
        const runs = await queue.runs(job.id);
        assert.ok(runs >= 1 && runs <= maxRuns, `${job.id} ran ${runs} times`);
        images.set(job.id, bytes);
      }),
    );
  }
  return images;
}

test('200 jobs submitted at once through the API and two workers: each runs once and has its own image', async () => {
  // every 50th job: pipeline case b_generator_seed0's settings (4 steps, seed 0), whose image diffusers made
  const settings = Array.from({ length: 200 }, (_, i) => (i % 50 === 0 ? { seed: 0, steps: 4 } : { seed: 1000 + i, steps: 2 }));
  const jobs = await Promise.all(settings.map((s) => submit(s.seed, s.steps)));
  assert.equal(new Set(jobs.map((j) => j.id)).size, 200, 'distinct ids');
  const counts = await drained(120_000);
  assert.equal(counts.failed, 0);
  assert.equal(counts.canceled, 0);
  assert.equal(counts.succeeded, 200);
  const images = await checkSucceeded(jobs, 1);

  const reference = jobs.filter((j) => j.seed === 0).map((j) => images.get(j.id)!);
  assert.equal(reference.length, 4);
  for (const r of reference.slice(1)) assert.deepEqual(r, reference[0], 'the same request, the same bytes');
  const { cases, read } = readCases(join(D, 'pipeline'));
  const expected = read(cases.find((c) => c.name === 'b_generator_seed0')!.tensors['images']!).data as Float32Array;
  const got = (await loadImage(reference[0]!)).data;
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]! * 255));
  assert.ok(worst <= 0.5 + 1e-2, `pixel off by ${worst}`);
  const others = new Set(jobs.filter((j) => j.seed !== 0).map((j) => Buffer.from(images.get(j.id)!).toString('base64')));
  assert.equal(others.size, 196, 'different seeds, different images');
  // both workers took part
  for (const w of workers) assert.match(w.output(), /: succeeded/, `${w.name} ran no job`);
});

test('a worker SIGKILLed mid-job: the other worker takes the job over and finishes it', async () => {
  const job = await submit(7, 150);
  const deadline = Date.now() + 60_000;
  let runner: CnxsProcess | undefined;
  while (!runner) {
    const s = await status(job.id);
    if (s.status === 'running' && s.progress.step >= 2) runner = workers.find((w) => w.output().includes(`job ${job.id}: running`));
    assert.ok(Date.now() < deadline, `the job did not start: ${JSON.stringify(s)}`);
    if (!runner) await sleep(50);
  }
  assert.notEqual((await status(job.id)).status, 'succeeded', 'killed mid-job');
  await runner.kill('SIGKILL');
  const survivor = workers.find((w) => w !== runner && w.child.exitCode === null && w.child.signalCode === null)!;
  // a fresh worker for the next test meanwhile (it may take the job too; either way it must finish once)
  startWorker('worker 3');
  await drained(60_000);
  await checkSucceeded([job], 2);
  assert.equal(await queue.runs(job.id), 2, 'run again after the kill');
  assert.match(survivor.output() + workers.at(-1)!.output(), new RegExp(`job ${job.id}: running \\(run 2`));
});

test('Redis killed and restarted under a batch of jobs: every job completes once it is back', async () => {
  await workers.at(-1)!.waitFor(/ready: taking jobs/, 60_000);
  const jobs = await Promise.all(Array.from({ length: 30 }, (_, i) => submit(2000 + i)));
  const deadline = Date.now() + 60_000;
  while ((await queue.counts()).succeeded < 200 + 1 + 5) {
    assert.ok(Date.now() < deadline, 'no progress before the restart');
    await sleep(20);
  }
  await redis.restart({ signal: 'SIGKILL', downMs: 1000 });
  await drained(90_000);
  // a job whose run was cut by the restart may run twice; it still has one result
  await checkSucceeded(jobs, 2);
  const ready = await fetch(`${apiUrl}/readyz`);
  await ready.arrayBuffer();
  assert.equal(ready.status, 200, 'the API is ready again');
});

test('SIGTERM: a worker hands its running job back and exits 0; the API exits 0', async () => {
  const job = await submit(8, 150);
  const deadline = Date.now() + 60_000;
  let runner: CnxsProcess | undefined;
  while (!runner) {
    const s = await status(job.id);
    if (s.status === 'running' && s.progress.step >= 1) runner = workers.find((w) => w.output().includes(`job ${job.id}: running`) && w.child.exitCode === null);
    assert.ok(Date.now() < deadline, `the job did not start: ${JSON.stringify(s)}`);
    if (!runner) await sleep(50);
  }
  assert.equal(await runner.kill('SIGTERM', 30_000), 0, runner.output().slice(-2000));
  assert.match(runner.output(), /SIGTERM: finishing the running job, then exiting/);
  assert.match(runner.output(), /stopped\n$/);
  await drained(60_000);
  await checkSucceeded([job], 2);
  if (/handed back to the queue/.test(runner.output())) assert.equal(await queue.runs(job.id), 2);
  assert.equal(await api.kill('SIGTERM', 30_000), 0, api.output().slice(-2000));
});
