/**
 * The Redis/BullMQ queue and worker on a real redis-server, with a fake runner (test/fake-runner.ts): the
 * JobQueue contract (submit, positions, status, images, events, cancel, counts, cap, readiness), the
 * worker's at-least-once handling (a job whose result is stored is not run again; a SIGKILLed worker's job
 * is taken over; a closing worker hands its job back) and a Redis restart under a followed job.
 * Each test uses a prefix of its own on one Redis.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueueFullError, type JobEvent, type JobStatus } from '../src/server/jobs.js';
import { RedisConnectionError } from '../src/server/redis-connection.js';
import { RedisQueue } from '../src/server/redis-queue.js';
import { startRedisWorker, type RedisWorker, type RedisWorkerOptions } from '../src/server/redis-worker.js';
import { RedisStore } from '../src/server/redis-store.js';
import { connectRedis } from '../src/server/redis-connection.js';
import { FakeRunner, fakeImage, fakeRequest } from './fake-runner.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
});

let prefixes = 0;
const FAST = { lockDurationMs: 2000, stalledIntervalMs: 500, shutdownGraceMs: 0 };

/** A queue and what a test opened, all closed when `use` returns or throws. */
async function withQueue(
  use: (q: RedisQueue, o: { prefix: string; worker: (runner: FakeRunner, extra?: Partial<RedisWorkerOptions>) => Promise<RedisWorker> }) => Promise<void>,
  queueOptions: { maxQueue?: number; pollMs?: number } = {},
): Promise<void> {
  const prefix = `t${++prefixes}`;
  const queue = await RedisQueue.connect({ url: redis.url, prefix, ...queueOptions });
  const workers: RedisWorker[] = [];
  try {
    await use(queue, {
      prefix,
      worker: async (runner, extra = {}) => {
        const w = await startRedisWorker({ url: redis.url, runner, prefix, ...FAST, ...(process.env.DEBUG_REDIS_TEST ? { log: (l: string) => console.log(l) } : {}), ...extra });
        workers.push(w);
        return w;
      },
    });
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await queue.close();
  }
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const finished = (q: RedisQueue, id: string) =>
  until(`job ${id} to finish`, async () => {
    const s = await q.get(id);
    return s && ['succeeded', 'failed', 'canceled'].includes(s.status) ? s : null;
  });

async function collect(events: AsyncIterable<JobEvent>): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

test('submit → queued with positions; a worker runs each once; status, images and counts', async () => {
  await withQueue(async (q, { worker }) => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await q.submit(fakeRequest(`job ${i}`, { seed: String(10 + i), numImages: 2 }));
      assert.equal(r.position, i, 'the n-th job waits behind n others');
      ids.push(r.id);
    }
    assert.equal(new Set(ids).size, 3);
    const s1 = await q.get(ids[1]!);
    assert.equal(s1?.status, 'queued');
    assert.equal(s1?.position, 1);
    assert.deepEqual((await q.counts()), { queued: 3, running: 0, succeeded: 0, failed: 0, canceled: 0 });
    assert.equal(await q.get('no-such-job'), null);

    const runner = new FakeRunner();
    await worker(runner);
    for (const [i, id] of ids.entries()) {
      const s = await finished(q, id);
      assert.equal(s.status, 'succeeded');
      assert.equal(s.imageCount, 2);
      assert.deepEqual(s.progress, { step: 2, total: 2 });
      assert.deepEqual(s.result?.seeds, [String(10 + i), String(11 + i)]);
      assert.ok(s.startedAt! >= s.createdAt && s.finishedAt! >= s.startedAt!);
      const req = fakeRequest(`job ${i}`, { seed: String(10 + i) });
      assert.deepEqual(await q.image(id, 0), fakeImage(req, 0));
      assert.deepEqual(await q.image(id, 1), fakeImage(req, 1));
      assert.equal(await q.image(id, 2), null);
      assert.equal(await q.runs(id), 1);
    }
    assert.deepEqual(runner.started, ['job 0', 'job 1', 'job 2'], 'first in, first out');
    assert.deepEqual(await q.counts(), { queued: 0, running: 0, succeeded: 3, failed: 0, canceled: 0 });
    assert.equal(await q.ready(), true);
  });
});

