/**
 * A fake Hugging Face Hub on 127.0.0.1 for tests: the Hub's resolve URLs and model-info API plus a
 * "CDN" that LFS files redirect to, serving a folder as `org/tiny-pipe` (and a few special repos).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, sep } from 'node:path';

export const COMMIT = createHash('sha1').update('tiny-pipe commit').digest('hex');
export const TOKEN = 'hf_test_secret';
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const isLfs = (path: string) => /\.(safetensors|bin|ckpt)$/.test(path);

export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory() || (e.isSymbolicLink() && statSync(full).isDirectory())) walk(full);
      else out.push(relative(root, full).split(sep).join('/'));
    }
  };
  if (existsSync(root)) walk(root);
  return out.sort();
}

export interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  // `| undefined`: the log records the request's headers as node gives them, absent or not.
  range?: string | undefined;
  authorization?: string | undefined;
}

export interface FakeHub {
  endpoint: string;
  log: Logged[];
  /** The next blob GET sends this many bytes, then the socket is destroyed (cut) or goes silent (stall). */
  state: { cutAfter: number | null; stallAfter: number | null };
  stop(): Promise<void>;
}

/**
 * Two servers on 127.0.0.1: the "Hub" (resolve URLs, model-info API) and a "CDN" on another port
 * that LFS files redirect to, as huggingface.co does. Repos: org/tiny-pipe (public), org/private
 * (needs TOKEN), org/gated (403 GatedRepo), old-org/tiny-pipe (renamed: relative redirect).
 */
export async function startHub(repoDir: string): Promise<FakeHub> {
  const log: Logged[] = [];
  const state = { cutAfter: null as number | null, stallAfter: null as number | null };
  const files = listFiles(repoDir);
  const read = (p: string) => readFileSync(join(repoDir, p));
  const byHash = new Map(files.filter(isLfs).map((f) => [sha256(read(f)), f]));
  const revisions = new Set(['main', 'v1.0', 'refs/pr/1', COMMIT]);
  let cdnBase = '';

  const sendBytes = (req: IncomingMessage, res: ServerResponse, data: Buffer, headers: Record<string, string>) => {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const body = data.subarray(start);
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-length': String(body.length),
      ...(range ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    const cut = state.cutAfter;
    if (cut !== null && cut < body.length) {
      state.cutAfter = null;
      res.write(body.subarray(0, cut), () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    const stall = state.stallAfter;
    if (stall !== null && stall < body.length) {
      state.stallAfter = null;
      res.write(body.subarray(0, stall)); // then silence, connection open
      return;
    }
    res.end(body);
  };

  const hubHandler = (req: IncomingMessage, res: ServerResponse) => {
    const raw = (req.url ?? '/').split('?')[0]!;
    const parts = raw.split('/').slice(1).map(decodeURIComponent);
    const fail = (status: number, code: string | null, extra: Record<string, string> = {}) => {
      res.writeHead(status, { ...(code ? { 'x-error-code': code } : {}), ...extra });
      res.end();
    };
    const [org, name, kind, rev, ...rest] = parts;
    if (org === 'api' && name === 'models') {
      // /api/models/{org}/{name}/revision/{rev}
      const [, , o, n, , r] = parts;
      if (`${o}/${n}` !== 'org/tiny-pipe') return fail(401, 'RepoNotFound');
      if (!revisions.has(r!)) return fail(404, 'RevisionNotFound');
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ id: 'org/tiny-pipe', sha: COMMIT, siblings: files.map((rfilename) => ({ rfilename })) }));
    }
    if (kind !== 'resolve' || rev === undefined) return fail(404, null);
    const repo = `${org}/${name}`;
    const file = rest.join('/');
    if (repo === 'old-org/tiny-pipe') {
      res.writeHead(307, { location: `/org/tiny-pipe/resolve/${encodeURIComponent(rev)}/${file}` });
      return void res.end();
    }
    if (repo === 'org/gated') return fail(403, 'GatedRepo');
    if (repo === 'org/private' && req.headers.authorization !== `Bearer ${TOKEN}`) return fail(401, 'RepoNotFound');
    if (repo !== 'org/tiny-pipe' && repo !== 'org/private') return fail(401, 'RepoNotFound');
    if (!revisions.has(rev)) return fail(404, 'RevisionNotFound');
    if (!files.includes(file)) return fail(404, 'EntryNotFound', { 'x-repo-commit': COMMIT });
    const data = read(file);
    if (isLfs(file)) {
      const oid = sha256(data);
      res.writeHead(302, {
        location: `${cdnBase}/blobs/${oid}?signed=1`,
        etag: `"${gitSha1(Buffer.from(`oid sha256:${oid}`))}"`,
        'x-linked-etag': `"${oid}"`,
        'x-linked-size': String(data.length),
        'x-repo-commit': COMMIT,
        'content-length': '0',
      });
      return void res.end();
    }
    sendBytes(req, res, data, { etag: `"${gitSha1(data)}"`, 'x-repo-commit': COMMIT });
  };

  const cdnHandler = (req: IncomingMessage, res: ServerResponse) => {
    const oid = /^\/blobs\/([0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const file = oid ? byHash.get(oid) : undefined;
    if (!file) return void res.writeHead(404).end();
    sendBytes(req, res, read(file), { etag: `"${oid}"` });
  };

  const listen = async (which: 'hub' | 'cdn', handler: (req: IncomingMessage, res: ServerResponse) => void) => {
    const server = createServer((req, res) => {
      log.push({ server: which, method: req.method ?? '', path: req.url ?? '', range: req.headers.range, authorization: req.headers.authorization });
      handler(req, res);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  };
  const hub = await listen('hub', hubHandler);
  const cdn = await listen('cdn', cdnHandler);
  cdnBase = cdn.base;
  const close = (s: Server) => new Promise<void>((ok) => {
    s.close(() => ok());
    s.closeAllConnections();
  });
  return { endpoint: hub.base, log, state, stop: () => Promise.all([close(hub.server), close(cdn.server)]).then(() => {}) };
}

