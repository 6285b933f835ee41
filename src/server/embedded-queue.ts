/**
 * The in-process queue (`cnxs serve` without `--redis`): FIFO, one worker on one GenerationRunner,
 * results kept in memory for `resultTtlSeconds`. Nothing to install; everything is lost when the
 * process ends, which is why `close()` settles every job before it resolves.
 */
import { randomUUID } from 'node:crypto';
import { ControlNetXSError } from '../errors.js';
import { Inbox } from './inbox.js';
import {
  QueueFullError,
  TERMINAL_STATES,
  type GenerationRequest,
  type GenerationResultInfo,
  type GenerationRunner,
  type JobEvent,
  type JobQueue,
  type JobState,
  type JobStatus,
} from './jobs.js';

export interface EmbeddedQueueOptions {
  runner: GenerationRunner;
  /** Jobs waiting (the running one not counted) beyond which `submit` throws QueueFullError. */
  maxQueue: number;
  /** How long a finished job's status and images stay readable. */
  resultTtlSeconds: number;
  /** How long `close()` lets the running job go on before stopping it (default 30 s). */
  closeGraceSeconds?: number;
  /** Milliseconds since the epoch (default `Date.now`); tests pass a clock they move. */
  now?: () => number;
}

/** `submit` after `close()`: the server is shutting down. */
export class QueueClosedError extends ControlNetXSError {
  constructor() {
    super('the server is shutting down and takes no new jobs');
  }
}

interface Job {
  id: string;
  request: GenerationRequest;
  state: JobState;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  progress: { step: number; total: number };
  images: Uint8Array[];
  result?: GenerationResultInfo;
  error?: string;
  /** Set while running: aborting it stops the run between steps. */
  abort?: AbortController;
  /** Why the run is being stopped, if it is: the user canceled, or the server is shutting down. */
  stopping?: 'cancel' | 'shutdown';
  listeners: Set<(e: JobEvent) => void>;
  expiry?: NodeJS.Timeout;
}

/** Recent run durations kept for the Retry-After estimate. */
const DURATION_HISTORY = 10;
/** Retry-After before any job has finished: a guess, in seconds. */
const FIRST_RETRY_AFTER = 10;

