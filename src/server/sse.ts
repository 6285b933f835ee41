/**
 * A job's events as Server-Sent Events: `status` (the job view), `progress` (`{ step, total, preview? }`,
 * the preview a PNG data URL), then `done` (the final job view), after which the stream ends. A comment
 * line every `heartbeatMs` keeps idle proxies from cutting a long queue wait. The subscription ends when
 * the client goes away or the server shuts down, so no listener outlives its connection.
 */
import { jobView } from './job-view.js';
import type { JobEvent } from './jobs.js';
import type { RouteRequest } from './route.js';

/** The wire form of one event: its SSE `event:` name and JSON `data:`. */
export function sseMessage(event: JobEvent): string {
  const data =
    event.type === 'progress'
      ? { step: event.step, total: event.total, ...(event.previewBase64 !== undefined ? { preview: `data:image/png;base64,${event.previewBase64}` } : {}) }
      : jobView(event.status);
  // JSON.stringify never emits a raw newline, so the data is one `data:` line
  return `event: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

export async function streamJobEvents({ req, res, server }: RouteRequest, id: string): Promise<void> {
  const stop = new AbortController();
  const onGone = () => stop.abort();
  res.on('close', onGone);
  server.closing.addEventListener('abort', onGone);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    // nginx buffers responses unless told not to; a progress bar that arrives all at once is no progress bar
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  req.socket.setNoDelay(true);
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), server.heartbeatMs);
  try {
    for await (const event of server.queue.events(id, { signal: stop.signal })) {
      if (stop.signal.aborted) break;
      res.write(sseMessage(event));
      if (event.type === 'done') break;
    }
  } catch (e) {
    // the queue ends a subscription its signal aborted by throwing; anything else is worth a log line
    if (!stop.signal.aborted) server.log(`events of ${id}: ${(e as Error).message}`);
  } finally {
    clearInterval(heartbeat);
    res.off('close', onGone);
    server.closing.removeEventListener('abort', onGone);
    res.end();
  }
}
