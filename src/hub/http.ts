/**
 * Talking to the Hub: request headers, the metadata HEAD of `hf_hub_download` (relative redirects
 * only), the model-info API, and turning HTTP answers into named errors as `hf_raise_for_status`.
 */
import {
  HubAuthError,
  HubEntryNotFoundError,
  HubError,
  HubGatedRepoError,
  HubProtocolError,
  HubRepoNotFoundError,
  HubRevisionNotFoundError,
  describeFile,
} from './errors.js';
import type { HubSettings } from './settings.js';

/** What a request is about, for error messages. */
export interface RequestContext {
  repoId: string;
  revision: string;
  filename?: string;
  endpoint: string;
}

/** Everything needed to place one file in the cache. */
export interface FileMetadata {
  commit: string;
  etag: string;
  size: number;
  /** Where to GET the bytes: the resolve URL, or the CDN it redirects to. */
  location: string;
}

export interface RepoInfo {
  sha: string;
  files: string[];
}

export function hubHeaders(settings: HubSettings): Record<string, string> {
  const headers: Record<string, string> = { 'user-agent': `controlnet-xs; node/${process.versions.node}` };
  if (settings.token) headers.authorization = `Bearer ${settings.token}`;
  return headers;
}

/** `{endpoint}/{repo}/resolve/{revision}/{file}`, revision fully escaped, file escaped per segment. */
export function resolveUrl(endpoint: string, repoId: string, revision: string, filename: string): string {
  const file = filename.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** huggingface_hub's `_normalize_etag`: drop a weak `W/` prefix and the quotes. */
export function normalizeEtag(etag: string | null): string | null {
  if (etag === null) return null;
  return etag.replace(/^W\//, '').replace(/^"+|"+$/g, '') || null;
}

/** The HTTP error of a failed answer, named as `hf_raise_for_status` names it. */
export function httpError(res: Response, ctx: RequestContext): HubError {
  const code = res.headers.get('x-error-code');
  const message = res.headers.get('x-error-message')?.replace(/\s+/g, ' ').trim() || null;
  const what = describeFile(ctx.repoId, ctx.filename, ctx.revision);
  const details = { repoId: ctx.repoId, filename: ctx.filename, revision: ctx.revision, status: res.status, commit: res.headers.get('x-repo-commit') ?? undefined };
  const tail = message ? `: ${message}` : '';
  if (code === 'RevisionNotFound') {
    return new HubRevisionNotFoundError(`${what}: revision "${ctx.revision}" not found in repo ${ctx.repoId} (HTTP ${res.status}); use a branch, tag or commit that exists`, details);
  }
  if (code === 'EntryNotFound' || (res.status === 404 && code === null && ctx.filename !== undefined)) {
    return new HubEntryNotFoundError(`${what}: file not found in repo (HTTP ${res.status})`, details);
  }
  if (code === 'GatedRepo') {
    return new HubGatedRepoError(`${what}: ${ctx.repoId} is gated (HTTP ${res.status}); accept its conditions at ${ctx.endpoint}/${ctx.repoId} and set HF_TOKEN`, details);
  }
  if (code === 'RepoNotFound' || (res.status === 401 && message !== 'Invalid credentials in Authorization header')) {
    return new HubRepoNotFoundError(
      `${what}: repository ${ctx.repoId} not found on ${ctx.endpoint} (HTTP ${res.status}); check the id, and if it is private or gated set HF_TOKEN to a token with access`,
      details,
    );
  }
  if (res.status === 401) {
    return new HubAuthError(`${what}: the token was rejected (HTTP 401${tail}); set HF_TOKEN to a valid token`, details);
  }
  if (res.status === 403) {
    return new HubAuthError(`${what}: access forbidden (HTTP 403${tail}); set HF_TOKEN to a token with read access to ${ctx.repoId}`, details);
  }
  if (res.status === 404 && ctx.filename === undefined) {
    return new HubRepoNotFoundError(`${what}: not found on ${ctx.endpoint} (HTTP 404)`, details);
  }
  return new HubError(`${what}: ${ctx.endpoint} answered HTTP ${res.status}${tail}`, details);
}

/** Drop an unread body so its connection goes back to the pool. */
export async function discardBody(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

/** Errors after which the cache may still answer: no connection, timeouts, and HTTP errors other than a missing revision or file. */
export function allowsCacheFallback(e: unknown): boolean {
  if (e instanceof HubRevisionNotFoundError || e instanceof HubEntryNotFoundError) return false;
  return e instanceof HubError || isNetworkError(e);
}

/** A fetch that failed without an answer: refused, DNS, reset, TLS, or timed out. */
export function isNetworkError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'TimeoutError') return true;
  return e instanceof TypeError && (e.message === 'fetch failed' || e.message === 'terminated');
}

/** A short reason for a network error: the errno code when there is one. */
export function networkReason(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  if (e.name === 'TimeoutError') return 'timed out';
  const cause = e.cause as { code?: unknown; message?: unknown } | undefined;
  if (cause && typeof cause.code === 'string') return cause.code;
  if (cause && typeof cause.message === 'string') return cause.message;
  return e.message;
}

/** Rethrow the caller's abort as is (never as a network error). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

function timeoutSignal(ms: number, signal: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

function isRedirect(status: number): boolean {
  return status >= 300 && status <= 399;
}

/**
 * HEAD a resolve URL and read the file's commit, ETag and size. Redirects are not followed except
 * relative ones (a renamed repo); an absolute one (a CDN) is returned as the download location.
 */
export async function fetchFileMetadata(
  url: string,
  headers: Record<string, string>,
  ctx: RequestContext,
  opts: { fetch: typeof fetch; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<FileMetadata> {
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await opts.fetch(current, {
      method: 'HEAD',
      redirect: 'manual',
      headers: { ...headers, 'accept-encoding': 'identity' },
      signal: timeoutSignal(opts.timeoutMs, opts.signal),
    });
    const location = res.headers.get('location');
    if (isRedirect(res.status) && location !== null && !/^[a-z][a-z0-9+.-]*:|^\/\//i.test(location) && hop < 10) {
      const next = new URL(current);
      next.pathname = new URL(location, current).pathname;
      next.search = '';
      current = next.toString();
      continue;
    }
    if (!res.ok && !isRedirect(res.status)) throw httpError(res, ctx);
    const what = describeFile(ctx.repoId, ctx.filename, ctx.revision);
    const commit = res.headers.get('x-repo-commit');
    const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    const sizeHeader = res.headers.get('x-linked-size') ?? (isRedirect(res.status) ? null : res.headers.get('content-length'));
    const size = sizeHeader === null ? NaN : Number(sizeHeader);
    const missing = !commit ? 'X-Repo-Commit' : !etag ? 'ETag' : !Number.isSafeInteger(size) || size < 0 ? 'a size' : null;
    if (missing) {
      throw new HubProtocolError(`${what}: ${ctx.endpoint} answered without ${missing}; is HF_ENDPOINT a Hugging Face Hub (check proxy/firewall)?`, {
        repoId: ctx.repoId,
        filename: ctx.filename,
        revision: ctx.revision,
        status: res.status,
      });
    }
    return { commit: commit!, etag: etag!, size, location: location ? new URL(location, current).toString() : current };
  }
}

/** `GET {endpoint}/api/models/{repo}/revision/{revision}`: the commit and the file list. */
export async function fetchRepoInfo(
  headers: Record<string, string>,
  ctx: RequestContext,
  opts: { fetch: typeof fetch; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<RepoInfo> {
  const url = `${ctx.endpoint}/api/models/${ctx.repoId}/revision/${encodeURIComponent(ctx.revision)}`;
  const res = await opts.fetch(url, { headers: { ...headers, accept: 'application/json' }, signal: timeoutSignal(opts.timeoutMs, opts.signal) });
  if (!res.ok) {
    await discardBody(res);
    throw httpError(res, ctx);
  }
  const body = (await res.json().catch(() => null)) as { sha?: unknown; siblings?: unknown } | null;
  const siblings = Array.isArray(body?.siblings) ? (body.siblings as { rfilename?: unknown }[]) : null;
  if (!body || typeof body.sha !== 'string' || !siblings || !siblings.every((s) => typeof s?.rfilename === 'string')) {
    throw new HubProtocolError(`${describeFile(ctx.repoId, undefined, ctx.revision)}: ${url} did not answer with { sha, siblings: [{ rfilename }] }`, {
      repoId: ctx.repoId,
      revision: ctx.revision,
      status: res.status,
    });
  }
  return { sha: body.sha, files: siblings.map((s) => s.rfilename as string) };
}
