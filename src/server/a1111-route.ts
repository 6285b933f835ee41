/**
 * `POST /sdapi/v1/txt2img`: AUTOMATIC1111's API subset, synchronous as A1111 is — the job goes through the
 * same queue (caps, 429 and all) and the response waits for it. A client that hangs up cancels its job
 * (nobody else holds its id); a server shutting down answers 503 and leaves the job to the queue.
 */
import { HttpError, readJson, sendJson } from './http-io.js';
import type { JobQueue, JobStatus } from './jobs.js';
import { a1111Response, parseA1111Txt2Img } from './request.js';
import type { Route, RouteRequest } from './route.js';

/** The job's final status, following its events; null when `signal` aborted first. */
export async function waitForJob(queue: JobQueue, id: string, signal: AbortSignal): Promise<JobStatus | null> {
  try {
    for await (const event of queue.events(id, { signal })) {
      if (event.type === 'done') return event.status;
      if (signal.aborted) return null;
    }
  } catch (e) {
    if (signal.aborted) return null;
    throw e;
  }
  if (signal.aborted) return null;
  // the stream ended without `done` (results expired meanwhile): the status says what is left
  return queue.get(id);
}

async function txt2img({ req, res, server }: RouteRequest): Promise<void> {
  const body = await readJson(req, server.limits.maxBodyBytes);
  const request = parseA1111Txt2Img(body, server.limits);
  const { id } = await server.queue.submit(request);
  const stop = new AbortController();
  let clientGone = false;
  const onClose = () => {
    if (!res.writableFinished) clientGone = true;
    stop.abort();
  };
  const onClosing = () => stop.abort();
  res.on('close', onClose);
  server.closing.addEventListener('abort', onClosing);
  let status: JobStatus | null;
  try {
    status = await waitForJob(server.queue, id, stop.signal);
  } finally {
    res.off('close', onClose);
    server.closing.removeEventListener('abort', onClosing);
  }
  if (clientGone) {
    await server.queue.cancel(id);
    return;
  }
  if (status === null) throw new HttpError(503, `the server is shutting down; generation ${id} stays queued`, { headers: { 'retry-after': '5' } });
  if (status.status === 'failed') throw new HttpError(500, `the generation failed: ${status.error ?? 'unknown error'}`);
  if (status.status !== 'succeeded' || !status.result) throw new HttpError(409, `generation ${id} was ${status.status}`);
  const images: Uint8Array[] = [];
  for (let n = 0; n < status.imageCount; n++) {
    const png = await server.queue.image(id, n);
    if (!png) throw new HttpError(410, `the images of generation ${id} expired before they could be sent`);
    images.push(png);
  }
  sendJson(res, 200, a1111Response(body, request, { images, info: status.result }));
}

export const A1111_ROUTES: readonly Route[] = [{ method: 'POST', path: '/sdapi/v1/txt2img', auth: true, handle: txt2img }];
