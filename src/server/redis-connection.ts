/**
 * Connections to Redis for the BullMQ queue (`redis-queue.ts`, API side) and its workers
 * (`redis-worker.ts`): the URL check, the ioredis options each side needs, and a first connect that fails
 * with one clear line instead of retrying forever.
 *
 * Options, and why:
 * - every connection reconnects forever, quickly (100 ms more per attempt, at most 2 s), so a restarted
 *   Redis is picked up within ~2 s (BullMQ's own default backs off to 20 s);
 * - the API side (`role: 'api'`) does not queue commands while Redis is away (`enableOfflineQueue: false`)
 *   and retries a command at most once on reconnect: an HTTP request then fails fast (the route answers
 *   an error, `/readyz` says not ready) instead of hanging until Redis is back;
 * - the worker side (`role: 'worker'`) queues commands while Redis is away and retries them without limit
 *   (`maxRetriesPerRequest: null`, which BullMQ requires for its blocking connections): a job's progress,
 *   results and completion wait for Redis to come back instead of failing the job.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ControlNetXSError } from '../errors.js';

/** Redis is unreachable, refused us, or its URL is malformed. */
export class RedisConnectionError extends ControlNetXSError {}

export type ConnectionRole = 'api' | 'worker';

/** `redis://` or `rediss://` (TLS) URL, checked before anything connects; the message names the URL. */
export function checkRedisUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RedisConnectionError(`--redis must be a URL such as redis://127.0.0.1:6379, got "${url}"`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new RedisConnectionError(`--redis must be a redis:// or rediss:// URL, got "${redactUrl(url)}"`);
  }
  if (parsed.hostname === '') throw new RedisConnectionError(`--redis names no host: "${redactUrl(url)}"`);
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new RedisConnectionError(`--redis database must be a number (redis://host:port/0), got "/${db}"`);
  }
  return parsed;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** The ioredis options for one side (see the file comment). */
export function redisOptions(role: ConnectionRole): RedisOptions {
  return {
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
    ...(role === 'api'
      ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
      : { enableOfflineQueue: true, maxRetriesPerRequest: null }),
    lazyConnect: true,
  };
}

/**
 * One ioredis client for `url`, connected and answering, or a RedisConnectionError naming the URL and
 * the last error after `timeoutMs` (the client is then closed). After this first connect the client
 * reconnects on its own.
 */
export async function connectRedis(url: string, role: ConnectionRole, timeoutMs = 10_000): Promise<Redis> {
  checkRedisUrl(url);
  const client = new Redis(url, redisOptions(role));
  let lastError = '';
  const onError = (e: Error) => (lastError = e.message);
  client.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await client.connect();
        await client.ping();
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), timeoutMs);
      }),
    ]);
  } catch (e) {
    client.disconnect();
    const why = lastError || (e instanceof Error ? e.message : String(e));
    throw new RedisConnectionError(`cannot reach Redis at ${redactUrl(url)} within ${timeoutMs / 1000} s: ${why}`);
  } finally {
    clearTimeout(timer);
    client.off('error', onError);
  }
  return client;
}

/**
 * Report a client's connection losses and recoveries as one line each (ioredis emits an error per
 * failed reconnect attempt; repeating them is noise). Returns a function that stops watching.
 */
export function watchConnection(client: Redis, name: string, log: (line: string) => void): () => void {
  let lost = false;
  const onError = (e: Error) => {
    if (!lost) log(`${name}: Redis connection lost (${e.message}); reconnecting`);
    lost = true;
  };
  const onClose = () => {
    if (!lost && client.status !== 'end') log(`${name}: Redis connection closed; reconnecting`);
    lost = client.status !== 'end';
  };
  const onReady = () => {
    if (lost) log(`${name}: Redis connection back`);
    lost = false;
  };
  client.on('error', onError);
  client.on('close', onClose);
  client.on('ready', onReady);
  return () => {
    client.off('error', onError);
    client.off('close', onClose);
    client.off('ready', onReady);
  };
}
