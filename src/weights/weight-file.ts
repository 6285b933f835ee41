/**
 * What a weight source needs from a checkpoint file, whatever its format: where it is on disk (the
 * real path is what onnxruntime's external data points at) and a way to read a few bytes for tests
 * and small tensors. Safetensors files and torch archives (`.ckpt`, `.pt`, `.bin`) both implement it.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { WeightLoadError } from '../errors.js';

export interface WeightFile {
  /** The path as given. */
  readonly path: string;
  /** The path with every symlink resolved (Hugging Face cache snapshots link into blobs/). */
  readonly realPath: string;
  /** The stored bytes of one tensor by its name in the file, read from disk now. */
  readBytes(name: string): Uint8Array;
  /** `length` bytes at absolute file offset `offset`, read from disk now. */
  readRange(offset: number, length: number): Uint8Array;
}

/**
 * `length` bytes at `offset` of the file at `realPath`; `path` names it in the error when the file
 * ends first (it was truncated after its header was read).
 */
export function readFileRange(path: string, realPath: string, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  const fd = openSync(realPath, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw new WeightLoadError(`${path}: unexpected end of file reading bytes ${offset}..${offset + length}`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}
