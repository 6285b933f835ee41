/**
 * What the Redis queue keeps beside BullMQ's own keys, shared by the API side (`redis-queue.ts`) and the
 * workers (`redis-worker.ts`). All keys live under the prefix (default `cnxs`):
 *
 *   <prefix>:generations:…        BullMQ's queue (job data = the GenerationRequest as is)
 *   <prefix>:job:<id>             hash: a finished job's record — status, times, error, result info (JSON)
 *   <prefix>:images:<id>          hash: field "n" = PNG bytes of image n
 *   <prefix>:cancel:<id>          set while a cancel was asked for (the worker checks it between steps)
 *   <prefix>:runs:<id>            how many times a worker started running the job (at-least-once shows here)
 *   <prefix>:finished:<state>     sorted set: finished job ids by finish time, for counts()
 *   <prefix>:settings             hash: resultTtlSeconds (written by the API side, read by workers)
 *   <prefix>:stats                hash: meanRunMs, a moving average of successful runs (for Retry-After)
 *
 * A record is written once (the first writer wins, atomically with its images) and expires with its
 * images after resultTtlSeconds; its presence is what makes a job finished, whatever BullMQ still holds.
 */
import type { Redis } from 'ioredis';
import type { GenerationResultInfo, JobState } from './jobs.js';

export const QUEUE_NAME = 'generations';
export const DEFAULT_PREFIX = 'cnxs';
export const DEFAULT_RESULT_TTL_SECONDS = 3600;

export type FinishedState = Extract<JobState, 'succeeded' | 'failed' | 'canceled'>;

/** A finished job as stored. */
export interface JobRecord {
  status: FinishedState;
  createdAt: number;
  startedAt?: number;
  finishedAt: number;
  /** The step reached (succeeded: total). */
  step: number;
  total: number;
  imageCount: number;
  error?: string;
  info?: GenerationResultInfo;
}

/** Atomic first-writer-wins: the record, its images and its place in the finished set, or nothing. */
const WRITE_RECORD = `
-- KEYS: record hash, images hash, finished sorted set of the record's state, stats hash
-- ARGV: ttl seconds, now (ms), job id, run ms (-1: none), n record pairs, the 2n record fields and values,
--       then the images in order
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
local fields = {}
for i = 6, 5 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
local k = 0
for i = 6 + 2 * n, #ARGV do
  redis.call('HSET', KEYS[2], tostring(k), ARGV[i])
  k = k + 1
end
if k > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[2]) - ttl * 1000)
local run = tonumber(ARGV[4])
if run >= 0 then
  local mean = tonumber(redis.call('HGET', KEYS[4], 'meanRunMs'))
  redis.call('HSET', KEYS[4], 'meanRunMs', mean and (0.8 * mean + 0.2 * run) or run)
end
return 1
`;

export const FINISHED_STATES: readonly FinishedState[] = ['succeeded', 'failed', 'canceled'];

export class RedisStore {
  constructor(
    private readonly client: Redis,
    readonly prefix: string,
  ) {}

  key(kind: 'job' | 'images' | 'cancel' | 'runs', id: string): string {
    return `${this.prefix}:${kind}:${id}`;
  }

  private finishedKey(state: FinishedState): string {
    return `${this.prefix}:finished:${state}`;
  }

  private get settingsKey(): string {
    return `${this.prefix}:settings`;
  }

  private get statsKey(): string {
    return `${this.prefix}:stats`;
  }

