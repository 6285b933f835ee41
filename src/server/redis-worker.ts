/**
 * A generation worker on the Redis queue (`cnxs worker`): takes one BullMQ job at a time, runs it on the
 * loaded pipeline, and stores the result where every API process reads it (`redis-store.ts`).
 *
 * At-least-once: a job is only removed from Redis once its result is stored, so a worker that dies
 * mid-job (SIGKILL, lost machine) leaves a job whose lock expires; another worker's stalled-job check
 * (every `stalledIntervalMs`) puts it back in the queue, within about lockDuration + 2 × stalledInterval,
 * and runs it again from the start — up to `maxStalledCount` times, after which BullMQ fails it. A job can
 * therefore run more than once (also when Redis is away longer than the lock lasts), but it has one
 * result: the record is written once (first writer wins, images with it), a worker that picks up a job
 * whose record exists completes it without running it, and a run's own record write comes before the
 * BullMQ completion. Results are the same bytes whichever run wins, since a request fixes its seed.
 *
 * A runner's error is recorded as `failed` with its one-line message and the job completes: errors a
 * request causes are not retried. A cancel (the flag `redis-queue.ts` sets) is checked when the job
 * starts and after every step; the run's signal then stops it between steps and `canceled` is recorded.
 *
 * `close()` stops taking jobs and lets the running one finish for `shutdownGraceMs`; after that it is
 * stopped between steps and handed back to the front of the queue for another worker.
 */
