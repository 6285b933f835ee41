/** The in-process queue with a fake runner the test drives step by step: order, positions, cap, cancel, events, expiry, close. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlNetXSError } from '../src/errors.js';
import { EmbeddedQueue, QueueClosedError, type EmbeddedQueueOptions } from '../src/server/embedded-queue.js';
import { QueueFullError, type GenerationOutput, type GenerationRequest, type GenerationRunner, type JobEvent, type RunOptions } from '../src/server/jobs.js';

interface FakeRun {
  request: GenerationRequest;
  step(n: number): void;
  finish(): void;
  fail(e: unknown): void;
}

/** Each run waits for the test: `step(n)` reports progress with a 1-byte "preview", `finish()` returns one image. */
class FakeRunner implements GenerationRunner {
  readonly runs: FakeRun[] = [];
  /** Runs that do not stop when their signal aborts (a step that never ends). */
  ignoreAbort = false;

  run(request: GenerationRequest, o: RunOptions = {}): Promise<GenerationOutput> {
    return new Promise((resolve, reject) => {
      if (!this.ignoreAbort) o.signal?.addEventListener('abort', () => reject(o.signal!.reason));
      this.runs.push({
        request,
        step: (n) => o.onProgress?.({ step: n, total: request.steps, previewPng: Uint8Array.of(n) }),
        finish: () => resolve(output(request)),
        fail: reject,
      });
    });
  }

  last(): FakeRun {
    return this.runs[this.runs.length - 1]!;
  }
}

function output(request: GenerationRequest): GenerationOutput {
  return {
    images: [new TextEncoder().encode(`png of ${request.prompt}`)],
    info: { parameters: [request.prompt], seeds: [request.seed], width: 64, height: 64, sampler: 'DDIM', device: 'cpu', nsfwContentDetected: null, seconds: 1 },
  };
}

const req = (prompt: string, steps = 3): GenerationRequest => ({ prompt, imageBase64: '', steps, guidanceScale: 7.5, controlScale: 1, controlStart: 0, controlEnd: 1, seed: '1', numImages: 1 });

/** A queue on a fake runner and a clock the test moves. */
function setup(over: Partial<EmbeddedQueueOptions> = {}) {
  const runner = new FakeRunner();
  const clock = { t: 1_000_000 };
  const queue = new EmbeddedQueue({ runner, maxQueue: 10, resultTtlSeconds: 60, now: () => clock.t, ...over });
  return { runner, clock, queue };
}

