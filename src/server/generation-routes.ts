/**
 * The native API: submit a generation, follow it (status, image bytes, Server-Sent Events), cancel it.
 * Ids come from the URL: anything the queue does not know is a 404, never a queue error.
 */
import { readJson, sendBytes, sendJson, HttpError } from './http-io.js';
import { jobPath, jobView } from './job-view.js';
import type { JobQueue, JobStatus } from './jobs.js';
import { parseGenerationRequest } from './request.js';
import type { Route, RouteRequest } from './route.js';
import { streamJobEvents } from './sse.js';

export async function knownJob(queue: JobQueue, id: string): Promise<JobStatus> {
  const status = await queue.get(id);
  if (!status) throw new HttpError(404, `no generation ${JSON.stringify(id)} (unknown, or its results expired)`);
  return status;
}

async function submit({ req, res, server }: RouteRequest): Promise<void> {
  const body = await readJson(req, server.limits.maxBodyBytes);
  const request = parseGenerationRequest(body, server.limits);
  const { id, position } = await server.queue.submit(request);
  sendJson(res, 202, { id, status: 'queued', position }, { location: jobPath(id) });
}

async function status({ res, params, server }: RouteRequest): Promise<void> {
  sendJson(res, 200, jobView(await knownJob(server.queue, params['id']!)));
}

async function image({ res, params, server }: RouteRequest): Promise<void> {
  const id = params['id']!;
  const status = await knownJob(server.queue, id);
  const text = params['n']!;
  const n = /^\d{1,6}$/.test(text) ? Number(text) : -1;
  if (n < 0 || n >= status.imageCount) {
    const have = status.imageCount === 0 ? `it has no images (${status.status})` : `it has images 0 … ${status.imageCount - 1}`;
    throw new HttpError(404, `no image ${JSON.stringify(text)} in generation ${id}: ${have}`);
  }
  const png = await server.queue.image(id, n);
  if (!png) throw new HttpError(404, `image ${n} of generation ${id} has expired`);
  // results never change once stored
  sendBytes(res, 200, png, 'image/png', { 'cache-control': 'private, max-age=3600, immutable' });
}

async function cancel({ res, params, server }: RouteRequest): Promise<void> {
  const status = await server.queue.cancel(params['id']!);
  if (!status) throw new HttpError(404, `no generation ${JSON.stringify(params['id'])} (unknown, or its results expired)`);
  sendJson(res, 200, jobView(status));
}

async function events(r: RouteRequest): Promise<void> {
  await knownJob(r.server.queue, r.params['id']!);
  await streamJobEvents(r, r.params['id']!);
}

export const GENERATION_ROUTES: readonly Route[] = [
  { method: 'POST', path: '/v1/generations', auth: true, handle: submit },
  { method: 'GET', path: '/v1/generations/{id}', auth: true, handle: status },
  { method: 'DELETE', path: '/v1/generations/{id}', auth: true, handle: cancel },
  { method: 'GET', path: '/v1/generations/{id}/images/{n}.png', auth: true, handle: image },
  { method: 'GET', path: '/v1/generations/{id}/events', auth: true, handle: events },
];
