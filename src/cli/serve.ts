/**
 * `cnxs serve`: the HTTP API and web UI (src/server/). Without `--redis` the queue lives in this process
 * with one runner on the loaded model; with `--redis URL` jobs go to Redis (BullMQ) for `cnxs worker`s,
 * plus `--workers N` in-process workers. Every option is checked before anything loads; the model loads
 * before the port opens, so `/readyz` never answers for a server without its model. SIGTERM / SIGINT:
 * stop accepting, let the queue finish or hand back the running job, close, exit 0.
 */
import { createServer } from 'node:net';
import { ControlNetXSError } from '../errors.js';
import { isLoopbackHost } from '../server/auth.js';
import { EmbeddedQueue } from '../server/embedded-queue.js';
import { startServer } from '../server/http.js';
import type { GenerationRunner, JobQueue } from '../server/jobs.js';
import { DEFAULT_LIMITS, type ServerLimits } from '../server/limits.js';
import { ServerMetrics, instrumentRunner } from '../server/metrics.js';
import { RedisQueue } from '../server/redis-queue.js';
import { startRedisWorker } from '../server/redis-worker.js';
import { createPipelineRunner } from '../server/runner.js';
import { MODEL_OPTIONS, parseModelOptions, type ModelOptions } from './model-options.js';
import { OptionValues, optionsHelp, parseOptions, type OptionSpec } from './options.js';
import { UsageError, float, integer } from './usage.js';

export const DEFAULT_PORT = 7860;
/** How long finished jobs' results stay fetchable (seconds). */
export const DEFAULT_RESULT_TTL = 3600;

const SERVE_OPTIONS: readonly OptionSpec[] = [
  ...MODEL_OPTIONS,
  { name: 'port', value: 'N', help: `port to listen on (default ${DEFAULT_PORT}; 0: any free port)` },
  { name: 'host', value: 'ADDR', help: 'address to bind (default 127.0.0.1, this machine only; 0.0.0.0 for every interface — then set --api-key)' },
  { name: 'api-key', value: 'KEY', help: 'require "Authorization: Bearer KEY" on the API routes (default $CNXS_API_KEY)' },
  { name: 'redis', value: 'URL', help: 'queue jobs in Redis (redis://host:6379) for cnxs worker processes, instead of in this process' },
  { name: 'workers', value: 'N', help: 'with --redis: workers to run in this process (default 0: API only)' },
  { name: 'max-width', value: 'PX', help: `largest image width a request may ask for (default ${DEFAULT_LIMITS.maxWidth})` },
  { name: 'max-height', value: 'PX', help: `largest image height (default ${DEFAULT_LIMITS.maxHeight})` },
  { name: 'max-steps', value: 'N', help: `most denoising steps per request (default ${DEFAULT_LIMITS.maxSteps})` },
  { name: 'max-images', value: 'N', help: `most images per request (default ${DEFAULT_LIMITS.maxNumImages})` },
  { name: 'max-queue', value: 'N', help: `most jobs waiting; beyond it requests get 429 (default ${DEFAULT_LIMITS.maxQueue})` },
  { name: 'max-body-mb', value: 'MB', help: `largest request body, megabytes (default ${DEFAULT_LIMITS.maxBodyBytes / 2 ** 20})` },
  { name: 'result-ttl', value: 'SECONDS', help: `how long finished jobs' images stay fetchable (default ${DEFAULT_RESULT_TTL})` },
  { name: 'help', short: 'h', help: 'show this help' },
];

export const SERVE_USAGE = `usage: cnxs serve --model <dir|file|hub id> [--controlnet <dir|hub id>] [options]
HTTP API (OpenAPI at /openapi.json) and web UI at /; one in-process worker, or Redis workers with --redis

${optionsHelp(SERVE_OPTIONS)}`;

export interface ServeOptions {
  /** Absent: `--redis` with no in-process workers, so nothing is loaded here. */
  model: ModelOptions | undefined;
  host: string;
  port: number;
  apiKey: string | undefined;
  redis: string | undefined;
  workers: number;
  limits: ServerLimits;
  resultTtlSeconds: number;
}

export const HELP = Symbol('help');

