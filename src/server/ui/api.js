// @ts-check
/**
 * The HTTP API as the page calls it: JSON in and out, the API key (when one is set) as a Bearer token
 * on every call, and every failure as an ApiError carrying the field the server named. Paths are
 * relative to the page, so the UI also works behind a proxy that mounts the server under a prefix.
 */
import { readSse } from './sse.js';

export class ApiError extends Error {
  /**
   * @param {string} message one line for the person
   * @param {{ status?: number; field?: string; retryAfter?: number }} [details]
   *   status: the HTTP status (absent: the server was not reached); field: the request field at fault
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = details.status;
    this.field = details.field;
    this.retryAfter = details.retryAfter;
  }
}

/**
 * @typedef {{ type: 'status'; status: JobView } | { type: 'progress'; step: number; total: number; preview?: string } | { type: 'done'; status: JobView }} JobEventView
 * @typedef {{
 *   id: string;
 *   status: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
 *   position?: number;
 *   progress: { step: number; total: number };
 *   images: string[];
 *   result?: { parameters: string[]; seeds: string[]; width: number; height: number; sampler: string; seconds: number; nsfwContentDetected: boolean[] | null };
 *   error?: string;
 * }} JobView what `GET /v1/generations/{id}` answers, and the data of the `status` and `done` events
 */

export class Api {
  /** @param {{ key: () => string }} options key: the current API key ('' = none) */
  constructor(options) {
    this.key = options.key;
  }

  /**
   * @param {string} method
   * @param {string} path relative to the page, e.g. 'v1/generations'
   * @param {{ json?: unknown; signal?: AbortSignal; accept?: string }} [options]
   * @returns {Promise<Response>} a 2xx response
   */
  async call(method, path, options = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: options.accept ?? 'application/json' };
    const key = this.key();
    if (key) headers['Authorization'] = `Bearer ${key}`;
    /** @type {RequestInit} */
    const init = { method, headers, cache: 'no-store' };
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.json);
    }
    if (options.signal) init.signal = options.signal;
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e;
      throw new ApiError('cannot reach the server; is cnxs serve running?');
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [json]
   */
  async json(method, path, json) {
    const response = await this.call(method, path, json === undefined ? {} : { json });
    return /** @type {unknown} */ (await response.json());
  }

  /**
   * A binary answer (an image) as a Blob: `<img src>` cannot send the Authorization header, so the
   * page fetches the bytes and shows them from an object URL.
   * @param {string} method
   * @param {string} path
   * @param {{ json?: unknown; signal?: AbortSignal }} [options]
   */
  async blob(method, path, options = {}) {
    const response = await this.call(method, path, { ...options, accept: 'image/png' });
    return response.blob();
  }

  /**
   * Follow a job's Server-Sent Events until `done` or the stream ends.
   * @param {string} id
   * @returns {AsyncGenerator<JobEventView>}
   */
  async *events(id) {
    const response = await this.call('GET', `v1/generations/${encodeURIComponent(id)}/events`, { accept: 'text/event-stream' });
    if (!response.body) throw new ApiError('the server sent no event stream');
    for await (const message of readSse(response.body)) {
      const data = /** @type {Record<string, unknown>} */ (JSON.parse(message.data));
      if (message.event === 'progress') {
        const event = /** @type {JobEventView} */ ({ type: 'progress', step: Number(data['step']), total: Number(data['total']) });
        if (typeof data['preview'] === 'string' && event.type === 'progress') event.preview = data['preview'];
        yield event;
      } else if (message.event === 'status' || message.event === 'done') {
        yield /** @type {JobEventView} */ ({ type: message.event, status: /** @type {JobView} */ (data) });
        if (message.event === 'done') return;
      }
    }
  }
}

/**
 * The API's `{ error: { message, field } }` (any other body: the status line).
 * @param {Response} response
 */
async function errorOf(response) {
  const retry = Number(response.headers.get('Retry-After'));
  /** @type {{ status: number; field?: string; retryAfter?: number }} */
  const details = { status: response.status };
  if (Number.isFinite(retry) && retry > 0) details.retryAfter = retry;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = /** @type {{ error?: { message?: unknown; field?: unknown } }} */ (await response.json());
    if (typeof body.error?.message === 'string') message = body.error.message;
    if (typeof body.error?.field === 'string') details.field = body.error.field;
  } catch {
    // not JSON (a proxy's page): the status line says enough
  }
  return new ApiError(message, details);
}
