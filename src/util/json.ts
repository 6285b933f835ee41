/**
 * JSON as Python's `json` module writes it: diffusers' `save_config` emits the bare tokens
 * `NaN`, `Infinity` and `-Infinity` (e.g. DPMSolverMultistep's `lambda_min_clipped`), which
 * JSON.parse rejects. They are accepted here, outside strings only.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, ControlNetXSError } from '../errors.js';
import { readTextFile } from '../platform/files.js';

const MARK = '\u0000pyjson:';

export function parsePythonJson(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === '\\') out += text[++i] ?? '';
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
      continue;
    }
    const token = ['-Infinity', 'Infinity', 'NaN'].find((t) => text.startsWith(t, i));
    if (token) {
      out += JSON.stringify(MARK + token);
      i += token.length - 1;
      continue;
    }
    out += ch;
  }
  return JSON.parse(out, (_key, value: unknown) => {
    if (typeof value === 'string' && value.startsWith(MARK)) {
      const t = value.slice(MARK.length);
      return t === 'NaN' ? NaN : t === 'Infinity' ? Infinity : -Infinity;
    }
    return value;
  });
}

/**
 * A JSON object file (a config, `model_index.json`, a preprocessor config) as Python writes it: a
 * ConfigError naming the file when it cannot be read, is not JSON, or is not an object.
 */
export function readJsonObject(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read it (${(e as Error).message})`, { cause: e });
  }
  return jsonObject(path, text);
}

/** `readJsonObject` through the platform's file seam (a local file in Node, a URL in the browser). */
export async function loadJsonObject(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (e) {
    if (e instanceof ControlNetXSError) throw e;
    throw new ConfigError(`${path}: cannot read it (${(e as Error).message})`, { cause: e });
  }
  return jsonObject(path, text);
}

function jsonObject(path: string, text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = parsePythonJson(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${path}: not a JSON object`);
  return raw as Record<string, unknown>;
}
