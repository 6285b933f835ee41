/**
 * A lock file, created exclusively, that keeps two downloads of one blob (in this process or
 * another) from appending to the same `.incomplete` file. The holder keeps its mtime fresh; a lock
 * whose holder died (same host, pid gone) or that went stale is taken over. Best effort, as
 * huggingface_hub's own lock: taking over a stale lock can race with a second waiter.
 */
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockOptions {
  /** `| undefined`: callers pass their own optional signal straight through. */
  signal?: AbortSignal | undefined;
  /** A lock not refreshed for this long is taken over; default 30 s. */
  staleMs?: number;
  /** How often a waiter looks again; default 100 ms. */
  pollMs?: number;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function isStale(path: string, staleMs: number): Promise<boolean> {
  let mtimeMs: number;
  try {
    mtimeMs = (await stat(path)).mtimeMs;
  } catch {
    return false; // released meanwhile: try again
  }
  if (Date.now() - mtimeMs > staleMs) return true;
  try {
    const { pid, host } = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown; host?: unknown };
    return host === hostname() && typeof pid === 'number' && pid !== process.pid && !isAlive(pid);
  } catch {
    return false; // being written, or gone
  }
}

/** Wait `ms`; an abort rejects with the signal's own reason (timers/promises would give an AbortError). */
export async function delay(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch((e: unknown) => {
    signal?.throwIfAborted();
    throw e;
  });
}

/** Run `fn` while holding the lock file at `path`. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const staleMs = options.staleMs ?? 30_000;
  const pollMs = options.pollMs ?? 100;
  await mkdir(dirname(path), { recursive: true });
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      await writeFile(path, JSON.stringify({ pid: process.pid, host: hostname() }), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await isStale(path, staleMs)) await rm(path, { force: true });
    else await delay(pollMs, options.signal);
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => {});
  }, Math.max(1, staleMs / 4));
  heartbeat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
    await rm(path, { force: true });
  }
}
