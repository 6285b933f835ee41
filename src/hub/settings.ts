/**
 * Reading huggingface_hub's environment variables (constants.py) into one settings object.
 * Explicit options win over the environment; the environment is a parameter so it can be tested.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { HubOptions } from './options.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

type Env = Readonly<Record<string, string | undefined>>;

export interface HubSettings {
  /** Absolute cache root (the folder holding `models--org--name`). */
  cacheDir: string;
  /** Hub address without a trailing slash. */
  endpoint: string;
  token: string | null;
  /** Why the Hub must not be asked, or null when it may. */
  offline: 'localFilesOnly' | 'HF_HUB_OFFLINE' | null;
  /** ms a HEAD or API request may take. */
  metadataTimeoutMs: number;
  /** ms a download may stay silent before it counts as cut. */
  downloadTimeoutMs: number;
}

/** A set, non-empty environment value. */
function envValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** huggingface_hub's `_is_true`: 1, ON, YES, TRUE in any case. */
export function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.toUpperCase());
}

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

/** `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`. */
export function hfHome(env: Env): string {
  const home = envValue(env, 'HF_HOME');
  if (home) return expandHome(home);
  return join(expandHome(envValue(env, 'XDG_CACHE_HOME') ?? join(homedir(), '.cache')), 'huggingface');
}

/** `HF_HUB_CACHE` > `HUGGINGFACE_HUB_CACHE` (legacy) > `$HF_HOME/hub`. */
export function defaultCacheDir(env: Env): string {
  const dir = envValue(env, 'HF_HUB_CACHE') ?? envValue(env, 'HUGGINGFACE_HUB_CACHE');
  return dir ? expandHome(dir) : join(hfHome(env), 'hub');
}

/** huggingface_hub's `get_token`: `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, then the token file. */
export function implicitToken(env: Env): string | null {
  const clean = (t: string | undefined) => (t === undefined ? null : t.replace(/[\r\n]/g, '').trim() || null);
  const fromEnv = clean(envValue(env, 'HF_TOKEN') ?? envValue(env, 'HUGGING_FACE_HUB_TOKEN'));
  if (fromEnv) return fromEnv;
  const path = expandHome(envValue(env, 'HF_TOKEN_PATH') ?? join(hfHome(env), 'token'));
  try {
    return clean(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

function seconds(env: Env, name: string, fallback: number): number {
  const v = Number(envValue(env, name));
  return Number.isFinite(v) && v > 0 ? v * 1000 : fallback;
}

/** Settings for one call: options first, then `env` (default `options.env ?? process.env`). */
export function resolveHubSettings(options: HubOptions, env: Env = options.env ?? process.env): HubSettings {
  let token: string | null;
  if (options.token === false) token = null;
  else if (typeof options.token === 'string' && options.token !== '') token = options.token;
  else token = isTrue(envValue(env, 'HF_HUB_DISABLE_IMPLICIT_TOKEN')) ? null : implicitToken(env);
  const offline = options.localFilesOnly
    ? 'localFilesOnly'
    : isTrue(envValue(env, 'HF_HUB_OFFLINE') ?? envValue(env, 'TRANSFORMERS_OFFLINE'))
      ? 'HF_HUB_OFFLINE'
      : null;
  return {
    cacheDir: resolve(options.cacheDir ? expandHome(options.cacheDir) : defaultCacheDir(env)),
    endpoint: (options.endpoint ?? envValue(env, 'HF_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token,
    offline,
    metadataTimeoutMs: options.timeoutMs ?? seconds(env, 'HF_HUB_ETAG_TIMEOUT', 10_000),
    downloadTimeoutMs: options.timeoutMs ?? seconds(env, 'HF_HUB_DOWNLOAD_TIMEOUT', 10_000),
  };
}
