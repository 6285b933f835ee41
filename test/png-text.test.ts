/**
 * PNG text chunks: Latin-1 text as `tEXt`, anything else as UTF-8 `iTXt` (what Pillow's
 * `PngInfo.add_text` writes and A1111 reads), keyword and text validation, and reading back
 * `tEXt`, `zTXt` and `iTXt` (compressed or not).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { InputError } from '../src/errors.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { addPngText, checkPngText, readPngText } from '../src/image/png-text.js';
import { tempDir } from './helpers.js';

const WIDTH = 5;
const HEIGHT = 3;
const PIXELS = new Uint8Array(WIDTH * HEIGHT * 3).map((_, i) => (i * 37 + 11) & 0xff);

async function plainPng(): Promise<Buffer> {
  return sharp(PIXELS, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).png().toBuffer();
}

interface Chunk {
  type: string;
  data: Buffer;
  crcOk: boolean;
}

/** Every chunk of a PNG, with its CRC checked by node:zlib (independent of the code under test). */
function chunks(png: Uint8Array): Chunk[] {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const out: Chunk[] = [];
  for (let at = 8; at + 12 <= buf.length; ) {
    const len = buf.readUInt32BE(at);
    out.push({
      type: buf.toString('latin1', at + 4, at + 8),
      data: buf.subarray(at + 8, at + 8 + len),
      crcOk: crc32(buf.subarray(at + 4, at + 8 + len)) === buf.readUInt32BE(at + 8 + len),
    });
    at += 12 + len;
  }
  return out;
}

/** A chunk made by hand (length, type, data, CRC), to feed readPngText what other writers write. */
function rawChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length);
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(crc32(body));
  return Buffer.concat([head, body, tail]);
}

/** `png` with `extra` chunks inserted after IHDR. */
function withChunks(png: Buffer, ...extra: Buffer[]): Buffer {
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  return Buffer.concat([png.subarray(0, ihdrEnd), ...extra, png.subarray(ihdrEnd)]);
}

const UNICODE = {
  cjk: '一只猫坐在窗台上，水彩画',
  emoji: 'a cat 🐱 on a 🚲, 👍🏽',
  dashes: 'sharp focus — high detail – 8k',
  quotes: '“a cat” named ‘Tom’',
};

describe('addPngText', () => {
  for (const [name, text] of Object.entries(UNICODE)) {
    it(`writes ${name} text as an uncompressed UTF-8 iTXt chunk that round-trips`, async () => {
      const png = addPngText(await plainPng(), { parameters: text });
      const textChunks = chunks(png).filter((c) => ['tEXt', 'zTXt', 'iTXt'].includes(c.type));
      assert.equal(textChunks.length, 1);
      const c = textChunks[0]!;
      assert.equal(c.type, 'iTXt');
      assert.ok(c.crcOk, 'iTXt CRC');
      // keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8 text
      assert.deepEqual(c.data, Buffer.concat([Buffer.from('parameters\0\0\0\0\0', 'latin1'), Buffer.from(text, 'utf8')]));
      assert.deepEqual(readPngText(png), { parameters: text });
      // libvips/libspng (under sharp) still decode the image and read the chunk, which they drop on a bad CRC.
      assert.deepEqual(new Uint8Array(await sharp(png).raw().toBuffer()), PIXELS);
      assert.deepEqual((await sharp(png).metadata()).comments, [{ keyword: 'parameters', text }]);
    });
  }

  it('keeps Latin-1 text (accents, ×, ©, newlines) in a tEXt chunk, one byte per character', async () => {
    const text = 'café au lait, 2× zoom ©\nSteps: 20, Sampler: Euler a';
    const png = addPngText(await plainPng(), { parameters: text, Software: 'controlnet-xs' });
    const textChunks = chunks(png).filter((c) => ['tEXt', 'zTXt', 'iTXt'].includes(c.type));
    assert.deepEqual(
      textChunks.map((c) => c.type),
      ['tEXt', 'tEXt'],
    );
    assert.ok(textChunks.every((c) => c.crcOk));
    assert.deepEqual(textChunks[0]!.data, Buffer.from(`parameters\0${text}`, 'latin1'));
    assert.deepEqual(readPngText(png), { parameters: text, Software: 'controlnet-xs' });
    assert.deepEqual(new Uint8Array(await sharp(png).raw().toBuffer()), PIXELS);
  });

  it('puts the text chunks right after IHDR and leaves the rest of the file as it was', async () => {
    const plain = await plainPng();
    const png = addPngText(plain, { a: 'x', b: '猫' });
    assert.deepEqual(
      chunks(png).map((c) => c.type),
      ['IHDR', 'tEXt', 'iTXt', ...chunks(plain).map((c) => c.type).slice(1)],
    );
  });

  it('RGBImage.save({ pngText }) writes Unicode text readPngText reads back', async () => {
    const dir = tempDir('cnxs-png-text-');
    const path = join(dir, 'out.png');
    const parameters = `${UNICODE.cjk}\nNegative prompt: ${UNICODE.quotes}\nSteps: 20, Seed: 1`;
    await new RGBImage(WIDTH, HEIGHT, PIXELS).save(path, { pngText: { parameters } });
    assert.deepEqual(readPngText(await readFile(path)), { parameters });
  });

  it('refuses bad keywords, NUL in text and unpaired surrogates with a named InputError', async () => {
    const png = await plainPng();
    const bad: Record<string, string>[] = [
      { '': 'x' },
      { ['k'.repeat(80)]: 'x' },
      { 'a\0b': 'x' },
      { 'tab\tkey': 'x' },
      { ' lead': 'x' },
      { 'trail ': 'x' },
      { 'two  spaces': 'x' },
      { 'ключ': 'x' },
      { parameters: 'before\0after' },
      { parameters: 'half a pair \ud83d here' },
    ];
    for (const entries of bad) {
      assert.throws(() => checkPngText(entries), InputError, JSON.stringify(entries));
      assert.throws(() => addPngText(png, entries), InputError, JSON.stringify(entries));
    }
    assert.throws(
      () => checkPngText({ parameters: 'a\0b' }),
      (e: unknown) => e instanceof InputError && e.message.includes('"parameters"') && e.message.includes('NUL'),
    );
    // The limits themselves are fine.
    checkPngText({ ['k'.repeat(79)]: '', 'Ünïcödé kéy': 'ok', 'one space': '🐱' });
    assert.throws(() => addPngText(new Uint8Array(20), { a: 'b' }), InputError);
  });
});

