/**
 * `cnxs worker`: a generation worker on a Redis/BullMQ queue (src/server/redis-worker.ts). It checks its
 * options and that Redis answers, loads the model once, then runs the jobs that `cnxs serve --redis`
 * processes put in the queue, one at a time, until SIGTERM or SIGINT: it then stops taking jobs, lets the
 * running one finish for the grace period (else hands it back to the queue) and exits 0. A second signal
 * exits at once (the running job is then retried by another worker once its lock expires).
 */
import { checkRedisUrl, connectRedis, redactUrl, RedisConnectionError } from '../server/redis-connection.js';
import { startRedisWorker } from '../server/redis-worker.js';
import { createPipelineRunner } from '../server/runner.js';
import { MODEL_OPTIONS, parseModelOptions } from './model-options.js';
import { OptionValues, optionsHelp, parseOptions, type OptionSpec } from './options.js';
import { UsageError, float, integer } from './usage.js';

const WORKER_OPTIONS: readonly OptionSpec[] = [
  { name: 'redis', value: 'URL', help: 'the queue\'s Redis, e.g. redis://127.0.0.1:6379 (required; default $CNXS_REDIS_URL)' },
  ...MODEL_OPTIONS,
  { name: 'prefix', value: 'NAME', help: 'Redis key prefix shared with cnxs serve (default cnxs)' },
  { name: 'lock-seconds', value: 'S', help: 'a job\'s lock, renewed every S/2 while it runs; a dead worker\'s job is retried after it lapses (default 30)' },
  { name: 'stalled-check-seconds', value: 'S', help: 'how often to look for jobs whose worker died (default 15)' },
  { name: 'max-stalled', value: 'N', help: 'times a job may be taken back from dead workers before it fails (default 2)' },
  { name: 'grace-seconds', value: 'S', help: 'on SIGTERM, how long the running job may finish before it is handed back (default 20)' },
  { name: 'help', short: 'h', help: 'show this help' },
];

export const WORKER_USAGE = `usage: cnxs worker --redis <url> --model <dir|file|hub id> [--controlnet <dir|hub id>] [options]
Runs generations from the Redis queue of cnxs serve --redis (as many workers as GPUs or machines)

${optionsHelp(WORKER_OPTIONS)}`;

export interface WorkerCommandIo {
  /** Log lines (job started, finished, connection lost and back); default stderr. */
  log?: (line: string) => void;
  env?: Readonly<Record<string, string | undefined>>;
}

export async function workerCommand(args: readonly string[], io: WorkerCommandIo = {}): Promise<number> {
  const env = io.env ?? process.env;
  const log = io.log ?? ((line: string) => process.stderr.write(`cnxs worker: ${line}\n`));
  const v = new OptionValues(parseOptions(args, WORKER_OPTIONS, 'worker'));
  if (v.flag('help')) {
    console.log(WORKER_USAGE);
    return 0;
  }
  if (v.positionals.length > 0) throw new UsageError(`worker takes no positional arguments, got "${v.positionals[0]}"`);
  const url = v.string('redis') ?? env['CNXS_REDIS_URL'];
  if (url === undefined || url === '') throw new UsageError('worker needs --redis <url> (or $CNXS_REDIS_URL)');
  try {
    checkRedisUrl(url);
  } catch (e) {
    if (e instanceof RedisConnectionError) throw new UsageError(e.message);
    throw e;
  }
  const prefix = v.string('prefix');
  if (prefix === '' || (prefix !== undefined && !/^[\w.-]+$/.test(prefix))) {
    throw new UsageError(`--prefix must be letters, digits, '_', '.' or '-', got "${prefix}"`);
  }
  const seconds = (name: string, min: number) => {
    const s = v.string(name);
    return s === undefined ? undefined : Math.round(float(name, s, { min }) * 1000);
  };
  const lockDurationMs = seconds('lock-seconds', 1);
  const stalledIntervalMs = seconds('stalled-check-seconds', 0.1);
  const shutdownGraceMs = seconds('grace-seconds', 0);
  const maxStalled = v.string('max-stalled');
  const maxStalledCount = maxStalled === undefined ? undefined : integer('max-stalled', maxStalled, { min: 0 });
  const model = parseModelOptions(v, 'worker', env);

  // Redis first: a wrong URL should not cost a model load
  (await connectRedis(url, 'worker')).disconnect();
  const runner = await createPipelineRunner({ ...model, warn: log });
  const worker = await startRedisWorker({
    url,
    runner,
    log,
    ...(prefix !== undefined ? { prefix } : {}),
    ...(lockDurationMs !== undefined ? { lockDurationMs } : {}),
    ...(stalledIntervalMs !== undefined ? { stalledIntervalMs } : {}),
    ...(maxStalledCount !== undefined ? { maxStalledCount } : {}),
    ...(shutdownGraceMs !== undefined ? { shutdownGraceMs } : {}),
  }).catch(async (e: unknown) => {
    await runner.close();
    throw e;
  });
  log(`ready: taking jobs from ${redactUrl(url)}`);

  let first: (s: NodeJS.Signals) => void = () => {};
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    first = resolve;
    process.once('SIGTERM', first);
    process.once('SIGINT', first);
  });
  process.off('SIGTERM', first);
  process.off('SIGINT', first);
  const again = (s: NodeJS.Signals) => {
    log(`${s} again: exiting now`);
    process.exit(130);
  };
  process.once('SIGTERM', again);
  process.once('SIGINT', again);
  log(`${signal}: finishing the running job, then exiting`);
  try {
    await worker.close();
    await runner.close();
  } finally {
    process.off('SIGTERM', again);
    process.off('SIGINT', again);
  }
  log('stopped');
  return 0;
}
