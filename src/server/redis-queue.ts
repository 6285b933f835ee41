/**
 * The JobQueue on Redis with BullMQ, for API processes whose jobs run in `cnxs worker`s (`redis-worker.ts`)
 * on any machine: the API side and the workers share only Redis.
 *
 * - `submit` adds a BullMQ job whose data is the GenerationRequest as is, under a random UUID (ids are not
 *   guessable from one another). Finished jobs leave BullMQ at once; their record and images stay under
 *   the prefix for `resultTtlSeconds` (`redis-store.ts`), so any API process serves them.
 * - `get` reads the record first (it is what makes a job finished), else BullMQ's state: waiting → queued
 *   with its place in the wait list, active → running with the progress the worker reported, failed (a
 *   worker died on it too often) → failed with BullMQ's reason on one line.
 * - `cancel` of a waiting job records `canceled` and removes it; of a running one sets the cancel flag that
 *   the worker checks between steps (it then records `canceled`).
 * - `events` follows BullMQ's event stream through one shared QueueEvents: progress (step, total and the
 *   preview the worker put in `job.updateProgress`), the job becoming active or waiting again, and its end.
 *   The stream lives in Redis, and QueueEvents reads it from the last id it saw, so a Redis restart loses
 *   none of it (the server is run with an append-only file); a follower also re-reads the job's status
 *   every `pollMs` and whenever an event says it may have changed, so its end is never missed (not even
 *   one that happened between subscribing and the first read).
 * - The queue cap counts waiting jobs; concurrent submits from several API processes may pass it by a few
 *   (the check and the add are not one transaction).
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  QueueFullError,
  TERMINAL_STATES,
  type GenerationRequest,
  type JobEvent,
  type JobQueue,
  type JobState,
  type JobStatus,
} from './jobs.js';
import { Inbox } from './inbox.js';
import { connectRedis, redisOptions, watchConnection } from './redis-connection.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_RESULT_TTL_SECONDS,
  QUEUE_NAME,
  RedisStore,
  type JobRecord,
} from './redis-store.js';

export interface RedisQueueOptions {
  /** `redis://host:port[/db]` (or `rediss://` for TLS). */
  url: string;
  /** Key prefix of the queue and its results (default `cnxs`); API processes and workers must agree. */
  prefix?: string;
  /** Waiting jobs beyond which `submit` refuses with QueueFullError (default: no cap). */
  maxQueue?: number;
  /** How long results (records and images) are kept after a job finishes (default 3600 s). */
  resultTtlSeconds?: number;
  /** How often an `events` follower re-reads the job's status besides the event stream (default 2000 ms). */
  pollMs?: number;
  /** The first connect gives up after this long (default 10000 ms). */
  connectTimeoutMs?: number;
  log?: (line: string) => void;
}

/** BullMQ's job states that mean "not started yet". */
const WAITING = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children', 'paused', 'wait']);

/** The one-line, user-facing form of a message (BullMQ's reasons can be multi-line). */
function oneLine(message: string): string {
  return message.split('\n').map((s) => s.trim()).filter(Boolean).join('; ');
}

/** `{ step, total, preview? }` as the worker writes it to `job.updateProgress`. */
interface WorkerProgress {
  step: number;
  total: number;
  preview?: string;
}