/** Let promise callbacks run (the queue starts the next job when a run's promise settles). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('FIFO with positions: one job runs, the others wait in order; each finishes with its images', async () => {
  const { runner, queue } = setup();
  const a = await queue.submit(req('a'));
  const b = await queue.submit(req('b'));
  const c = await queue.submit(req('c'));
  assert.deepEqual([a.position, b.position, c.position], [0, 0, 1]);
  assert.equal((await queue.get(a.id))!.status, 'running');
  assert.deepEqual([(await queue.get(b.id))!.position, (await queue.get(c.id))!.position], [0, 1]);
  assert.equal((await queue.get(a.id))!.position, undefined);
  assert.deepEqual(await queue.counts(), { queued: 2, running: 1, succeeded: 0, failed: 0, canceled: 0 });
  runner.last().finish();
  await settle();
  assert.equal(runner.last().request.prompt, 'b');
  assert.equal((await queue.get(c.id))!.position, 0);
  runner.last().finish();
  await settle();
  runner.last().finish();
  await settle();
  assert.deepEqual(runner.runs.map((r) => r.request.prompt), ['a', 'b', 'c']);
  const done = (await queue.get(c.id))!;
  assert.equal(done.status, 'succeeded');
  assert.equal(done.imageCount, 1);
  assert.deepEqual(done.result?.parameters, ['c']);
  assert.equal(new TextDecoder().decode((await queue.image(c.id, 0))!), 'png of c');
  assert.equal(await queue.image(c.id, 1), null);
  assert.equal(await queue.get('nope'), null);
  assert.deepEqual(await queue.counts(), { queued: 0, running: 0, succeeded: 3, failed: 0, canceled: 0 });
});

test('cap: a busy worker with maxQueue jobs waiting refuses with Retry-After from recent run times', async () => {
  const { runner, clock, queue } = setup({ maxQueue: 1 });
  await queue.submit(req('a'));
  await queue.submit(req('b'));
  // no run has finished yet: the first guess
  await assert.rejects(queue.submit(req('c')), (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds === 10);
  clock.t += 20_000; // a took 20 s
  runner.last().finish();
  await settle();
  clock.t += 5_000; // b has run 5 s of its expected 20
  await queue.submit(req('c'));
  await assert.rejects(queue.submit(req('d')), (e: unknown) => e instanceof QueueFullError && e.retryAfterSeconds === 15);
  // maxQueue 0: an idle worker still takes a job (it never waits), a second one is refused
  const zero = setup({ maxQueue: 0 }).queue;
  await zero.submit(req('x'));
  await assert.rejects(zero.submit(req('y')), QueueFullError);
});

test('cancel: a queued job is canceled at once and never runs; a running one stops between steps, then the next starts', async () => {
  const { runner, queue } = setup();
  const a = await queue.submit(req('a'));
  const b = await queue.submit(req('b'));
  const c = await queue.submit(req('c'));
  const canceled = (await queue.cancel(b.id))!;
  assert.equal(canceled.status, 'canceled');
  assert.ok(canceled.finishedAt !== undefined);
  assert.equal((await queue.get(c.id))!.position, 0, 'c moved up');
  runner.last().step(1);
  const stopping = (await queue.cancel(a.id))!;
  assert.equal(stopping.status, 'running', 'running until the step ends');
  await settle();
  assert.equal((await queue.get(a.id))!.status, 'canceled');
  assert.deepEqual((await queue.get(a.id))!.progress, { step: 1, total: 3 });
  assert.equal((await queue.get(a.id))!.imageCount, 0);
  assert.deepEqual(runner.runs.map((r) => r.request.prompt), ['a', 'c'], 'b never ran');
  // cancelling a finished job changes nothing; an unknown one is null
  assert.equal((await queue.cancel(b.id))!.status, 'canceled');
  assert.equal(await queue.cancel('nope'), null);
});

test('events: status first, a status when it starts, progress with previews, done last; a finished job: status and done', async () => {
  const { runner, queue } = setup();
  await queue.submit(req('a'));
  const b = await queue.submit(req('b', 2));
  const seen: JobEvent[] = [];
  const follow = (async () => {
    for await (const e of queue.events(b.id)) seen.push(e);
  })();
  await settle();
  runner.last().finish(); // a
  await settle();
  runner.last().step(1);
  runner.last().step(2);
  runner.last().finish();
  await follow;
  assert.deepEqual(
    seen.map((e) => (e.type === 'progress' ? `progress ${e.step}/${e.total} ${e.previewBase64}` : `${e.type} ${e.status.status}${e.status.position !== undefined ? ` @${e.status.position}` : ''}`)),
    ['status queued @0', 'status running', 'progress 1/2 AQ==', 'progress 2/2 Ag==', 'done succeeded'],
  );
  const last = seen[seen.length - 1]!;
  assert.ok(last.type === 'done' && last.status.imageCount === 1 && last.status.result?.parameters[0] === 'b');
  const again: string[] = [];
  for await (const e of queue.events(b.id)) again.push(e.type);
  assert.deepEqual(again, ['status', 'done']);
  const none: string[] = [];
  for await (const e of queue.events('nope')) none.push(e.type);
  assert.deepEqual(none, []);
});

test('events: breaking out or aborting the signal ends the iterator; the job goes on', async () => {
  const { runner, queue } = setup();
  const a = await queue.submit(req('a'));
  for await (const e of queue.events(a.id)) {
    assert.equal(e.type, 'status');
    break;
  }
  const stop = new AbortController();
  const types: string[] = [];
  const follow = (async () => {
    for await (const e of queue.events(a.id, { signal: stop.signal })) {
      types.push(e.type);
      if (e.type === 'progress') stop.abort();
    }
  })();
  await settle();
  runner.last().step(1);
  runner.last().step(2);
  await follow;
  assert.deepEqual(types, ['status', 'progress']);
  runner.last().finish();
  await settle();
  assert.equal((await queue.get(a.id))!.status, 'succeeded');
  const aborted = new AbortController();
  aborted.abort();
  const after: string[] = [];
  for await (const e of queue.events(a.id, { signal: aborted.signal })) after.push(e.type);
  assert.deepEqual(after, []);
});

test('a failing run: failed with one line (our errors as they are, others marked unexpected), and the next job runs', async () => {
  const { runner, queue } = setup();
  const a = await queue.submit(req('a'));
  const b = await queue.submit(req('b'));
  runner.last().fail(new ControlNetXSError('steps 2000 is more than this model\'s scheduler was trained on (1000)'));
  await settle();
  runner.last().fail(new Error('boom\n    at somewhere.js:1'));
  await settle();
  assert.deepEqual([(await queue.get(a.id))!.status, (await queue.get(a.id))!.error], ['failed', "steps 2000 is more than this model's scheduler was trained on (1000)"]);
  assert.equal((await queue.get(b.id))!.error, 'unexpected error: boom; at somewhere.js:1');
});

test('results expire resultTtlSeconds after the job finished', async () => {
  const { runner, clock, queue } = setup({ resultTtlSeconds: 60 });
  const a = await queue.submit(req('a'));
  clock.t += 5_000;
  runner.last().finish();
  await settle();
  clock.t += 59_999;
  assert.equal((await queue.get(a.id))!.status, 'succeeded');
  assert.ok(await queue.image(a.id, 0));
  clock.t += 1;
  assert.equal(await queue.get(a.id), null);
  assert.equal(await queue.image(a.id, 0), null);
  const events: string[] = [];
  for await (const e of queue.events(a.id)) events.push(e.type);
  assert.deepEqual(events, []);
  assert.deepEqual(await queue.counts(), { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 });
  await queue.close();
});

test('close: no new jobs, waiting ones failed, the running one finishes, then close resolves', async () => {
  const { runner, queue } = setup({ closeGraceSeconds: 3600 });
  const a = await queue.submit(req('a'));
  const b = await queue.submit(req('b'));
  let closed = false;
  const closing = queue.close().then(() => (closed = true));
  assert.equal(await queue.ready(), false);
  await assert.rejects(queue.submit(req('c')), QueueClosedError);
  const waiting = (await queue.get(b.id))!;
  assert.deepEqual([waiting.status, waiting.error], ['failed', 'the server shut down before this job started']);
  await settle();
  assert.equal(closed, false, 'waits for the running job');
  runner.last().step(1);
  runner.last().finish();
  await closing;
  assert.equal((await queue.get(a.id))!.status, 'succeeded');
  assert.deepEqual(runner.runs.map((r) => r.request.prompt), ['a']);
  assert.equal(queue.close(), queue.close(), 'one close');
});

test('close: past the grace period the running job is stopped and failed with a message; a run that never stops is failed too', async () => {
  const { queue } = setup({ closeGraceSeconds: 0.01 });
  const a = await queue.submit(req('a'));
  await queue.close();
  const s = (await queue.get(a.id))!;
  assert.deepEqual([s.status, s.error], ['failed', 'the server shut down while this job was running (stopped after a 0.01 s grace period)']);

  const stuck = setup({ closeGraceSeconds: 0.01 });
  stuck.runner.ignoreAbort = true;
  const b = await stuck.queue.submit(req('b'));
  await stuck.queue.close();
  assert.equal((await stuck.queue.get(b.id))!.status, 'failed');
  // the run ending later changes nothing
  stuck.runner.last().finish();
  await settle();
  assert.equal((await stuck.queue.get(b.id))!.status, 'failed');
});
