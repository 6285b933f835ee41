/**
 * PNG text chunks: A1111-style generation parameters are stored as a `parameters` text chunk
 * right after IHDR, where image viewers and SD tools look for it.
 *
 * Like Pillow's `PngInfo.add_text` (which A1111 uses), text that Latin-1 can hold goes into a `tEXt`
 * chunk and anything else (CJK, emoji, curly quotes, em dashes) into an uncompressed, UTF-8 `iTXt`
 * chunk — a `tEXt` chunk cannot carry those characters at all. `readPngText` reads `tEXt`, `zTXt`
 * and `iTXt` (compressed or not), so it reads back what Pillow, A1111 and this module write.
 */
import { inflateSync } from 'node:zlib';
import { InputError } from '../errors.js';

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/**
 * Decompressed size limit for one `zTXt` / compressed `iTXt` chunk: a few KiB of parameters is the
 * norm, and the cap keeps a crafted PNG (a zlib bomb) from exhausting memory. Pillow caps at 1 MB.
 */
const MAX_INFLATED_TEXT = 8 * 1024 * 1024;

function crcTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** CRC-32 of the PNG spec (ISO 3309), over a chunk's type and data. */
function crc32(bytes: Uint8Array, table: Uint32Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Why `keyword` cannot be a PNG text keyword, or undefined when it can. The PNG spec (11.3.4.2):
 * 1–79 printable Latin-1 characters (32–126, 161–255), no leading, trailing or consecutive spaces.
 */
function keywordProblem(keyword: string): string | undefined {
  if (keyword.length < 1 || keyword.length > 79) return `must be 1 to 79 characters long, got ${keyword.length}`;
  if (!/^[\x20-\x7e\xa1-\xff]+$/.test(keyword)) return 'must hold printable Latin-1 characters only (no NUL, no control characters)';
  if (/^ | $| {2}/.test(keyword)) return 'must not have leading, trailing or consecutive spaces';
  return undefined;
}

/** True when every character of `text` fits in one Latin-1 byte, i.e. `tEXt` can carry it unchanged. */
function isLatin1(text: string): boolean {
  return /^[\x00-\xff]*$/.test(text);
}

/**
 * Check text entries before they are written with `addPngText` (or `RGBImage.save({ pngText })`),
 * throwing the `InputError` that writing would throw. Callers that only write after a long
 * computation (the CLI generates first, saves last) call this up front so a bad prompt fails in
 * milliseconds, not after the generation.
 *
 * Refused: a keyword that is not 1–79 printable Latin-1 characters without leading, trailing or
 * double spaces; text holding a NUL (neither `tEXt` nor `iTXt` can carry one: it is their field
 * separator); text holding a lone UTF-16 surrogate (UTF-8 cannot encode it, so it would be garbled).
 */
export function checkPngText(entries: Readonly<Record<string, string>>): void {
  for (const [keyword, text] of Object.entries(entries)) {
    const problem = keywordProblem(keyword);
    if (problem !== undefined) throw new InputError(`invalid PNG text keyword ${JSON.stringify(keyword)}: ${problem}`);
    if (text.includes('\0')) {
      throw new InputError(`PNG text ${JSON.stringify(keyword)} contains a NUL character, which PNG text chunks cannot hold`);
    }
    // With the `u` flag a surrogate range only matches a surrogate that is not half of a pair.
    if (/[\ud800-\udfff]/u.test(text)) {
      throw new InputError(`PNG text ${JSON.stringify(keyword)} contains an unpaired UTF-16 surrogate, which UTF-8 cannot encode`);
    }
  }
}

/** One chunk: 4-byte big-endian length, type, data, CRC over type and data. */
function chunk(type: string, data: Buffer, table: Uint32Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(body.length + 8);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body, table), body.length + 4);
  return out;
}

/** The chunk for one entry: `tEXt` when the text is Latin-1, else uncompressed `iTXt`, as Pillow writes them. */
function textChunk(keyword: string, text: string, table: Uint32Array): Buffer {
  if (isLatin1(text)) return chunk('tEXt', Buffer.from(`${keyword}\0${text}`, 'latin1'), table);
  // iTXt: keyword, NUL, compression flag 0, compression method 0, empty language tag + NUL,
  // empty translated keyword + NUL, UTF-8 text (PNG spec 11.3.4.5).
  const head = Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0])]);
  return chunk('iTXt', Buffer.concat([head, Buffer.from(text, 'utf8')]), table);
}

