/**
 * The HTTP plumbing every route shares: JSON responses, the one error shape (`{ error: { message, field? } }`),
 * and request bodies read under a byte cap. An `HttpError` thrown anywhere in a route becomes its response;
 * anything else becomes a 500 with a generic message (the stack goes to the log, never to the client).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ControlNetXSError } from '../errors.js';

/** A request the server refuses: `status` and a message for the client, optionally the field at fault. */
export class HttpError extends ControlNetXSError {
  constructor(
    readonly status: number,
    message: string,
    readonly details: { field?: string; headers?: Readonly<Record<string, string>> } = {},
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { message: string; field?: string };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendBytes(res: ServerResponse, status: number, bytes: Uint8Array, contentType: string, headers: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': bytes.length, ...headers });
  res.end(bytes);
}

export function sendError(res: ServerResponse, status: number, message: string, details: HttpError['details'] = {}): void {
  const body: ErrorBody = { error: { message, ...(details.field !== undefined ? { field: details.field } : {}) } };
  sendJson(res, status, body, details.headers ?? {});
}

/**
 * The whole body, refused with 413 once it passes `maxBytes` — from `Content-Length` before anything is
 * read, or while streaming for a chunked body — so an oversized upload never sits in memory.
 */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  // `connection: close`: the rest of the upload is not read, so this connection cannot carry another request
  const tooLarge = () => new HttpError(413, `the request body is over the server's limit of ${maxBytes} bytes`, { headers: { connection: 'close' } });
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * The body as JSON (an object at the top), after `readBody`'s cap; malformed JSON is a 400. Another
 * declared content type is a 415: a browser sends text/plain or form posts to any origin without asking,
 * but application/json only after a CORS preflight this server never grants, so no other site's page can
 * submit jobs through a visitor's browser.
 */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'];
  // required, not only checked when present: a body without a type is a "simple" cross-origin request too
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, `the request body must be sent as Content-Type: application/json, got ${type ?? 'no Content-Type'}`);
  }
  const bytes = await readBody(req, maxBytes);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'the request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
