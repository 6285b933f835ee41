/**
 * A real Redis for the distributed-queue tests: Debian's `redis-server` on a free loopback port, with a
 * temp folder of its own. Snapshots are off (`--save ''`) and every write is in the append-only file,
 * fsynced before Redis answers (`--appendonly yes --appendfsync always`), so `restart()` — a crash
 * (SIGKILL) by default — comes back with every job and result that was acknowledged. Not daemonized: the
 * process is ours to stop. Call `stop()` in an `after` hook; a process-exit hook kills it as a last resort.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, processRss } from './cnxs-process.js';

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The server's resident set size now, bytes (null while it is down). */
  rss(): number | null;
  /**
   * Stop Redis (SIGKILL by default: a crash; SIGTERM: a clean shutdown), keep it down `downMs`, start it
   * again on the same port with the same data, and wait until it answers PING.
   */
  restart(options?: { signal?: 'SIGKILL' | 'SIGTERM'; downMs?: number }): Promise<void>;
  /** Kill Redis and remove its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/** The redis-server binary: `$REDIS_SERVER`, else the first on `$PATH`, else /usr/bin's; a clear error if none. */
function redisServerBinary(): string {
  const candidates = [
    ...(process.env.REDIS_SERVER ? [process.env.REDIS_SERVER] : []),
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'redis-server')),
    '/usr/bin/redis-server',
  ];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    'redis-server not found (looked at $REDIS_SERVER, $PATH and /usr/bin): the distributed-queue tests need a real Redis; ' +
      'install Debian\'s redis-server package (.ci/run does when it is missing)',
  );
}

/** One raw RESP PING: true when the server answers +PONG within `timeoutMs`. */
function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      answer += d.toString();
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Start a redis-server and wait (up to `timeoutMs`) until it answers PING. */
export async function startRedisServer(options: { timeoutMs?: number } = {}): Promise<RedisServer> {
  const binary = redisServerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-redis-'));
  const port = await freePort();
  const timeoutMs = options.timeoutMs ?? 10_000;
  let child: ChildProcess | null = null;
  let output = '';
  // Last resort if a test process exits without `stop()`: never leave a Redis behind.
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const launch = async (): Promise<void> => {
    output = '';
    const proc = spawn(
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes',
        '--appendfsync', 'always', '--daemonize', 'no', '--logfile', ''],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    proc.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    proc.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) before answering on port ${port}:\n${output}`);
      }
      if (await ping(port)) return;
      await sleep(50);
    }
    proc.kill('SIGKILL');
    throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms:\n${output}`);
  };

  const kill = async (signal: 'SIGKILL' | 'SIGTERM'): Promise<void> => {
    const proc = child;
    if (!proc) return;
    proc.kill(signal);
    await exited(proc);
    child = null;
  };

  try {
    await launch();
  } catch (e) {
    await kill('SIGKILL');
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    rss: () => {
      const pid = (child as ChildProcess | null)?.pid;
      return pid === undefined ? null : processRss(pid);
    },
    async restart({ signal = 'SIGKILL', downMs = 0 } = {}) {
      if (stopped) throw new Error('restart() after stop()');
      await kill(signal);
      if (downMs > 0) await sleep(downMs);
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill('SIGKILL');
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
