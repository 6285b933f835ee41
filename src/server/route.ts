/**
 * What a route is: a method, a path template in OpenAPI's form (`/v1/generations/{id}/images/{n}.png`),
 * whether it needs the API key, and a handler. The templates are matched as written, so the route table
 * and `/openapi.json` name paths the same way and a test can hold them to each other.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JobQueue } from './jobs.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerLimits } from './limits.js';

export type Method = 'GET' | 'POST' | 'DELETE';

/** What every handler may use: the queue, the limits, and the server's lifetime. */
export interface ServerContext {
  queue: JobQueue;
  limits: ServerLimits;
  metrics: ServerMetrics;
  /** Aborts when the server shuts down: long-lived responses (event streams, A1111's wait) end then. */
  closing: AbortSignal;
  /** Milliseconds between comment lines on an idle event stream, so proxies keep it open. */
  heartbeatMs: number;
  /** What `/readyz` reports about the loaded models (absent: this process loads none). */
  describe?: () => unknown;
  log: (line: string) => void;
}

export interface RouteRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** The template's `{name}` parts, percent-decoded. */
  params: Readonly<Record<string, string>>;
  url: URL;
  server: ServerContext;
}

export interface Route {
  method: Method;
  path: string;
  /** The API key is required (when the server has one). */
  auth: boolean;
  handle(r: RouteRequest): Promise<void>;
}

/** A template as a matcher: each `{name}` is one path segment (or the part of one before a fixed suffix). */
export function compilePath(template: string): (path: string) => Record<string, string> | null {
  const names: string[] = [];
  const source = template
    .split('/')
    .map((segment) =>
      segment.replace(/\{(\w+)\}|([^{]+)/g, (_, name: string | undefined, fixed: string | undefined) => {
        if (name !== undefined) {
          names.push(name);
          return '([^/]+)';
        }
        return fixed!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      }),
    )
    .join('/');
  const re = new RegExp(`^${source}$`);
  return (path) => {
    const m = re.exec(path);
    if (!m) return null;
    const params: Record<string, string> = {};
    try {
      names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)));
    } catch {
      return null; // malformed percent-encoding: no resource of ours has that name
    }
    return params;
  };
}
