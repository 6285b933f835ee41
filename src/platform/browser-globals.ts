/**
 * The few browser APIs the browser build uses, typed structurally: the project compiles against
 * Node's types only (no DOM lib, which would leak `window` & co. into Node code), so each browser
 * file reaches these through `browserGlobals()` and states what it needs.
 */

/** The part of a `Cache` (Cache Storage) used here. */
export interface BrowserCache {
  match(request: string): Promise<Response | undefined>;
  put(request: string, response: Response): Promise<void>;
  delete(request: string): Promise<boolean>;
}

export interface BrowserGlobals {
  /** Cache Storage; absent outside secure contexts (plain http on another host than localhost). */
  caches?: { open(name: string): Promise<BrowserCache> };
  /** The page's (or worker's) address, which relative URLs resolve against. */
  location?: { href: string };
  crossOriginIsolated?: boolean;
  navigator?: { gpu?: { requestAdapter(): Promise<unknown> }; hardwareConcurrency?: number };
}

export function browserGlobals(): BrowserGlobals {
  return globalThis as unknown as BrowserGlobals;
}