/** The options, every value checked (nothing is loaded or opened): a UsageError names the first problem. */
export function parseServeArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ServeOptions | typeof HELP {
  const v = new OptionValues(parseOptions(argv, SERVE_OPTIONS, 'serve'));
  if (v.flag('help')) return HELP;
  if (v.positionals.length) throw new UsageError(`serve: unexpected argument "${v.positionals[0]}" (options start with --)`);
  const whole = (name: string, fallback: number, range: { min?: number; max?: number }) => {
    const s = v.string(name);
    return s === undefined ? fallback : integer(name, s, range);
  };
  const redis = v.string('redis');
  if (redis !== undefined && !/^rediss?:\/\/./.test(redis)) throw new UsageError(`--redis must be a redis:// or rediss:// URL, got "${redis}"`);
  if (redis === undefined && v.has('workers')) throw new UsageError('--workers needs --redis (without it one worker runs in this process)');
  const workers = whole('workers', 0, { min: 0, max: 64 });
  const needsModel = redis === undefined || workers > 0;
  // `[::1]` as in a URL: listen() wants the bare address
  const host = (v.string('host') ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new UsageError('--host must not be empty');
  const maxWidth = whole('max-width', DEFAULT_LIMITS.maxWidth, { min: 8 });
  const maxHeight = whole('max-height', DEFAULT_LIMITS.maxHeight, { min: 8 });
  // an empty CNXS_API_KEY is an unset one (a cleared variable), an empty --api-key a mistake
  const apiKey = v.string('api-key') ?? (env['CNXS_API_KEY'] || undefined);
  if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key (or CNXS_API_KEY) must not be empty');
  if (apiKey !== undefined && /\s/.test(apiKey)) throw new UsageError('--api-key (or CNXS_API_KEY) must not contain spaces: clients send it as "Bearer KEY"');
  return {
    model: needsModel ? parseModelOptions(v, 'serve', env) : undefined,
    host,
    port: whole('port', DEFAULT_PORT, { min: 0, max: 65535 }),
    apiKey,
    redis,
    workers,
    limits: {
      ...DEFAULT_LIMITS,
      maxWidth,
      maxHeight,
      // the two caps together make the pixel cap: one flag pair to raise, not three
      maxPixels: maxWidth * maxHeight,
      maxSteps: whole('max-steps', DEFAULT_LIMITS.maxSteps, { min: 1, max: 1000 }),
      maxNumImages: whole('max-images', DEFAULT_LIMITS.maxNumImages, { min: 1, max: 64 }),
      maxQueue: whole('max-queue', DEFAULT_LIMITS.maxQueue, { min: 0 }),
      maxBodyBytes: Math.round(float('max-body-mb', String(v.string('max-body-mb') ?? DEFAULT_LIMITS.maxBodyBytes / 2 ** 20), { min: 0.01, max: 1024 }) * 2 ** 20),
    },
    resultTtlSeconds: whole('result-ttl', DEFAULT_RESULT_TTL, { min: 1 }),
  };
}

export interface ServeIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Resolves when the server should shut down (default: the first SIGTERM or SIGINT). */
  shutdown?: Promise<unknown>;
}

/** Something to close on shutdown, in order. */
type Closer = () => Promise<void>;

export async function serve(o: ServeOptions, io: ServeIO): Promise<void> {
  const log = (line: string) => io.stderr.write(`cnxs serve: ${line}\n`);
  // a taken port or a wrong --host shows now, not after minutes of loading the model
  await probeListen(o.host, o.port).catch((e: unknown) => {
    throw listenError(e, o);
  });
  const metrics = new ServerMetrics();
  const closers: Closer[] = [];
  const describers: (() => unknown)[] = [];
  /** Released last, once no queue or worker can call them. */
  const runners: Closer[] = [];
  const newRunner = async (): Promise<GenerationRunner> => {
    const runner = await createPipelineRunner({ ...o.model!, maxPixels: o.limits.maxPixels, warn: (m: string) => log(`warning: ${m}`) });
    describers.push(() => runner.describe());
    runners.push(() => runner.close());
    return instrumentRunner(runner, metrics);
  };
  let queue: JobQueue;
  try {
    if (o.redis === undefined) {
      queue = new EmbeddedQueue({ runner: await newRunner(), maxQueue: o.limits.maxQueue, resultTtlSeconds: o.resultTtlSeconds });
    } else {
      queue = await RedisQueue.connect({ url: o.redis, maxQueue: o.limits.maxQueue, resultTtlSeconds: o.resultTtlSeconds, log });
      closers.push(() => queue.close());
      for (let i = 0; i < o.workers; i++) {
        const worker = await startRedisWorker({ url: o.redis, runner: await newRunner(), log });
        closers.unshift(() => worker.close()); // workers hand their jobs back before the queue connection goes
      }
    }
  } catch (e) {
    await closeAll([...closers, ...runners], log);
    throw e;
  }
  if (o.redis === undefined) closers.push(() => queue.close());
  let server;
  try {
    server = await startServer({
      queue,
      limits: o.limits,
      host: o.host,
      port: o.port,
      log,
      metrics,
      ...(o.apiKey !== undefined ? { apiKey: o.apiKey } : {}),
      loopbackOnly: o.apiKey === undefined && isLoopbackHost(o.host),
      ...(describers.length ? { describe: () => describers.map((d) => d()) } : {}),
    });
  } catch (e) {
    await closeAll([...closers, ...runners], log);
    throw listenError(e, o);
  }
  if (!isLoopbackHost(o.host) && o.apiKey === undefined) {
    log(`warning: listening on ${o.host} without --api-key: anyone who can reach this port can run generations`);
  }
  io.stdout.write(`cnxs serve: listening on ${server.url} (${o.redis === undefined ? 'embedded queue' : `Redis queue, ${o.workers} worker${o.workers === 1 ? '' : 's'} here`})\n`);
  await (io.shutdown ?? nextSignal());
  log('shutting down');
  // stop accepting first, so no job is taken after the queue starts closing; then the workers and the queue
  await server.close();
  await closeAll([...closers, ...runners], log);
}

/** Listen on `host:port` and close again at once: fails as `startServer` would. */
function probeListen(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/** Node's listen errors as one line naming the option to change. */
function listenError(e: unknown, o: ServeOptions): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  const where = `${o.host}:${o.port}`;
  if (code === 'EADDRINUSE') return new ControlNetXSError(`cannot listen on ${where}: the port is in use (choose another --port)`);
  if (code === 'EACCES') return new ControlNetXSError(`cannot listen on ${where}: permission denied (ports below 1024 need privileges; choose another --port)`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new ControlNetXSError(`cannot listen on ${where}: no such address on this machine (check --host)`);
  return e;
}

async function closeAll(closers: readonly Closer[], log: (line: string) => void): Promise<void> {
  for (const close of closers) await close().catch((e: unknown) => log(`while closing: ${(e as Error).message}`));
}

function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export async function serveCommand(args: readonly string[]): Promise<number> {
  const options = parseServeArgs(args, process.env);
  if (options === HELP) {
    console.log(SERVE_USAGE);
    return 0;
  }
  await serve(options, { stdout: process.stdout, stderr: process.stderr });
  return 0;
}