  /** Store a finished job; false when a record was already there (it is kept as it was). */
  async writeRecord(id: string, record: JobRecord, images: readonly Uint8Array[], ttlSeconds: number): Promise<boolean> {
    const fields: string[] = [
      'status', record.status,
      'createdAt', String(record.createdAt),
      'finishedAt', String(record.finishedAt),
      'step', String(record.step),
      'total', String(record.total),
      'imageCount', String(images.length),
      ...(record.startedAt !== undefined ? ['startedAt', String(record.startedAt)] : []),
      ...(record.error !== undefined ? ['error', record.error] : []),
      ...(record.info !== undefined ? ['info', JSON.stringify(record.info)] : []),
    ];
    const runMs = record.status === 'succeeded' && record.startedAt !== undefined ? record.finishedAt - record.startedAt : -1;
    const written = await this.client.eval(
      WRITE_RECORD,
      4,
      this.key('job', id),
      this.key('images', id),
      this.finishedKey(record.status),
      this.statsKey,
      String(ttlSeconds),
      String(record.finishedAt),
      id,
      String(runMs),
      String(fields.length / 2),
      ...fields,
      ...images.map((png) => Buffer.from(png.buffer, png.byteOffset, png.byteLength)),
    );
    return written === 1;
  }

  async readRecord(id: string): Promise<JobRecord | null> {
    const h = await this.client.hgetall(this.key('job', id));
    const status = h.status;
    if (status !== 'succeeded' && status !== 'failed' && status !== 'canceled') return null;
    const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
    return {
      status,
      createdAt: Number(h.createdAt),
      finishedAt: Number(h.finishedAt),
      step: Number(h.step ?? 0),
      total: Number(h.total ?? 0),
      imageCount: Number(h.imageCount ?? 0),
      ...(h.startedAt !== undefined ? { startedAt: num(h.startedAt)! } : {}),
      ...(h.error !== undefined ? { error: h.error } : {}),
      ...(h.info !== undefined ? { info: JSON.parse(h.info) as GenerationResultInfo } : {}),
    };
  }

  async hasRecord(id: string): Promise<boolean> {
    return (await this.client.exists(this.key('job', id))) === 1;
  }

  async image(id: string, n: number): Promise<Uint8Array | null> {
    const png = await this.client.hgetBuffer(this.key('images', id), String(n));
    return png === null ? null : new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
  }

  async requestCancel(id: string, ttlSeconds: number): Promise<void> {
    await this.client.set(this.key('cancel', id), '1', 'EX', ttlSeconds);
  }

  async cancelRequested(id: string): Promise<boolean> {
    return (await this.client.exists(this.key('cancel', id))) === 1;
  }

  /** Count one more run of the job (kept as long as results are). */
  async countRun(id: string, ttlSeconds: number): Promise<number> {
    const key = this.key('runs', id);
    const result = await this.client.multi().incr(key).expire(key, ttlSeconds).exec();
    return Number(result?.[0]?.[1] ?? 0);
  }

  async runs(id: string): Promise<number> {
    return Number((await this.client.get(this.key('runs', id))) ?? 0);
  }

  /** Finished jobs still held (finished within the last ttl), by state. */
  async finishedCounts(ttlSeconds: number, now = Date.now()): Promise<Record<FinishedState, number>> {
    const since = now - ttlSeconds * 1000;
    const m = this.client.multi();
    for (const s of FINISHED_STATES) m.zcount(this.finishedKey(s), since, '+inf');
    const r = await m.exec();
    const at = (i: number) => Number(r?.[i]?.[1] ?? 0);
    return { succeeded: at(0), failed: at(1), canceled: at(2) };
  }

  /** A moving average of successful runs' times (ms), or null before the first. */
  async meanRunMs(): Promise<number | null> {
    const v = await this.client.hget(this.statsKey, 'meanRunMs');
    return v === null ? null : Number(v);
  }

  async writeSettings(settings: { resultTtlSeconds: number }): Promise<void> {
    await this.client.hset(this.settingsKey, 'resultTtlSeconds', String(settings.resultTtlSeconds));
  }

  /** The result TTL the API side asked for (absent: the default). */
  async resultTtlSeconds(): Promise<number> {
    const v = Number(await this.client.hget(this.settingsKey, 'resultTtlSeconds'));
    return Number.isInteger(v) && v > 0 ? v : DEFAULT_RESULT_TTL_SECONDS;
  }
}
