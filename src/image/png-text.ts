/**
 * PNG `tEXt` chunks: A1111-style generation parameters are stored as a `parameters` text chunk
 * right after IHDR, where image viewers and SD tools look for it.
 */
import { InputError } from '../errors.js';

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

function crcTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

function crc32(bytes: Uint8Array, table: Uint32Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Insert `tEXt` chunks (Latin-1 keyword and text) after the IHDR chunk of a PNG. */
export function addPngText(png: Uint8Array, entries: Readonly<Record<string, string>>): Uint8Array {
  if (!SIGNATURE.every((b, i) => png[i] === b)) throw new InputError('not a PNG file');
  const ihdrEnd = 8 + 8 + new DataView(png.buffer, png.byteOffset).getUint32(8) + 4;
  const table = crcTable();
  const chunks: Uint8Array[] = [];
  for (const [keyword, text] of Object.entries(entries)) {
    if (!/^[\x20-\x7e]{1,79}$/.test(keyword)) throw new InputError(`invalid PNG text keyword ${JSON.stringify(keyword)}`);
    const body = Buffer.from(`tEXt${keyword}\0${text}`, 'latin1');
    const chunk = Buffer.alloc(body.length + 8);
    chunk.writeUInt32BE(body.length - 4, 0);
    body.copy(chunk, 4);
    chunk.writeUInt32BE(crc32(body, table), body.length + 4);
    chunks.push(chunk);
  }
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** Read back the `tEXt` chunks of a PNG. */
export function readPngText(png: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let at = 8;
  while (at + 8 <= png.length) {
    const len = view.getUint32(at);
    const type = Buffer.from(png.subarray(at + 4, at + 8)).toString('latin1');
    if (type === 'tEXt') {
      const body = Buffer.from(png.subarray(at + 8, at + 8 + len)).toString('latin1');
      const nul = body.indexOf('\0');
      out[body.slice(0, nul)] = body.slice(nul + 1);
    }
    at += 12 + len;
  }
  return out;
}