import { Worker, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { ControlNetXSError } from '../errors.js';
import type { GenerationOutput, GenerationRequest, GenerationRunner } from './jobs.js';
import { connectRedis, redisOptions, watchConnection } from './redis-connection.js';
import { DEFAULT_PREFIX, QUEUE_NAME, RedisStore, type JobRecord } from './redis-store.js';

export interface RedisWorkerOptions {
  url: string;
  runner: GenerationRunner;
  /** Key prefix shared with the API processes (default `cnxs`). */
  prefix?: string;
  log?: (line: string) => void;
  /** How long a job's lock lasts without renewal (renewed every half of it; default 30000 ms). */
  lockDurationMs?: number;
  /** How often this worker looks for jobs whose worker died (default 15000 ms). */
  stalledIntervalMs?: number;
  /** How many times a job may be taken back from a dead worker before it fails (default 2). */
  maxStalledCount?: number;
  /** How long `close()` lets the running job finish before handing it back (default 20000 ms). */
  shutdownGraceMs?: number;
  /** The first connect gives up after this long (default 10000 ms). */
  connectTimeoutMs?: number;
}

export interface RedisWorker {
  /** Stop taking jobs; finish the running one within the grace period or hand it back; release Redis. */
  close(): Promise<void>;
}

/** One line for the user, as the embedded queue words it: our errors' messages as they are, others marked unexpected; never a stack. */
function errorLine(e: unknown): string {
  const line = oneLine(e);
  return e instanceof ControlNetXSError ? line : `unexpected error: ${line}`;
}

function oneLine(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.split('\n').map((s) => s.trim()).filter(Boolean).join('; ') || 'the generation failed';
}

function base64(png: Uint8Array): string {
  return Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64');
}

export async function startRedisWorker(options: RedisWorkerOptions): Promise<RedisWorker> {
  const log = options.log ?? (() => {});
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const lockDuration = options.lockDurationMs ?? 30_000;
  const client = await connectRedis(options.url, 'worker', options.connectTimeoutMs);
  const stopWatching = watchConnection(client, 'worker', log);
  const store = new RedisStore(client, prefix);
  /** The job being run, for close() to stop and hand back. */
  let current: { id: string; controller: AbortController; handBack: boolean } | null = null;

  const processJob = async (job: Job<GenerationRequest>, token?: string): Promise<void> => {
    const id = job.id;
    if (id === undefined) return;
    const controller = new AbortController();
    const running = { id, controller, handBack: false };
    current = running;
    try {
      await runJob(job, id, running, token);
    } finally {
      current = null;
    }
  };

  const runJob = async (
    job: Job<GenerationRequest>,
    id: string,
    running: { controller: AbortController; handBack: boolean },
    token: string | undefined,
  ): Promise<void> => {
    const { controller } = running;
    const ttl = await store.resultTtlSeconds();
    if (await store.hasRecord(id)) {
      log(`job ${id}: already finished; not run again`);
      return;
    }
    const runs = await store.countRun(id, ttl);
    const createdAt = job.timestamp;
    const startedAt = Date.now();
    const total = job.data.steps;
    const finish = async (record: Omit<JobRecord, 'createdAt' | 'startedAt' | 'finishedAt' | 'imageCount'>, images: Uint8Array[] = []) => {
      const written = await store.writeRecord(
        id,
        { ...record, createdAt, startedAt, finishedAt: Date.now(), imageCount: images.length },
        images,
        ttl,
      );
      if (!written) log(`job ${id}: another run stored its result first; kept that one`);
    };
    if (await store.cancelRequested(id)) {
      await finish({ status: 'canceled', step: 0, total });
      log(`job ${id}: canceled before it started`);
      return;
    }
    log(`job ${id}: running${runs > 1 ? ` (run ${runs}: a worker died on it or handed it back)` : ''}`);
    let step = 0;
    let canceled = false;
    // progress reports in order, all of them before the job completes
    let reported: Promise<unknown> = Promise.resolve();
    const onProgress = (p: { step: number; total: number; previewPng?: Uint8Array }) => {
      step = p.step;
      const progress = { step: p.step, total: p.total, ...(p.previewPng ? { preview: base64(p.previewPng) } : {}) };
      reported = reported.then(() => job.updateProgress(progress)).catch((e: unknown) => log(`job ${id}: progress not reported: ${oneLine(e)}`));
      void store.cancelRequested(id).then(
        (yes) => {
          if (yes && !controller.signal.aborted) {
            canceled = true;
            controller.abort();
          }
        },
        () => {},
      );
    };
    let output: GenerationOutput;
    try {
      if (controller.signal.aborted) throw new Error('stopped before it started');
      output = await options.runner.run(job.data, { signal: controller.signal, onProgress });
    } catch (e) {
      await reported;
      if (running.handBack) {
        // moveToWait puts it at the front of the queue; WaitingError tells BullMQ it is no failure
        await job.moveToWait(token);
        log(`job ${id}: handed back to the queue at step ${step}`);
        throw new WaitingError();
      }
      if (canceled || (controller.signal.aborted && (await store.cancelRequested(id)))) {
        await finish({ status: 'canceled', step, total });
        log(`job ${id}: canceled at step ${step}`);
      } else {
        const error = errorLine(e);
        await finish({ status: 'failed', step, total, error });
        log(`job ${id}: failed: ${error}`);
      }
      return;
    }
    await reported;
    await finish({ status: 'succeeded', step: total, total, info: output.info }, output.images);
    log(`job ${id}: succeeded (${output.images.length} image${output.images.length === 1 ? '' : 's'}, ${output.info.seconds.toFixed(2)} s)`);
  };

  const worker = new Worker<GenerationRequest, void>(QUEUE_NAME, processJob, {
    connection: { ...redisOptions('worker'), url: options.url, lazyConnect: false },
    prefix,
    concurrency: 1,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? 15_000,
    maxStalledCount: options.maxStalledCount ?? 2,
    autorun: false,
  });
  // BullMQ reports every failed reconnect attempt; the connection watcher already said Redis is away
  worker.on('error', (e: Error) => {
    if (client.status === 'ready') log(`worker: ${oneLine(e)}`);
  });
  worker.on('stalled', (jobId: string) => log(`job ${jobId}: its worker stopped renewing the lock; back in the queue`));
  try {
    await worker.waitUntilReady();
  } catch (e) {
    await worker.close(true).catch(() => {});
    stopWatching();
    client.disconnect();
    throw e;
  }
  const running = worker.run().catch((e: unknown) => log(`worker stopped: ${oneLine(e)}`));

  let closing: Promise<void> | null = null;
  return {
    close() {
      closing ??= (async () => {
        const grace = setTimeout(() => {
          if (current) {
            log(`job ${current.id}: still running after the shutdown grace period; handing it back`);
            current.handBack = true;
            current.controller.abort();
          }
        }, options.shutdownGraceMs ?? 20_000);
        try {
          await worker.close();
          await running;
        } finally {
          clearTimeout(grace);
          stopWatching();
          await quit(client);
        }
      })();
      return closing;
    },
  };
}

async function quit(client: Redis): Promise<void> {
  await client.quit().catch(() => client.disconnect());
}
