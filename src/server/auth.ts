/**
 * The API key check: `Authorization: Bearer <key>`, compared in constant time (both sides hashed to the
 * same length first, so neither the key's length nor its prefix leaks through timing).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from './http-io.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** A check for one key: throws a 401 (with `WWW-Authenticate`) unless the headers carry it. */
export function bearerCheck(apiKey: string): (headers: IncomingHttpHeaders) => void {
  const expected = digest(apiKey);
  return (headers) => {
    const header = headers.authorization;
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) {
      throw new HttpError(401, 'this server needs an API key: send Authorization: Bearer <key>', {
        headers: { 'www-authenticate': 'Bearer realm="cnxs"' },
      });
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) {
      throw new HttpError(401, 'the API key is wrong', { headers: { 'www-authenticate': 'Bearer realm="cnxs", error="invalid_token"' } });
    }
  };
}
