/**
 * The web UI's files (src/server/ui, copied to dist/server/ui by the build): `/` is index.html, any other
 * path a file under the folder. Requests are confined to the folder — `..`, encoded separators, NUL bytes
 * and symlinks that lead outside are refused — and folders are never listed.
 */
import { existsSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HttpError } from './http-io.js';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The UI folder next to this module: src/server/ui under tsx, dist/server/ui in a build (which copies it);
 * a repository build that has not copied it yet falls back to the sources.
 */
export function defaultUiDir(): string {
  const beside = fileURLToPath(new URL('./ui/', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../../src/server/ui/', import.meta.url));
}

export interface StaticFile {
  bytes: Buffer;
  contentType: string;
}

/** The file `urlPath` (already without its query) names under `root`, or a 404 HttpError. */
export async function readStaticFile(root: string, urlPath: string): Promise<StaticFile> {
  const notFound = () => new HttpError(404, `no such file: ${urlPath}`);
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath === '/' ? '/index.html' : urlPath);
  } catch {
    throw notFound();
  }
  // a separator or NUL smuggled in by percent-encoding, or any `..` segment: never a file of ours
  if (rel.includes('\0') || rel.includes('\\') || rel.split('/').some((s) => s === '..')) throw notFound();
  const base = resolve(root);
  const path = resolve(join(base, rel));
  if (!path.startsWith(base + sep)) throw notFound();
  let real: string;
  try {
    real = await realpath(path);
    if (!real.startsWith((await realpath(base)) + sep) || !(await stat(real)).isFile()) throw notFound();
  } catch {
    throw notFound();
  }
  return { bytes: await readFile(real), contentType: CONTENT_TYPES[extname(real).toLowerCase()] ?? 'application/octet-stream' };
}
