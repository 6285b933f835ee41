/**
 * A disk cache of onnxruntime-optimized graphs, for warm loads: the first session of a model saves
 * its optimized graph (constant-folded, NCHWc-reordered weights included, as external data); later
 * sessions load that instead of optimizing again (measured on SD 2.1's UNet: 20 s → 1 s).
 *
 * The key covers everything the optimized graph depends on: the graph bytes (which name every
 * weight file, offset and length), each weight file's size and modification time (so changed
 * weights invalidate it), the onnxruntime version and session settings (given by the caller) and
 * the CPU model (NCHWc layouts are specific to the machine). Entries are written to a temporary
 * folder and renamed.
 *
 * The cache is an optimisation, never a failure: a folder that cannot be created or written (read
 * only, full, not a folder, /proc) costs one warning and the session opens without it; an entry
 * that does not load is reported once and written again; temporary folders left by a killed run
 * are removed by the next one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { ModelProto } from '../graph/onnx-proto.js';
import { conciseError } from './messages.js';

export const CACHED_MODEL = 'model.onnx';
export const CACHED_DATA = 'model.data';

/** Temporary folders older than this are abandoned whoever made them (a writer takes seconds to minutes). */
const STALE_AFTER_MS = 24 * 3600 * 1000;

/** `<entry>.tmp-<pid>-<ms since epoch>-<random>`: the writer's pid and start, for removing abandoned ones. */
const TEMP_FOLDER = /\.tmp-(\d+)-(\d+)(?:-[0-9a-f]+)?$/;

export function graphCacheKey(model: ModelProto, bytes: Uint8Array, settings: Readonly<Record<string, unknown>>): string {
  const h = createHash('sha256');
  h.update(bytes);
  const files = new Set<string>();
  for (const t of model.graph.initializers) if (t.external) files.add(`/${t.external.location}`);
  for (const f of [...files].sort()) {
    const s = statSync(f);
    h.update(`${f}\0${s.size}\0${s.mtimeMs}\0`);
  }
  h.update(JSON.stringify({ cpu: cpus()[0]?.model ?? '', arch: process.arch, settings }));
  return h.digest('hex').slice(0, 32);
}

/** How the runtime seam opens a session in each of the cache's three ways. */
export interface GraphCacheOpeners<S> {
  /** Open the cached optimized graph at `modelPath` as it is. */
  load(modelPath: string): Promise<S>;
  /** Optimize the graph and save the result as `CACHED_MODEL` + `CACHED_DATA` in `dir`. */
  save(dir: string): Promise<S>;
  /** Optimize the graph and save nothing. */
  plain(): Promise<S>;
}

/**
 * One cache folder. Sessions that share an instance (pass it as `RuntimeOptions.graphCache` to
 * every model of a pipeline) report a problem with the folder once and stop trying to write to it;
 * `RuntimeOptions.graphCacheDir` makes an instance per session, so each model reports it.
 */
export class GraphCache {
  /** Problems already reported through this instance. */
  private readonly reported = new Set<string>();
  /** Why entries cannot be written here, once known: later sessions still read entries but write none. */
  private unwritable: string | null = null;
  private swept = false;

  constructor(readonly root: string) {}

  /** Whether writing was given up (and why): the folder could not be created or an entry not saved. */
  get writeProblem(): string | null {
    return this.unwritable;
  }

