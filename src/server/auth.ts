/**
 * Who may call: the API key check (`Authorization: Bearer <key>`, compared in constant time — both sides
 * hashed to the same length first, so neither the key's length nor its prefix leaks through timing), and
 * for a keyless server on a loopback address, the check that a request was addressed to a loopback name.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
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

/** Loopback addresses and `localhost` (IPv6 with or without brackets): binding these exposes nothing to the network. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

/**
 * A keyless server on a loopback address answers only requests whose `Host` names a loopback address.
 * Without this, a web page could point its own domain at 127.0.0.1 (DNS rebinding) and then call the API
 * as a same-origin page; its requests would still carry its domain in `Host`, which is what this refuses.
 */
export function loopbackHostCheck(headers: IncomingHttpHeaders): void {
  const host = headers.host ?? '';
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
  if (!isLoopbackHost(name)) {
    throw new HttpError(403, `this server answers only requests addressed to localhost, not ${JSON.stringify(host)} (a guard against DNS rebinding); give it an --api-key to serve other names`);
  }
}