function parseProgress(value: unknown): WorkerProgress | null {
  const p = typeof value === 'string' ? safeJson(value) : value;
  if (typeof p !== 'object' || p === null) return null;
  const { step, total, preview } = p as Record<string, unknown>;
  if (typeof step !== 'number' || typeof total !== 'number') return null;
  return { step, total, ...(typeof preview === 'string' ? { preview } : {}) };
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

export class RedisQueue implements JobQueue {
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly client: Redis,
    private readonly queue: Queue,
    private readonly queueEvents: QueueEvents,
    private readonly store: RedisStore,
    private readonly settings: { maxQueue: number; resultTtlSeconds: number; pollMs: number },
    private readonly stopWatching: () => void,
  ) {}

  static async connect(options: RedisQueueOptions): Promise<RedisQueue> {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    const log = options.log ?? (() => {});
    const resultTtlSeconds = options.resultTtlSeconds ?? DEFAULT_RESULT_TTL_SECONDS;
    const client = await connectRedis(options.url, 'api', options.connectTimeoutMs);
    const stopWatching = watchConnection(client, 'queue', log);
    const queue = new Queue<GenerationRequest>(QUEUE_NAME, {
      connection: client,
      prefix,
      // Progress events carry small previews: keep the event stream short.
      streams: { events: { maxLen: 2000 } },
    });
    // blocking XREAD: a connection of its own, which BullMQ makes from these options (maxRetriesPerRequest null)
    const queueEvents = new QueueEvents(QUEUE_NAME, {
      connection: { ...redisOptions('worker'), url: options.url, lazyConnect: false },
      prefix,
    });
    queueEvents.setMaxListeners(0);
    // BullMQ reports every failed reconnect attempt; the connection watcher already said Redis is away
    const report = (what: string) => (e: Error) => {
      if (client.status === 'ready') log(`${what}: ${oneLine(e.message)}`);
    };
    queue.on('error', report('queue'));
    queueEvents.on('error', report('queue events'));
    const store = new RedisStore(client, prefix);
    try {
      await queue.waitUntilReady();
      await queueEvents.waitUntilReady();
      await store.writeSettings({ resultTtlSeconds });
    } catch (e) {
      await queueEvents.close().catch(() => {});
      await queue.close().catch(() => {});
      stopWatching();
      client.disconnect();
      throw e;
    }
    return new RedisQueue(
      client,
      queue,
      queueEvents,
      store,
      { maxQueue: options.maxQueue ?? Infinity, resultTtlSeconds, pollMs: options.pollMs ?? 2000 },
      stopWatching,
    );
  }

  async submit(request: GenerationRequest): Promise<{ id: string; position: number }> {
    const waiting = await this.queue.getJobCountByTypes('waiting', 'prioritized', 'delayed', 'paused');
    if (waiting >= this.settings.maxQueue) throw new QueueFullError(await this.retryAfterSeconds());
    const id = randomUUID();
    await this.queue.add('generate', request, {
      jobId: id,
      // A runner's error is recorded by the worker, which then completes the job: BullMQ retries only
      // jobs whose worker died (stalled), up to the worker's maxStalledCount.
      attempts: 1,
      removeOnComplete: true,
      removeOnFail: { age: this.settings.resultTtlSeconds },
    });
    return { id, position: (await this.position(id)) ?? waiting };
  }

  async get(id: string): Promise<JobStatus | null> {
    const record = await this.store.readRecord(id);
    if (record) return statusOfRecord(id, record);
    const state = await this.queue.getJobState(id);
    const [timestamp, processedOn, finishedOn, progress, failedReason] = state === 'unknown'
      ? []
      : await this.client.hmget(this.queue.toKey(id), 'timestamp', 'processedOn', 'finishedOn', 'progress', 'failedReason');
    if (state === 'unknown' || state === 'completed' || !timestamp) {
      // No job in BullMQ: it finished (and left) after the first read, or is unknown. A worker stores the
      // record before it completes the job, so a second read settles which.
      const late = await this.store.readRecord(id);
      return late ? statusOfRecord(id, late) : null;
    }
    const p = parseProgress(progress);
    const status: JobStatus = {
      id,
      status: state === 'active' ? 'running' : state === 'failed' ? 'failed' : 'queued',
      progress: { step: p?.step ?? 0, total: p?.total ?? 0 },
      imageCount: 0,
      createdAt: Number(timestamp),
      ...(processedOn && state !== 'waiting' ? { startedAt: Number(processedOn) } : {}),
      ...(finishedOn && state === 'failed' ? { finishedAt: Number(finishedOn) } : {}),
    };
    if (state === 'failed') status.error = oneLine(failedReason || 'the job failed');
    if (WAITING.has(state)) {
      const position = await this.position(id);
      if (position !== null) status.position = position;
    }
    return status;
  }

  async image(id: string, n: number): Promise<Uint8Array | null> {
    if (!Number.isInteger(n) || n < 0) return null;
    return this.store.image(id, n);
  }

  async cancel(id: string): Promise<JobStatus | null> {
    const before = await this.get(id);
    if (!before || TERMINAL_STATES.has(before.status)) return before;
    // The flag first: if the job starts meanwhile, the worker sees it before its first step.
    await this.store.requestCancel(id, this.settings.resultTtlSeconds);
    if (before.status === 'queued') {
      const now = Date.now();
      await this.store.writeRecord(
        id,
        { status: 'canceled', createdAt: before.createdAt, finishedAt: now, step: 0, total: before.progress.total, imageCount: 0 },
        [],
        this.settings.resultTtlSeconds,
      );
      // A job a worker took meanwhile is locked and stays: the worker finds the record and ends it unrun.
      await this.queue.remove(id).catch(() => 0);
    }
    return this.get(id);
  }

  async *events(id: string, options: { signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    type Item = { kind: 'progress'; progress: WorkerProgress } | { kind: 'check' };
    const inbox = new Inbox<Item>();
    const onProgress = (args: { data?: unknown }) => {
      const progress = parseProgress(args.data);
      if (progress) inbox.push({ kind: 'progress', progress });
    };
    const onChange = () => inbox.push({ kind: 'check' });
    const changes = ['active', 'waiting', 'completed', 'failed', 'removed', 'stalled'].map((e) => `${e}:${id}`);
    const qe = this.queueEvents as unknown as NodeJS.EventEmitter;
    qe.on(`progress:${id}`, onProgress);
    for (const e of changes) qe.on(e, onChange);
    const timer = setInterval(onChange, this.settings.pollMs);
    const onAbort = () => inbox.close();
    options.signal?.addEventListener('abort', onAbort);
    try {
      if (options.signal?.aborted) return;
      const first = await this.get(id);
      if (!first) return;
      yield { type: 'status', status: first };
      if (TERMINAL_STATES.has(first.status)) {
        yield { type: 'done', status: first };
        return;
      }
      let last: JobStatus = first;
      let lastStep = -1;
      for (let item = await inbox.next(); item !== undefined && !options.signal?.aborted; item = await inbox.next()) {
        if (item.kind === 'progress') {
          const { step, total, preview } = item.progress;
          if (step === lastStep) continue;
          lastStep = step;
          yield { type: 'progress', step, total, ...(preview !== undefined ? { previewBase64: preview } : {}) };
          continue;
        }
        let now: JobStatus | null;
        try {
          now = await this.get(id);
        } catch {
          continue; // Redis away: the next poll tries again
        }
        if (!now) return; // expired or removed without a record
        if (TERMINAL_STATES.has(now.status)) {
          yield { type: 'done', status: now };
          return;
        }
        if (now.status !== last.status) {
          if (now.status === 'queued') lastStep = -1; // handed back: its steps start again
          yield { type: 'status', status: now };
        }
        last = now;
      }
    } finally {
      clearInterval(timer);
      options.signal?.removeEventListener('abort', onAbort);
      qe.off(`progress:${id}`, onProgress);
      for (const e of changes) qe.off(e, onChange);
    }
  }

  async counts(): Promise<Record<JobState, number>> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused', 'active', 'failed');
    const finished = await this.store.finishedCounts(this.settings.resultTtlSeconds);
    return {
      queued: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.paused ?? 0),
      running: c.active ?? 0,
      succeeded: finished.succeeded,
      // failed in BullMQ: jobs whose workers died on them more often than allowed
      failed: finished.failed + (c.failed ?? 0),
      canceled: finished.canceled,
    };
  }

  async ready(): Promise<boolean> {
    try {
      let timer: NodeJS.Timeout | undefined;
      const answer = await Promise.race([
        this.client.ping(),
        new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timeout'), 1000))),
      ]).finally(() => clearTimeout(timer));
      return answer === 'PONG';
    } catch {
      return false;
    }
  }

  /** How many times workers started running job `id` (1 unless a worker died on it or a run was handed back). */
  async runs(id: string): Promise<number> {
    return this.store.runs(id);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.queueEvents.close().catch(() => {});
      await this.queue.close().catch(() => {});
      this.stopWatching();
      await this.client.quit().catch(() => this.client.disconnect());
    })();
    return this.closing;
  }

  /** The job's place in the wait list (0 = next), or null when it is not waiting. */
  private async position(id: string): Promise<number | null> {
    // BullMQ pushes new jobs on the left and workers take from the right.
    const r = await this.client.multi().lpos(this.queue.keys.wait!, id).llen(this.queue.keys.wait!).exec();
    const index = r?.[0]?.[1];
    const length = r?.[1]?.[1];
    return typeof index === 'number' && typeof length === 'number' ? length - 1 - index : null;
  }

  /** When a place likely frees up: about one run's time (the workers' recent mean), at least 1 s; 10 s before any ran. */
  private async retryAfterSeconds(): Promise<number> {
    const mean = await this.store.meanRunMs().catch(() => null);
    return mean === null ? 10 : Math.max(1, Math.ceil(mean / 1000));
  }
}

function statusOfRecord(id: string, r: JobRecord): JobStatus {
  return {
    id,
    status: r.status,
    progress: { step: r.step, total: r.total },
    imageCount: r.imageCount,
    ...(r.info !== undefined ? { result: r.info } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
    createdAt: r.createdAt,
    ...(r.startedAt !== undefined ? { startedAt: r.startedAt } : {}),
    finishedAt: r.finishedAt,
  };
}