function assertPng(png: Uint8Array): void {
  if (png.length < 8 || !SIGNATURE.every((b, i) => png[i] === b)) throw new InputError('not a PNG file');
}

/**
 * Insert text chunks after the IHDR chunk of a PNG: `tEXt` for Latin-1 text, UTF-8 `iTXt` otherwise.
 * Throws `InputError` for entries `checkPngText` refuses, or when `png` is not a PNG.
 */
export function addPngText(png: Uint8Array, entries: Readonly<Record<string, string>>): Uint8Array {
  assertPng(png);
  checkPngText(entries);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  if (png.length < 16 || Buffer.from(png.subarray(12, 16)).toString('latin1') !== 'IHDR') {
    throw new InputError('not a PNG file: the first chunk is not IHDR');
  }
  const ihdrEnd = 8 + 8 + view.getUint32(8) + 4;
  if (ihdrEnd > png.length) throw new InputError('truncated PNG file: the IHDR chunk is cut short');
  const table = crcTable();
  const chunks = Object.entries(entries).map(([keyword, text]) => textChunk(keyword, text, table));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** Inflate a compressed text field; method 0 (zlib deflate) is the only one PNG defines. */
function inflateText(type: string, keyword: string, method: number | undefined, data: Uint8Array): Buffer {
  if (method !== 0) throw new InputError(`PNG ${type} chunk ${JSON.stringify(keyword)}: unknown compression method ${method}`);
  try {
    return inflateSync(data, { maxOutputLength: MAX_INFLATED_TEXT });
  } catch (e) {
    throw new InputError(`PNG ${type} chunk ${JSON.stringify(keyword)}: cannot decompress (${(e as Error).message})`, { cause: e });
  }
}

/** Decode one text chunk's data into [keyword, text], or undefined for a chunk too malformed to read. */
function decodeTextChunk(type: string, data: Buffer): [string, string] | undefined {
  const nul = data.indexOf(0);
  // Pillow reads a tEXt chunk without a separator as a keyword with empty text; so does this.
  if (type === 'tEXt') {
    return nul < 0 ? [data.toString('latin1'), ''] : [data.subarray(0, nul).toString('latin1'), data.subarray(nul + 1).toString('latin1')];
  }
  if (nul < 0) return undefined;
  const keyword = data.subarray(0, nul).toString('latin1');
  if (type === 'zTXt') return [keyword, inflateText(type, keyword, data[nul + 1], data.subarray(nul + 2)).toString('latin1')];
  // iTXt: compression flag, method, language tag NUL, translated keyword NUL, text.
  const flag = data[nul + 1];
  const method = data[nul + 2];
  const langEnd = data.indexOf(0, nul + 3);
  const translatedEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1);
  if (flag === undefined || translatedEnd < 0) return undefined;
  const body = data.subarray(translatedEnd + 1);
  return [keyword, (flag === 0 ? body : inflateText(type, keyword, method, body)).toString('utf8')];
}

/**
 * Read back the text chunks of a PNG (`tEXt`, `zTXt`, `iTXt`), keyword → text; a later chunk with the
 * same keyword wins, as in Pillow's `Image.info`. Throws `InputError` when `png` is not a PNG, a text
 * chunk is cut short or fails its CRC, or compressed text cannot be inflated.
 */
export function readPngText(png: Uint8Array): Record<string, string> {
  assertPng(png);
  // A Map, turned into an object at the end, so a keyword like "__proto__" is an own property.
  const out = new Map<string, string>();
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let table: Uint32Array | undefined;
  let at = 8;
  while (at + 8 <= png.length) {
    const len = view.getUint32(at);
    const type = Buffer.from(png.subarray(at + 4, at + 8)).toString('latin1');
    if (type === 'IEND') break;
    if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
      if (at + 12 + len > png.length) throw new InputError(`truncated PNG file: the ${type} chunk at byte ${at} is cut short`);
      table ??= crcTable();
      if (crc32(png.subarray(at + 4, at + 8 + len), table) !== view.getUint32(at + 8 + len)) {
        throw new InputError(`corrupt PNG file: the ${type} chunk at byte ${at} fails its CRC check`);
      }
      const entry = decodeTextChunk(type, Buffer.from(png.buffer, png.byteOffset + at + 8, len));
      if (entry !== undefined) out.set(entry[0], entry[1]);
    }
    at += 12 + len;
  }
  return Object.fromEntries(out);
}
