/**
 * The HTTP server of `cnxs serve`: a route table over Node's own `node:http`. No framework: the API is a
 * dozen routes, the event stream and the long A1111 wait want direct control of the response (flushing,
 * heartbeats, noticing a client that went away), body caps must apply while streaming, and nothing needs
 * installing or auditing beyond Node itself.
 *
 * Every response is JSON `{ error: { message, field? } }` when something is wrong: 404 for an unknown path,
 * 405 with `Allow` for a known path and the wrong method, 401 without the API key, 400/413/415/429 from
 * the routes, and 500 with a generic message for anything unexpected (its stack goes to `log` only).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { A1111_ROUTES } from './a1111-route.js';
import { bearerCheck, loopbackHostCheck } from './auth.js';
import { CANNY_ROUTES } from './canny-route.js';
import { QueueClosedError } from './embedded-queue.js';
import { GENERATION_ROUTES } from './generation-routes.js';
import { HttpError, sendError } from './http-io.js';
import { QueueFullError, type JobQueue } from './jobs.js';
import { ServerMetrics } from './metrics.js';
import { OPS_ROUTES, uiRoutes } from './ops-routes.js';
import type { ServerLimits } from './limits.js';
import { BadRequestError } from './request-fields.js';
import { compilePath, type Route, type ServerContext } from './route.js';
import { defaultUiDir } from './static.js';

export interface StartServerOptions {
  queue: JobQueue;
  limits: ServerLimits;
  /** Require `Authorization: Bearer <apiKey>` on the /v1 and /sdapi routes. */
  apiKey?: string;
  host: string;
  /** 0: any free port (the URL says which). */
  port: number;
  /**
   * Answer only requests whose `Host` is a loopback name (403 otherwise): for a keyless server bound to
   * a loopback address, so a web page cannot reach it by DNS rebinding. Default false.
   */
  loopbackOnly?: boolean;
  /** The web UI's folder (default: src/server/ui, or dist/server/ui in a build). */
  uiDir?: string;
  /** Where errors with stacks and notices go (default: nowhere). */
  log?: (line: string) => void;
  /** Shared with the in-process workers' `instrumentRunner` so `/metrics` has their step times. */
  metrics?: ServerMetrics;
  /** What `/readyz` says about the loaded models. */
  describe?: () => unknown;
  /** Milliseconds between heartbeat comments on an idle event stream (default 15 s). */
  heartbeatMs?: number;
}

export interface RunningServer {
  /** `http://host:port` (IPv6 hosts in brackets). */
  url: string;
  /** Stop accepting connections, end event streams and waiting A1111 calls, and wait for the rest to finish. */
  close(): Promise<void>;
}

/** All routes, specific before general (the UI's `/{file}` last). */
export function routeTable(uiDir: string): readonly Route[] {
  return [...GENERATION_ROUTES, ...CANNY_ROUTES, ...A1111_ROUTES, ...OPS_ROUTES, ...uiRoutes(uiDir)];
}

/** How long `close` waits for in-flight requests before cutting their connections. */
const CLOSE_GRACE_MS = 5000;

export async function startServer(o: StartServerOptions): Promise<RunningServer> {
  const closing = new AbortController();
  const context: ServerContext = {
    queue: o.queue,
    limits: o.limits,
    metrics: o.metrics ?? new ServerMetrics(),
    closing: closing.signal,
    heartbeatMs: o.heartbeatMs ?? 15_000,
    log: o.log ?? (() => {}),
    ...(o.describe ? { describe: o.describe } : {}),
  };
  const routes = routeTable(o.uiDir ?? defaultUiDir()).map((route) => ({ route, match: compilePath(route.path) }));
  const authorize = o.apiKey !== undefined && o.apiKey !== '' ? bearerCheck(o.apiKey) : null;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let label = 'unmatched';
    try {
      if (o.loopbackOnly) loopbackHostCheck(req.headers);
      const url = new URL(req.url ?? '/', 'http://localhost');
      const matches = routes.flatMap(({ route, match }) => {
        const params = match(url.pathname);
        return params ? [{ route, params }] : [];
      });
      if (matches.length === 0) throw new HttpError(404, `no such route: ${url.pathname}`);
      const hit = matches.find((m) => m.route.method === req.method);
      if (!hit) {
        const allow = [...new Set(matches.map((m) => m.route.method))].join(', ');
        throw new HttpError(405, `${req.method} is not allowed on ${url.pathname} (allowed: ${allow})`, { headers: { allow } });
      }
      label = hit.route.path;
      if (hit.route.auth && authorize) authorize(req.headers);
      await hit.route.handle({ req, res, params: hit.params, url, server: context });
    } catch (e) {
      // an unexpected error while the queue's store (Redis) is away is the outage, not a bug: 503
      const outage = !isExpected(e) && !res.headersSent && !(await o.queue.ready().catch(() => false));
      respondToError(res, outage ? new QueueUnavailableError() : e, context.log, `${req.method} ${req.url}`);
    } finally {
      context.metrics.countResponse(req.method ?? '?', label, res.statusCode);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  // a request's headers must arrive in time, its body within the request timeout (uploads are small)
  server.headersTimeout = 30_000;
  server.requestTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        closing.abort();
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}

/** The queue's store cannot be reached (Redis down): 503, try again shortly. */
class QueueUnavailableError extends Error {
  constructor() {
    super('the job queue is unreachable right now; try again shortly');
  }
}

function isExpected(e: unknown): boolean {
  return e instanceof HttpError || e instanceof BadRequestError || e instanceof QueueFullError || e instanceof QueueClosedError;
}

/** The one place an error becomes a response; an error after the headers went out can only end the stream. */
function respondToError(res: ServerResponse, e: unknown, log: (line: string) => void, what: string): void {
  if (res.headersSent) {
    log(`${what}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    res.end();
    return;
  }
  if (e instanceof HttpError) return sendError(res, e.status, e.message, e.details);
  if (e instanceof BadRequestError) return sendError(res, 400, e.message, { field: e.field });
  if (e instanceof QueueFullError) {
    return sendError(res, 429, e.message, { headers: { 'retry-after': String(Math.max(1, Math.ceil(e.retryAfterSeconds))) } });
  }
  if (e instanceof QueueClosedError || e instanceof QueueUnavailableError) return sendError(res, 503, e.message, { headers: { 'retry-after': '5' } });
  log(`${what}: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  sendError(res, 500, 'internal server error (the server log has the details)');
}
