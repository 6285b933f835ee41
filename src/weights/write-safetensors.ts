/**
 * Writing safetensors files: a header from (name, dtype, shape) entries, then each tensor's bytes,
 * streamed one tensor at a time so multi-GB checkpoints never sit in memory. Written to a temp file
 * and renamed, so a crash leaves nothing half-written.
 */
import { closeSync, openSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { numel } from '../tensor.js';
import type { SafetensorsDType } from './safetensors.js';

const BYTES: Partial<Record<SafetensorsDType, number>> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8 };

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** Produces the tensor's little-endian bytes when it is its turn to be written. */
  bytes: () => Uint8Array;
}

export function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const t of sorted) {
    const size = numel(t.shape) * (BYTES[t.dtype] ?? 1);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep the data section 8-byte aligned
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, json);
    for (const t of sorted) {
      const b = t.bytes();
      const want = numel(t.shape) * (BYTES[t.dtype] ?? 1);
      if (b.byteLength !== want) throw new Error(`${t.name}: got ${b.byteLength} bytes, expected ${want}`);
      writeSync(fd, b);
    }
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    unlinkSync(tmp);
    throw e;
  }
}
