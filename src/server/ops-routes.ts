/**
 * Routes for operators and the page: liveness, readiness, metrics, the OpenAPI document, and the web UI.
 * None needs the API key: probes and Prometheus scrapers are usually configured without secrets and these
 * answers reveal nothing a job submitter's data is in (counts, not prompts); the page must load before
 * the person can type the key into it; the API's description is public by nature.
 */
import { sendBytes, sendJson } from './http-io.js';
import { openApiDocument } from './openapi.js';
import type { Route, RouteRequest } from './route.js';
import { readStaticFile } from './static.js';

async function healthz({ res }: RouteRequest): Promise<void> {
  sendJson(res, 200, { status: 'ok' });
}

async function readyz({ res, server }: RouteRequest): Promise<void> {
  const queue = await server.queue.ready().catch(() => false);
  const body = { status: queue ? 'ready' : 'not ready', queue: queue ? 'reachable' : 'unreachable', ...(server.describe ? { models: server.describe() } : {}) };
  sendJson(res, queue ? 200 : 503, body, { 'cache-control': 'no-store' });
}

async function metrics({ res, server }: RouteRequest): Promise<void> {
  const text = server.metrics.render(await server.queue.counts(), process.memoryUsage.rss());
  sendBytes(res, 200, Buffer.from(text, 'utf8'), 'text/plain; version=0.0.4; charset=utf-8', { 'cache-control': 'no-store' });
}

async function openapi({ res }: RouteRequest): Promise<void> {
  sendJson(res, 200, openApiDocument());
}

/** The UI folder's files; `uiDir` is resolved by `startServer`. */
export function uiRoutes(uiDir: string): Route[] {
  const serve = async ({ res, url }: RouteRequest) => {
    const file = await readStaticFile(uiDir, url.pathname);
    // no-cache: a new version of the page is picked up at the next load; nosniff: the type we say is the type
    sendBytes(res, 200, file.bytes, file.contentType, { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  };
  return [
    { method: 'GET', path: '/', auth: false, handle: serve },
    { method: 'GET', path: '/{file}', auth: false, handle: serve },
  ];
}

export const OPS_ROUTES: readonly Route[] = [
  { method: 'GET', path: '/healthz', auth: false, handle: healthz },
  { method: 'GET', path: '/readyz', auth: false, handle: readyz },
  { method: 'GET', path: '/metrics', auth: false, handle: metrics },
  { method: 'GET', path: '/openapi.json', auth: false, handle: openapi },
];
