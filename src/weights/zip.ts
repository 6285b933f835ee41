/**
 * The zip directory of a torch archive: where each entry's bytes are in the file. torch.save writes
 * every entry STORED (uncompressed) and pads each local header with an extra field so the data starts
 * 64-byte aligned — the central directory has no such field, so an entry's data offset is read from
 * its own local header. Archives over 4 GiB (full Stable Diffusion checkpoints) use zip64 records.
 * Nothing is decompressed here but, if asked, one small entry (the pickle).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { TorchCheckpointError } from '../errors.js';

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  /** Absolute file offset of the entry's (possibly compressed) bytes. */
  readonly dataOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
/** The end record is 22 bytes plus a comment of at most 65535. */
const MAX_EOCD_SEARCH = 22 + 0xffff;

/** An open file read at explicit offsets; every short read is a named error. */
export class FileReader {
  private readonly fd: number;
  readonly size: number;

  constructor(readonly path: string, realPath: string) {
    this.fd = openSync(realPath, 'r');
    this.size = fstatSync(this.fd).size;
  }

  read(offset: number, length: number, what: string): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new TorchCheckpointError(`${this.path}: ${what} (bytes ${offset}..${offset + length}) runs past the end of the ${this.size}-byte file (truncated?)`);
    }
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new TorchCheckpointError(`${this.path}: unexpected end of file reading ${what}`);
      done += n;
    }
    return buf;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Read the central directory: entries by name. */
export function readZipDirectory(file: FileReader): Map<string, ZipEntry> {
  const where = file.path;
  const tailLength = Math.min(file.size, MAX_EOCD_SEARCH);
  const tail = file.read(file.size - tailLength, tailLength, 'the zip end record');
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new TorchCheckpointError(`${where}: no zip end-of-central-directory record (a truncated or damaged archive)`);
  const eocdAt = file.size - tailLength + eocd;
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  // zip64: the locator sits just before the end record and points at the zip64 end record.
  if (eocdAt >= 20) {
    const loc = file.read(eocdAt - 20, 20, 'the zip64 locator');
    if (loc.readUInt32LE(0) === ZIP64_LOCATOR) {
      const at = safe(loc.readBigUInt64LE(8), where, 'zip64 end record offset');
      const rec = file.read(at, 56, 'the zip64 end record');
      if (rec.readUInt32LE(0) !== ZIP64_EOCD) throw new TorchCheckpointError(`${where}: the zip64 locator points at no zip64 end record`);
      count = safe(rec.readBigUInt64LE(32), where, 'entry count');
      cdSize = safe(rec.readBigUInt64LE(40), where, 'central directory size');
      cdOffset = safe(rec.readBigUInt64LE(48), where, 'central directory offset');
    }
  }
  const cd = file.read(cdOffset, cdSize, 'the zip central directory');
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) {
      throw new TorchCheckpointError(`${where}: zip central directory entry ${n} of ${count} is damaged`);
    }
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let headerOffset = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw new TorchCheckpointError(`${where}: zip central directory entry ${n} runs past the directory`);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field (id 1): the 64-bit values of the fields saturated at 0xFFFFFFFF, in this order.
    const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
    for (let e = 0; e + 4 <= extra.length; ) {
      const id = extra.readUInt16LE(e);
      const len = extra.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len || q + 8 > extra.length) throw new TorchCheckpointError(`${where}: "${name}": zip64 extra field too short`);
          const v = safe(extra.readBigUInt64LE(q), where, `"${name}" zip64 field`);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (headerOffset === 0xffffffff) headerOffset = next();
      }
      e += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    const local = file.read(headerOffset, 30, `the local header of "${name}"`);
    if (local.readUInt32LE(0) !== LOCAL) throw new TorchCheckpointError(`${where}: "${name}": no local file header at byte ${headerOffset}`);
    const dataOffset = headerOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    if (dataOffset + compressedSize > file.size) {
      throw new TorchCheckpointError(
        `${where}: "${name}" (bytes ${dataOffset}..${dataOffset + compressedSize}) runs past the end of the ${file.size}-byte file (truncated?)`,
      );
    }
    entries.set(name, { name, method, compressedSize, size, dataOffset });
  }
  return entries;
}

/** An entry's bytes, inflated when deflated (for the pickle; storages must be stored). */
export function readZipEntry(file: FileReader, entry: ZipEntry): Uint8Array {
  const raw = file.read(entry.dataOffset, entry.compressedSize, `"${entry.name}"`);
  if (entry.method === 0) return raw;
  if (entry.method !== 8) throw new TorchCheckpointError(`${file.path}: "${entry.name}" uses zip compression method ${entry.method} (only stored and deflated are read)`);
  try {
    return inflateRawSync(raw, { maxOutputLength: entry.size });
  } catch (e) {
    throw new TorchCheckpointError(`${file.path}: "${entry.name}" does not inflate (${(e as Error).message})`, { cause: e });
  }
}

function safe(v: bigint, where: string, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TorchCheckpointError(`${where}: ${what} ${v} is out of range`);
  return Number(v);
}