test('get never loses a job while it moves from queued to running to finished (polled throughout)', async () => {
  await withQueue(async (q, { worker }) => {
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => q.submit(fakeRequest(`fast ${i}`)).then((r) => r.id)));
    await worker(new FakeRunner());
    await worker(new FakeRunner());
    await Promise.all(
      ids.map(async (id) => {
        for (;;) {
          const s = await q.get(id);
          assert.ok(s, `job ${id} vanished`);
          if (s.status === 'succeeded') return;
          assert.ok(['queued', 'running'].includes(s.status), s.status);
        }
      }),
    );
  });
});

test('events: status, every step with its preview, then done', async () => {
  await withQueue(async (q, { worker }) => {
    const { id } = await q.submit(fakeRequest('followed', { steps: 3 }));
    const events = collect(q.events(id));
    await sleep(100);
    await worker(new FakeRunner(50));
    const got = await events;
    assert.equal(got[0]?.type, 'status');
    assert.equal(got.at(-1)?.type, 'done');
    const done = got.at(-1) as { status: JobStatus };
    assert.equal(done.status.status, 'succeeded');
    const steps = got.filter((e) => e.type === 'progress');
    assert.deepEqual(steps, [1, 2, 3].map((step) => ({ type: 'progress', step, total: 3, previewBase64: Buffer.from([step]).toString('base64') })));
    // a finished job: its status and done at once
    const again = await collect(q.events(id));
    assert.deepEqual(again.map((e) => e.type), ['status', 'done']);
    // unknown job: nothing
    assert.deepEqual(await collect(q.events('no-such-job')), []);
  });
});

test('cancel: a queued job never runs; a running job stops between steps', async () => {
  await withQueue(async (q, { worker }) => {
    const waiting = await q.submit(fakeRequest('never'));
    const c = await q.cancel(waiting.id);
    assert.equal(c?.status, 'canceled');
    assert.equal(c?.imageCount, 0);
    const runner = new FakeRunner(100);
    await worker(runner);
    const running = await q.submit(fakeRequest('stopped', { steps: 50 }));
    await until('the job to run', async () => ((await q.get(running.id))?.progress.step ?? 0) >= 2);
    const during = await q.cancel(running.id);
    assert.ok(during && ['running', 'canceled'].includes(during.status));
    const s = await finished(q, running.id);
    assert.equal(s.status, 'canceled');
    assert.ok(s.progress.step < 50, `stopped at step ${s.progress.step}`);
    assert.deepEqual(runner.started, ['stopped'], 'the canceled queued job was never run');
    assert.equal(await q.runs(waiting.id), 0);
    assert.equal((await q.cancel(running.id))?.status, 'canceled', 'canceling a finished job changes nothing');
    assert.equal(await q.cancel('no-such-job'), null);
    assert.equal((await q.counts()).canceled, 2);
  });
});

test('a runner error is recorded as failed with one line, and not retried', async () => {
  await withQueue(async (q, { worker }) => {
    const runner = new FakeRunner();
    await worker(runner);
    const { id } = await q.submit(fakeRequest('fail please'));
    const s = await finished(q, id);
    assert.equal(s.status, 'failed');
    assert.equal(s.error, 'unexpected error: bad luck at step 1; at somewhere (stack line)');
    assert.doesNotMatch(s.error!, /\n/);
    await sleep(300);
    assert.equal(runner.started.length, 1);
    assert.equal((await q.counts()).failed, 1);
  });
});

test('a job whose result is already stored is completed without running again, its bytes kept', async () => {
  await withQueue(async (q, { prefix, worker }) => {
    const { id } = await q.submit(fakeRequest('done before'));
    // as if an earlier run stored its result and died before completing the BullMQ job
    const client = await connectRedis(redis.url, 'api');
    try {
      const store = new RedisStore(client, prefix);
      const earlier = new Uint8Array([1, 2, 3]);
      const t = Date.now();
      const record = { status: 'succeeded' as const, createdAt: t, finishedAt: t, step: 2, total: 2, imageCount: 1 };
      assert.equal(await store.writeRecord(id, record, [earlier], 60), true);
      assert.equal(await store.writeRecord(id, { ...record, status: 'failed' }, [new Uint8Array([9])], 60), false, 'first writer wins');
      const runner = new FakeRunner();
      await worker(runner);
      await until('the job to leave the queue', async () => (await q.counts()).queued === 0);
      await sleep(300);
      assert.deepEqual(runner.started, []);
      assert.equal((await q.get(id))?.status, 'succeeded');
      assert.deepEqual(await q.image(id, 0), earlier);
    } finally {
      client.disconnect();
    }
  });
});

