/**
 * Reading a JSON request body field by field: every wrong value is a BadRequestError naming the field's
 * path (`steps`, `canny.low`, `alwayson_scripts.controlnet.args[0].weight`) with a one-line message.
 */
import { InputError } from '../errors.js';
import { didYouMean } from '../generate/did-you-mean.js';
import { MAX_SEED } from '../generate/seeds.js';
import { checkPngText } from '../image/png-text.js';
import { readImageHeader } from './image-header.js';

/** A request the server refuses (HTTP 400): `field` is the path of the value at fault, as the client wrote it. */
export class BadRequestError extends InputError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** A value as a message quotes it: JSON, cut short when long (a base64 image would fill a screen). */
export function show(v: unknown): string {
  const s = v === undefined ? 'undefined' : JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 37)}…` : s;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export interface NumberRange {
  min?: number;
  max?: number;
}

function rangeText(r: NumberRange): string {
  if (r.min !== undefined && r.max !== undefined) return ` from ${r.min} to ${r.max}`;
  if (r.min !== undefined) return ` ≥ ${r.min}`;
  if (r.max !== undefined) return ` ≤ ${r.max}`;
  return '';
}

/** The fields of one JSON object at `path` ('' for the body). */
export class FieldReader {
  private constructor(
    private readonly fields: Readonly<Record<string, unknown>>,
    private readonly path: string,
  ) {}

  /** `value` must be a JSON object; `path` names it in messages ('' for the body itself). */
  static of(value: unknown, path: string): FieldReader {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new BadRequestError(path || 'body', `${path || 'the request body'} must be a JSON object, got ${typeName(value)}`);
    }
    return new FieldReader(value as Record<string, unknown>, path);
  }

  /** The field's path in messages: `canny.low`, `alwayson_scripts.controlnet.args[0].image`. */
  name(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  /** Present (a field with `undefined` cannot come from JSON, so present means written). */
  has(key: string): boolean {
    return Object.hasOwn(this.fields, key);
  }

  raw(key: string): unknown {
    return this.has(key) ? this.fields[key] : undefined;
  }

  /** Refuse the first field not in `known`, with the closest known name. */
  onlyKnown(known: readonly string[]): void {
    for (const key of Object.keys(this.fields)) {
      if (!known.includes(key)) {
        throw new BadRequestError(this.name(key), `unknown field "${this.name(key)}"${didYouMean(key, known)}; known: ${known.join(', ')}`);
      }
    }
  }

  string(key: string): string | undefined {
    if (!this.has(key)) return undefined;
    const v = this.fields[key];
    if (typeof v !== 'string') throw new BadRequestError(this.name(key), `${this.name(key)} must be a string, got ${typeName(v)}`);
    return v;
  }

  requiredString(key: string): string {
    const v = this.string(key);
    if (v === undefined) throw new BadRequestError(this.name(key), `${this.name(key)} is required`);
    return v;
  }

  /** Text that goes into the PNG's `parameters` chunk: no NUL, no unpaired surrogate. */
  text(key: string): string | undefined {
    const v = this.string(key);
    if (v === undefined) return undefined;
    try {
      checkPngText({ parameters: v });
    } catch (e) {
      const why = e instanceof InputError ? e.message.replace(/^PNG text "parameters" /, '') : String(e);
      throw new BadRequestError(this.name(key), `${this.name(key)} ${why}`);
    }
    return v;
  }

  number(key: string, range: NumberRange = {}): number | undefined {
    if (!this.has(key)) return undefined;
    const v = this.fields[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new BadRequestError(this.name(key), `${this.name(key)} must be a number${rangeText(range)}, got ${show(v)}`);
    return this.inRange(key, v, range, 'a number');
  }

  integer(key: string, range: NumberRange = {}): number | undefined {
    if (!this.has(key)) return undefined;
    const v = this.fields[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadRequestError(this.name(key), `${this.name(key)} must be a whole number${rangeText(range)}, got ${show(v)}`);
    return this.inRange(key, v, range, 'a whole number');
  }

  boolean(key: string): boolean | undefined {
    if (!this.has(key)) return undefined;
    const v = this.fields[key];
    if (typeof v !== 'boolean') throw new BadRequestError(this.name(key), `${this.name(key)} must be true or false, got ${show(v)}`);
    return v;
  }

  /** A nested object's reader, or undefined when absent. */
  object(key: string): FieldReader | undefined {
    return this.has(key) ? FieldReader.of(this.fields[key], this.name(key)) : undefined;
  }

  /** A JSON array, or undefined when absent. */
  array(key: string): readonly unknown[] | undefined {
    if (!this.has(key)) return undefined;
    const v = this.fields[key];
    if (!Array.isArray(v)) throw new BadRequestError(this.name(key), `${this.name(key)} must be an array, got ${typeName(v)}`);
    return v;
  }

  private inRange(key: string, v: number, range: NumberRange, what: string): number {
    if ((range.min !== undefined && v < range.min) || (range.max !== undefined && v > range.max)) {
      throw new BadRequestError(this.name(key), `${this.name(key)} must be ${what}${rangeText(range)}, got ${show(v)}`);
    }
    return v;
  }
}

/**
 * A seed: a JSON number while exact (≤ 2^53 − 1), or a decimal string up to 2^64 − 1 (JSON numbers lose
 * digits above 2^53, so larger seeds must be strings).
 */
export function readSeed(f: FieldReader, key: string): bigint | undefined {
  if (!f.has(key)) return undefined;
  const v = f.raw(key);
  const name = f.name(key);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      const hint = Number.isInteger(v) && v > 0 ? ' (above 2^53 a JSON number loses digits: send the seed as a decimal string)' : '';
      throw new BadRequestError(name, `${name} must be a whole number from 0 to ${MAX_SEED}${hint}, got ${show(v)}`);
    }
    return BigInt(v);
  }
  if (typeof v === 'string' && /^\d{1,20}$/.test(v) && BigInt(v) <= MAX_SEED) return BigInt(v);
  throw new BadRequestError(name, `${name} must be a whole number from 0 to ${MAX_SEED} (a number, or a decimal string), got ${show(v)}`);
}

/** `data:image/png;base64,` and the like, before the base64 of a data URL. */
const DATA_URL = /^data:[^,;]*(;[^,;]*)*,/i;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A control image given as base64 or a data URL: decoded, then PNG or JPEG by its magic bytes, its
 * size read from its header and held to `maxImagePixels`. Returns canonical base64 (no prefix, no
 * line breaks) for the request.
 */
export function readImage(f: FieldReader, key: string, maxImagePixels: number): string {
  const name = f.name(key);
  let text = f.requiredString(key);
  const prefix = DATA_URL.exec(text);
  if (prefix) {
    if (!/;base64,$/i.test(prefix[0])) throw new BadRequestError(name, `${name} is a data URL without ;base64: send the image base64-encoded`);
    text = text.slice(prefix[0].length);
  }
  text = text.replace(/\s+/g, ''); // MIME base64 wraps its lines
  if (text.length === 0) throw new BadRequestError(name, `${name} is empty: send a PNG or JPEG as base64 or a data URL`);
  if (!BASE64.test(text) || text.length % 4 === 1) throw new BadRequestError(name, `${name} is not valid base64 (A–Z, a–z, 0–9, +, /, = padding)`);
  const bytes = Buffer.from(text, 'base64');
  const header = readImageHeader(bytes);
  if (header === null) throw new BadRequestError(name, `${name} is not a PNG or JPEG file (by its first bytes)`);
  if (typeof header === 'string') throw new BadRequestError(name, `${name} is ${header}`);
  if (header.width === 0 || header.height === 0) throw new BadRequestError(name, `${name} is ${header.width}×${header.height} px: it has no pixels`);
  if (header.width * header.height > maxImagePixels) {
    throw new BadRequestError(name, `${name} is ${header.width}×${header.height} px, over this server's ${maxImagePixels} pixels for a control image`);
  }
  return bytes.toString('base64');
}