export class EmbeddedQueue implements JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: Job[] = [];
  private running: { job: Job; settled: Promise<void> } | null = null;
  private readonly durations: number[] = [];
  private closing: Promise<void> | null = null;
  private readonly now: () => number;

  constructor(private readonly options: EmbeddedQueueOptions) {
    this.now = options.now ?? Date.now;
  }

  async submit(request: GenerationRequest): Promise<{ id: string; position: number }> {
    if (this.closing) throw new QueueClosedError();
    // a job the idle worker starts at once never waits, so only a busy worker makes the queue full
    if (this.running && this.waiting.length >= this.options.maxQueue) throw new QueueFullError(this.retryAfterSeconds());
    const job: Job = { id: randomUUID(), request, state: 'queued', createdAt: this.now(), progress: { step: 0, total: 0 }, images: [], listeners: new Set() };
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    this.pump();
    return { id: job.id, position: Math.max(0, this.waiting.indexOf(job)) };
  }

  async get(id: string): Promise<JobStatus | null> {
    const job = this.live(id);
    return job ? this.status(job) : null;
  }

  async image(id: string, n: number): Promise<Uint8Array | null> {
    return this.live(id)?.images[n] ?? null;
  }

  async cancel(id: string): Promise<JobStatus | null> {
    const job = this.live(id);
    if (!job) return null;
    if (job.state === 'queued') {
      this.waiting.splice(this.waiting.indexOf(job), 1);
      this.finish(job, 'canceled');
    } else if (job.state === 'running' && !job.stopping) {
      // stops between steps; the job turns canceled when the run returns
      job.stopping = 'cancel';
      job.abort?.abort(new DOMException('the generation was canceled', 'AbortError'));
    }
    return this.status(job);
  }

  async *events(id: string, options: { signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    const job = this.live(id);
    if (!job || options.signal?.aborted) return;
    const inbox = new Inbox<JobEvent>();
    const listener = (e: JobEvent) => {
      inbox.push(e);
      if (e.type === 'done') inbox.close();
    };
    const onAbort = () => inbox.close();
    job.listeners.add(listener);
    options.signal?.addEventListener('abort', onAbort);
    try {
      const first = this.status(job);
      yield { type: 'status', status: first };
      if (TERMINAL_STATES.has(first.status)) {
        yield { type: 'done', status: first };
        return;
      }
      for (let e = await inbox.next(); e !== undefined && !options.signal?.aborted; e = await inbox.next()) yield e;
    } finally {
      job.listeners.delete(listener);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  async counts(): Promise<Record<JobState, number>> {
    const counts: Record<JobState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 };
    for (const id of [...this.jobs.keys()]) {
      const job = this.live(id);
      if (job) counts[job.state]++;
    }
    return counts;
  }

  async ready(): Promise<boolean> {
    return this.closing === null;
  }

  /**
   * Take no new jobs; fail the waiting ones (nothing would run them after this process); let the running
   * one finish for `closeGraceSeconds`, then stop it between steps and mark it failed; resolve when every
   * job has settled. The results stay readable until this object is dropped.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const job of this.waiting.splice(0)) this.finish(job, 'failed', 'the server shut down before this job started');
      const running = this.running;
      if (running) {
        const graceMs = (this.options.closeGraceSeconds ?? 30) * 1000;
        if (!(await settlesWithin(running.settled, graceMs))) {
          running.job.stopping = 'shutdown';
          running.job.abort?.abort(new DOMException('the server is shutting down', 'AbortError'));
          // a step in flight ends before the run sees the signal; past another grace period the job is failed anyway
          if (!(await settlesWithin(running.settled, graceMs))) this.finish(running.job, 'failed', shutdownMessage(this.options.closeGraceSeconds ?? 30));
        }
      }
      for (const job of this.jobs.values()) clearTimeout(job.expiry);
    })();
    return this.closing;
  }

  /** Start the next waiting job when the worker is free (and the queue not closing). */
  private pump(): void {
    if (this.running || this.closing) return;
    const job = this.waiting.shift();
    if (!job) return;
    job.state = 'running';
    job.startedAt = this.now();
    job.abort = new AbortController();
    this.running = { job, settled: this.execute(job) };
  }

  private async execute(job: Job): Promise<void> {
    this.emit(job, { type: 'status', status: this.status(job) });
    try {
      const output = await this.options.runner.run(job.request, {
        signal: job.abort!.signal,
        onProgress: (p) => {
          if (TERMINAL_STATES.has(job.state)) return;
          job.progress = { step: p.step, total: p.total };
          const preview = p.previewPng ? { previewBase64: Buffer.from(p.previewPng.buffer, p.previewPng.byteOffset, p.previewPng.byteLength).toString('base64') } : {};
          this.emit(job, { type: 'progress', step: p.step, total: p.total, ...preview });
        },
      });
      job.images = output.images;
      job.result = output.info;
      this.finish(job, 'succeeded');
      this.durations.push(this.now() - job.startedAt!);
      if (this.durations.length > DURATION_HISTORY) this.durations.shift();
    } catch (e) {
      if (job.stopping === 'shutdown') this.finish(job, 'failed', shutdownMessage(this.options.closeGraceSeconds ?? 30));
      else if (job.stopping === 'cancel' && isAbort(e)) this.finish(job, 'canceled');
      else this.finish(job, 'failed', errorLine(e));
    } finally {
      delete job.abort;
      this.running = null;
      this.pump();
    }
  }

  /** Mark a job terminal (once), tell its followers, and schedule its results' expiry. */
  private finish(job: Job, state: 'succeeded' | 'failed' | 'canceled', error?: string): void {
    if (TERMINAL_STATES.has(job.state)) return;
    job.state = state;
    job.finishedAt = this.now();
    if (error !== undefined) job.error = error;
    this.emit(job, { type: 'done', status: this.status(job) });
    job.expiry = setTimeout(() => this.jobs.delete(job.id), this.options.resultTtlSeconds * 1000);
    job.expiry.unref();
  }

  /** The job unless its results expired (then it is dropped). */
  private live(id: string): Job | undefined {
    const job = this.jobs.get(id);
    if (job?.finishedAt !== undefined && this.now() >= job.finishedAt + this.options.resultTtlSeconds * 1000) {
      clearTimeout(job.expiry);
      this.jobs.delete(id);
      return undefined;
    }
    return job;
  }

  private status(job: Job): JobStatus {
    const position = job.state === 'queued' ? this.waiting.indexOf(job) : -1;
    return {
      id: job.id,
      status: job.state,
      ...(position >= 0 ? { position } : {}),
      progress: { ...job.progress },
      imageCount: job.state === 'succeeded' ? job.images.length : 0,
      ...(job.result ? { result: job.result } : {}),
      ...(job.error !== undefined ? { error: job.error } : {}),
      createdAt: job.createdAt,
      ...(job.startedAt !== undefined ? { startedAt: job.startedAt } : {}),
      ...(job.finishedAt !== undefined ? { finishedAt: job.finishedAt } : {}),
    };
  }

  private emit(job: Job, event: JobEvent): void {
    for (const listener of job.listeners) listener(event);
  }

  /** Seconds until the running job likely ends: the mean of recent runs less the time it has run, at least 1. */
  private retryAfterSeconds(): number {
    if (this.durations.length === 0) return FIRST_RETRY_AFTER;
    const mean = this.durations.reduce((a, b) => a + b, 0) / this.durations.length;
    const elapsed = this.running ? this.now() - this.running.job.startedAt! : 0;
    return Math.max(1, Math.ceil((mean - elapsed) / 1000));
  }
}

function isAbort(e: unknown): boolean {
  return (e instanceof Error || e instanceof DOMException) && e.name === 'AbortError';
}

function shutdownMessage(graceSeconds: number): string {
  return `the server shut down while this job was running (stopped after a ${graceSeconds} s grace period)`;
}

/** One line for the user: our errors' messages as they are, anything else marked unexpected; never a stack. */
function errorLine(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const line = message.split('\n').map((s) => s.trim()).filter(Boolean).join('; ');
  return e instanceof ControlNetXSError ? line : `unexpected error: ${line}`;
}

/** Whether `p` settles within `ms` (the timer does not keep the process alive). */
async function settlesWithin(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