  /**
   * Open a session for the entry `name-key`: the cached graph when one loads, else a newly
   * optimized one that is saved for next time when the folder allows it. Only `plain()`'s own
   * failure (the model, not the cache) is thrown.
   */
  async open<S>(name: string, key: string, openers: GraphCacheOpeners<S>, warn: (message: string) => void): Promise<{ session: S; fromCache: boolean }> {
    const entry = join(this.root, `${name}-${key}`);
    this.sweep();
    if (isDirectory(entry)) {
      if (existsSync(join(entry, CACHED_MODEL)) && existsSync(join(entry, CACHED_DATA))) {
        try {
          return { session: await openers.load(join(entry, CACHED_MODEL)), fromCache: true };
        } catch (e) {
          this.report(`unreadable:${entry}`, `${name}: ignoring the cached optimized graph in ${entry}, which did not load (${conciseError(e)})`, warn);
        }
      }
      // An entry that did not load, or lost a file, is replaced: otherwise it would be skipped on every run
      // and the new one never published in its place. If it cannot be removed, writing below fails and says so.
      removeQuietly(entry);
    }
    const tmp = this.beginWrite(entry, warn);
    if (tmp === null) return { session: await openers.plain(), fromCache: false };
    let session: S;
    try {
      session = await openers.save(tmp);
    } catch (e) {
      removeQuietly(tmp);
      // onnxruntime writes the optimized graph while it creates the session, so a full or read-only folder
      // fails the session itself. The same session without saving tells a cache problem (it opens) from a
      // problem with the model (it fails again, and that error is thrown).
      const s = await openers.plain();
      this.giveUpWriting(`could not save an optimized graph (${conciseError(e)})`, warn);
      return { session: s, fromCache: false };
    }
    try {
      publish(tmp, entry);
    } catch (e) {
      removeQuietly(tmp);
      this.giveUpWriting(`could not save an optimized graph (${conciseError(e)})`, warn);
    }
    return { session, fromCache: false };
  }

  /** A fresh temporary folder for one entry, or null (reported once) when the cache folder is unusable. */
  private beginWrite(entry: string, warn: (message: string) => void): string | null {
    if (this.unwritable !== null) return null;
    try {
      makeDirectories(this.root);
      // The random part keeps two sessions of one model in one process (same pid, same millisecond) apart.
      const tmp = `${entry}.tmp-${process.pid}-${Date.now()}-${randomBytes(4).toString('hex')}`;
      mkdirSync(tmp);
      return tmp;
    } catch (e) {
      this.giveUpWriting(`cannot write there (${conciseError(e)})`, warn);
      return null;
    }
  }

  /** Remove temporary folders whose writer is gone: killed runs would otherwise leave the weights' size each time. */
  private sweep(): void {
    if (this.swept) return;
    this.swept = true;
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return; // no folder yet, or an unreadable one: writing reports its own problems
    }
    for (const n of names) {
      const m = TEMP_FOLDER.exec(n);
      if (m && abandoned(Number(m[1]), Number(m[2]))) removeQuietly(join(this.root, n));
    }
  }

  private giveUpWriting(why: string, warn: (message: string) => void): void {
    this.unwritable = why;
    this.report('unwritable', `graph cache ${this.root}: ${why}; running without it`, warn);
  }

  private report(key: string, message: string, warn: (message: string) => void): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    warn(message);
  }
}

/**
 * Create `dir` and its missing parents one level at a time. Node's `mkdirSync(…, { recursive: true })`
 * never returns for a path under /proc (mkdir there fails with ENOENT although the parent exists,
 * and Node retries the parent forever, at 100% CPU); a plain mkdir fails at once.
 */
export function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // a concurrent writer made it first
    }
  }
}

/** Whether a temporary folder's writer is gone: its process no longer exists, or it is too old to be working still. */
function abandoned(pid: number, startedMs: number): boolean {
  if (!(Date.now() - startedMs < STALE_AFTER_MS)) return true;
  if (pid === process.pid) {
    // Our pid, from before this process started: an earlier run that had the same pid (containers reuse them).
    return startedMs < Date.now() - process.uptime() * 1000 - 1000;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH'; // EPERM: alive, someone else's
  }
}

function publish(tmp: string, entry: string): void {
  try {
    renameSync(tmp, entry);
  } catch (e) {
    // Another session of the same graph published first (rename onto a full folder fails): theirs serves.
    if (isDirectory(entry)) {
      removeQuietly(tmp);
      return;
    }
    throw e;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // a leftover temporary folder is removed by a later run's sweep
  }
}