test('queue cap: QueueFullError once maxQueue jobs wait, Retry-After about one run (10 s before any ran)', async () => {
  await withQueue(
    async (q, { worker }) => {
      await q.submit(fakeRequest('a'));
      await q.submit(fakeRequest('b'));
      await assert.rejects(q.submit(fakeRequest('c')), (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds === 10);
      const w = await worker(new FakeRunner(700)); // 2 steps: a run takes 1.4 s
      await until('both to finish', async () => (await q.counts()).succeeded === 2);
      await w.close();
      await q.submit(fakeRequest('d'));
      await q.submit(fakeRequest('e'));
      await assert.rejects(q.submit(fakeRequest('f')), (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds === 2);
    },
    { maxQueue: 2 },
  );
});

test('a closing worker hands its running job back; another worker runs it from the start', async () => {
  await withQueue(async (q, { worker }) => {
    const first = new FakeRunner(100);
    const w1 = await worker(first);
    const { id } = await q.submit(fakeRequest('handed back', { steps: 30 }));
    await until('the job to run', async () => (await q.get(id))?.status === 'running');
    await w1.close(); // shutdownGraceMs 0: hand back at once
    const back = await q.get(id);
    assert.equal(back?.status, 'queued');
    assert.equal(back?.position, 0, 'handed back to the front');
    await worker(new FakeRunner(0));
    const s = await finished(q, id);
    assert.equal(s.status, 'succeeded');
    assert.equal(await q.runs(id), 2);
  });
});

test('a SIGKILLed worker process: its job is taken over by another worker within seconds', async () => {
  await withQueue(async (q, { prefix, worker }) => {
    const code = `
      import { startRedisWorker } from ${JSON.stringify(new URL('../src/server/redis-worker.ts', import.meta.url).href)};
      import { FakeRunner } from ${JSON.stringify(new URL('./fake-runner.ts', import.meta.url).href)};
      await startRedisWorker({ url: ${JSON.stringify(redis.url)}, prefix: ${JSON.stringify(prefix)}, runner: new FakeRunner(200),
        lockDurationMs: 2000, stalledIntervalMs: 500, log: (l) => console.log(l) });
      console.log('ready');`;
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const { id } = await q.submit(fakeRequest('orphaned', { steps: 100 }));
      await until('the child worker to run the job', async () => ((await q.get(id))?.progress.step ?? 0) >= 1, 30_000).catch((e: Error) => {
        throw new Error(`${e.message}; child output:\n${out}`);
      });
      child.kill('SIGKILL');
      const killedAt = Date.now();
      await worker(new FakeRunner(0));
      const s = await finished(q, id);
      assert.equal(s.status, 'succeeded');
      assert.ok(Date.now() - killedAt < 10_000, `taken over after ${Date.now() - killedAt} ms`);
      assert.equal(await q.runs(id), 2);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

test('Redis restarted under a running, followed job: the stream still ends with done', async () => {
  await withQueue(
    async (q, { worker }) => {
      await worker(new FakeRunner(150));
      const { id } = await q.submit(fakeRequest('through a restart', { steps: 12 }));
      const events = collect(q.events(id));
      await until('the job to run', async () => ((await q.get(id))?.progress.step ?? 0) >= 2);
      await redis.restart({ downMs: 500 });
      assert.equal(await until('the queue to be ready', () => q.ready()), true);
      const got = await events;
      const done = got.at(-1);
      assert.equal(done?.type, 'done');
      assert.equal((done as { status: JobStatus }).status.status, 'succeeded');
      assert.deepEqual(await q.image(id, 0), fakeImage(fakeRequest('through a restart'), 0));
    },
    { pollMs: 500 },
  );
});

test('connect: a malformed URL and an unreachable Redis fail with one clear line', async () => {
  await assert.rejects(RedisQueue.connect({ url: 'localhost:6379' }), (e: unknown) => e instanceof RedisConnectionError && /redis:\/\//.test(e.message));
  await assert.rejects(RedisQueue.connect({ url: 'http://127.0.0.1:6379' }), /redis:\/\/ or rediss:\/\//);
  await assert.rejects(
    RedisQueue.connect({ url: 'redis://:secret@127.0.0.1:1', connectTimeoutMs: 500 }),
    (e: unknown) => e instanceof RedisConnectionError && /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/.test(e.message) && !e.message.includes('secret'),
  );
});