describe('readPngText', () => {
  it('reads compressed iTXt and zTXt chunks (as Pillow writes with zip=True)', async () => {
    const png = withChunks(
      await plainPng(),
      rawChunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from('naïve', 'latin1'))])),
      // keyword NUL, flag 1, method 0, language tag NUL, UTF-8 translated keyword NUL, deflated UTF-8 text
      rawChunk('iTXt', Buffer.concat([Buffer.from('parameters\0\x01\0ja\0', 'latin1'), Buffer.from('パラメータ\0', 'utf8'), deflateSync(Buffer.from(UNICODE.cjk, 'utf8'))])),
      rawChunk('iTXt', Buffer.concat([Buffer.from('Title\0\0\0en\0', 'latin1'), Buffer.from('Titel\0', 'utf8'), Buffer.from(UNICODE.emoji, 'utf8')])),
    );
    assert.deepEqual(readPngText(png), { Comment: 'naïve', parameters: UNICODE.cjk, Title: UNICODE.emoji });
  });

  it('keeps a "__proto__" keyword as an own property and lets a later chunk with the same keyword win', async () => {
    const png = withChunks(await plainPng(), rawChunk('tEXt', Buffer.from('__proto__\0x', 'latin1')), rawChunk('tEXt', Buffer.from('k\0first', 'latin1')), rawChunk('tEXt', Buffer.from('k\0second', 'latin1')));
    const text = readPngText(png);
    assert.ok(Object.hasOwn(text, '__proto__'));
    assert.equal(text['__proto__'], 'x');
    assert.equal(text['k'], 'second');
  });

  it('fails with InputError on a non-PNG, a bad CRC, a cut-short chunk or undecompressable text', async () => {
    const png = addPngText(await plainPng(), { parameters: UNICODE.cjk });
    assert.throws(() => readPngText(Buffer.from('GIF89a not a png')), InputError);
    const flipped = Buffer.from(png);
    flipped[8 + 25 + 8 + 3]! ^= 1; // a byte inside the iTXt keyword, right after IHDR
    assert.throws(() => readPngText(flipped), (e: unknown) => e instanceof InputError && /CRC/.test(e.message));
    assert.throws(() => readPngText(png.subarray(0, 8 + 25 + 20)), (e: unknown) => e instanceof InputError && /cut short/.test(e.message));
    const garbage = withChunks(await plainPng(), rawChunk('zTXt', Buffer.from('k\0\0not zlib data', 'latin1')));
    assert.throws(() => readPngText(garbage), (e: unknown) => e instanceof InputError && e.message.includes('"k"'));
    assert.deepEqual(readPngText(await plainPng()), {});
  });
});
