/**
 * `cnxs` commands as child processes (`node --import tsx src/cli/main.ts …`) for the distributed tests and
 * the soak bench: their output kept, a wait for a line that says they are ready, their RSS, and a kill
 * that waits for the exit. Whoever spawns one kills it (in `after` / `finally`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface CnxsProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves when `pattern` appears in the output (a clear error with the output if it exits or times out first). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resident set size now, bytes (Linux /proc), or null once it has exited. */
  rss(): number | null;
  /**
   * Send `signal` (default SIGKILL) and wait for the exit: the exit code, or null after a signal. With
   * `killAfterMs`, a process still running by then is SIGKILLed.
   */
  kill(signal?: NodeJS.Signals, killAfterMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export function spawnCnxs(name: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): CnxsProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // keep the tail only: a soak writes lines for every job
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-200_000));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    name,
    child,
    output: () => out,
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (!running()) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`${name} did not print ${pattern} within ${timeoutMs} ms:\n${out}`);
        await sleep(50);
      }
    },
    rss: () => (running() && child.pid !== undefined ? processRss(child.pid) : null),
    async kill(signal = 'SIGKILL', killAfterMs) {
      if (running()) child.kill(signal);
      if (killAfterMs === undefined) return exited;
      const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      return exited.finally(() => clearTimeout(timer));
    },
    exited,
  };
}

/** A process's resident set size, bytes (Linux /proc), or null when it cannot be read. */
export function processRss(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not pick a free port');
  return address.port;
}

/** Poll `url` until it answers 200 (or throw with `describe()` after `timeoutMs`). */
export async function waitForHttp(url: string, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms:\n${describe()}`);
    await sleep(100);
  }
}
