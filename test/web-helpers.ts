/**
 * The browser tests' harness: a node:http static server (Range requests, switchable routes, a
 * download that breaks halfway) and Debian's Chromium driven by playwright-core with a fresh profile.
 * Never downloads a browser; everything started here is stopped by the returned `close()`.
 */
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * WebGPU in headless Chromium without a GPU: SwiftShader's Vulkan, the fallback adapter Chromium ships (launch
 * `withoutDisableGpu`: --disable-gpu hides it), without shader-f16. Chromium 150 blocklists Dawn's other CPU
 * adapter, Mesa's llvmpipe Vulkan (crbug.com/40057808), whatever the Vulkan flags; llvmpipe is reachable only
 * through ANGLE's OpenGL ES in compatibility mode (docs/onnxruntime-measurements.md).
 */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--use-angle=swiftshader'];

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.html': 'text/html',
  '.txt': 'text/plain',
};

export interface StaticServer {
  url: string;
  /** Per mount prefix: whether it answers (off → 503, as a server that went away). */
  enabled: Map<string, boolean>;
  /** URL paths whose body stops after this many bytes (Content-Length still announces the whole file). */
  cutAfter: Map<string, number>;
  /** Every path requested, in order. */
  log: string[];
  /** Every request, in order: its path and its Range header (null for a whole-file GET). */
  requests: { path: string; range: string | null }[];
  /**
   * URL paths served as if the file were this many bytes: ranges past the real file read as zeros, and a
   * whole-file GET gets the headers only before the connection drops (a file that must never be downloaded).
   */
  declaredSize: Map<string, number>;
  /** Per mount prefix: Range requests answered with the whole file (200, as a server without ranges) or refused (403). */
  rangeMode: Map<string, 'ignore' | 'refuse'>;
  close(): Promise<void>;
}

/** Serve `mounts` (URL prefix → folder) and `/` as an empty page, on 127.0.0.1 (a secure context: Cache Storage works). */
export async function startStaticServer(mounts: Record<string, string>): Promise<StaticServer> {
  const enabled = new Map(Object.keys(mounts).map((k) => [k, true]));
  const cutAfter = new Map<string, number>();
  const log: string[] = [];
  const requests: StaticServer['requests'] = [];
  const declaredSize = new Map<string, number>();
  const rangeMode = new Map<string, 'ignore' | 'refuse'>();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    log.push(path);
    requests.push({ path, range: req.headers.range ?? null });
    if (path === '/') return send(res, 200, 'text/html', '<!doctype html><meta charset="utf-8"><title>cnxs web test</title>');
    const prefix = Object.keys(mounts).find((p) => path.startsWith(`${p}/`));
    if (prefix === undefined) return send(res, 404, 'text/plain', 'not found');
    if (!enabled.get(prefix)) return send(res, 503, 'text/plain', 'switched off');
    const root = mounts[prefix]!;
    const file = normalize(join(root, path.slice(prefix.length)));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) return send(res, 404, 'text/plain', 'not found');
    const realSize = statSync(file).size;
    const declared = declaredSize.get(path);
    const size = declared ?? realSize;
    const headers = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'accept-ranges': 'bytes', 'cache-control': 'no-store' };
    if (req.headers.range !== undefined && rangeMode.get(prefix) === 'refuse') return send(res, 403, 'text/plain', 'no ranges here');
    const range = rangeMode.get(prefix) === 'ignore' ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
        return void res.end();
      }
      res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}` });
      if (end < realSize) return void createReadStream(file, { start, end }).pipe(res);
      // past the real file (a declared size): zeros
      const head = start < realSize ? readFileSync(file).subarray(start) : Buffer.alloc(0);
      return void res.end(Buffer.concat([head, Buffer.alloc(end - Math.max(start, realSize) + 1)]));
    }
    res.writeHead(200, { ...headers, 'content-length': size });
    if (declared !== undefined) {
      res.flushHeaders();
      return void setImmediate(() => res.socket?.destroy());
    }
    const cut = cutAfter.get(path);
    if (cut === undefined) return void createReadStream(file).pipe(res);
    // Half the body, then the connection drops: the client sees a body shorter than announced.
    createReadStream(file, { start: 0, end: cut - 1 }).on('end', () => res.socket?.destroy()).pipe(res, { end: false });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    enabled,
    cutAfter,
    log,
    requests,
    declaredSize,
    rangeMode,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Chromium with a fresh profile (its own Cache Storage) in a temporary folder named `profilePrefix…`, the given
 * extra flags, and the page's console lines collected. `close()` stops the browser, then removes the profile:
 * removing it earlier (a tempDir's `after`, which runs before a later-registered one) lets Chromium write it again.
 */
export async function launchChromium(
  profilePrefix: string,
  extraArgs: string[] = [],
  o: { withoutDisableGpu?: boolean } = {},
): Promise<{ context: BrowserContext; console: string[]; close(): Promise<void> }> {
  const base = o.withoutDisableGpu ? CHROMIUM_ARGS.filter((a) => a !== '--disable-gpu') : CHROMIUM_ARGS;
  const userDataDir = mkdtempSync(join(tmpdir(), profilePrefix));
  const context = await chromium
    .launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: [...base, ...extraArgs] })
    .catch((e: unknown) => {
      rmSync(userDataDir, { recursive: true, force: true });
      throw e;
    });
  const console: string[] = [];
  context.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
  return {
    context,
    console,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
