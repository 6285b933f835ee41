/**
 * A safetensors reader that validates the whole header before anything trusts it.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section. Each entry
 * is `{ dtype, shape, data_offsets: [begin, end] }` with offsets relative to the data section.
 * Only the header is read here; tensor bytes stay on disk until a caller asks (tests, small
 * tensors) or onnxruntime maps them as external data.
 */
import { closeSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { ControlNetXSError, SafetensorsError } from '../errors.js';
import { readFileRange as readPlatformRange, statFile } from '../platform/files.js';
import { Tensor, numel } from '../tensor.js';
import { readFileRange, type WeightFile } from './weight-file.js';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Headers larger than this are refused (the format's own reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Absolute byte offset of the first element in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export class SafetensorsFile implements WeightFile {
  /** The path as given. */
  readonly path: string;
  /** The path with every symlink resolved (Hugging Face cache snapshots link into blobs/). */
  readonly realPath: string;
  readonly dataOffset: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;

  constructor(init: {
    path: string;
    realPath: string;
    dataOffset: number;
    metadata: Record<string, string>;
    tensors: Map<string, TensorInfo>;
  }) {
    this.path = init.path;
    this.realPath = init.realPath;
    this.dataOffset = init.dataOffset;
    this.metadata = init.metadata;
    this.tensors = init.tensors;
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return t;
  }

  /** Raw bytes of one tensor, read from disk now. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const buf = new Uint8Array(t.byteLength);
    const fd = openSync(this.realPath, 'r');
    try {
      let done = 0;
      while (done < t.byteLength) {
        const n = readSync(fd, buf, done, t.byteLength - done, t.fileOffset + done);
        if (n === 0) throw new SafetensorsError(`${this.path}: unexpected end of file reading "${name}"`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    return buf;
  }

  readRange(offset: number, length: number): Uint8Array {
    return readFileRange(this.path, this.realPath, offset, length);
  }

  /**
   * One tensor as a JS tensor: F32/F64/I64 keep their type, F16/BF16 are widened to float32.
   * Meant for small tensors (reference data, tests); model weights never come through here.
   */
  read(name: string): Tensor {
    const t = this.info(name);
    const bytes = this.readBytes(name);
    const n = numel(t.shape);
    const ab = bytes.buffer;
    switch (t.dtype) {
      case 'F32':
        return new Tensor('float32', new Float32Array(ab, 0, n), t.shape);
      case 'F64':
        return new Tensor('float64', new Float64Array(ab, 0, n), t.shape);
      case 'I64':
        return new Tensor('int64', new BigInt64Array(ab, 0, n), t.shape);
      case 'I32':
        return new Tensor('int32', new Int32Array(ab, 0, n), t.shape);
      case 'F16':
        return new Tensor('float32', halfToFloat32(new Uint16Array(ab, 0, n)), t.shape);
      case 'BF16':
        return new Tensor('float32', bfloat16ToFloat32(new Uint16Array(ab, 0, n)), t.shape);
      default:
        return new Tensor('uint8', new Uint8Array(ab, 0, n), t.shape);
    }
  }

  /** Like `read`, but insists on a float result. */
  readFloat32(name: string): Tensor<'float32'> {
    const t = this.read(name);
    if (t.dtype === 'float32') return t as Tensor<'float32'>;
    if (t.dtype === 'float64') return new Tensor('float32', Float32Array.from(t.data as Float64Array), t.dims);
    throw new SafetensorsError(`${this.path}: tensor "${name}" is ${this.info(name).dtype}, not a float`);
  }
}

/**
 * Read and validate a safetensors header. The file's data stays where it is (on disk, or in the
 * browser's Cache Storage); only the header is read (kilobytes), through the platform's file seam.
 */
export async function loadSafetensors(path: string): Promise<SafetensorsFile> {
  let real: string;
  let size: number;
  try {
    ({ realPath: real, size } = await statFile(path));
  } catch (e) {
    if (e instanceof ControlNetXSError) throw e;
    throw new SafetensorsError(`${path}: cannot open safetensors file (${(e as Error).message})`, { cause: e });
  }
  const head = size < 8 ? new Uint8Array(0) : await readPlatformRange(real, 0, 8);
  if (head.length !== 8) throw new SafetensorsError(`${path}: file is ${size} bytes, too short for a safetensors header`);
  const headerLen = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  checkHeaderLength(path, headerLen, size);
  const n = Number(headerLen);
  const hbuf = await readPlatformRange(real, 8, n);
  if (hbuf.length !== n) throw new SafetensorsError(`${path}: header truncated`);
  return parseHeader(path, real, new TextDecoder().decode(hbuf), 8 + n, size);
}

function checkHeaderLength(path: string, headerLen: bigint, size: number): void {
  if (headerLen > BigInt(size - 8) || headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`${path}: header length ${headerLen} does not fit in a ${size}-byte file`);
  }
}

/** Synchronous twin of `loadSafetensors`, for tests and tools. */
export function loadSafetensorsSync(path: string): SafetensorsFile {
  let real: string;
  let fd: number;
  try {
    real = realpathSync(path);
    fd = openSync(real, 'r');
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot open safetensors file (${(e as Error).message})`, { cause: e });
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || readSync(fd, head, 0, 8, 0) !== 8) {
      throw new SafetensorsError(`${path}: file is ${size} bytes, too short for a safetensors header`);
    }
    const headerLen = head.readBigUInt64LE(0);
    checkHeaderLength(path, headerLen, size);
    const n = Number(headerLen);
    const hbuf = Buffer.alloc(n);
    if (readSync(fd, hbuf, 0, n, 8) !== n) throw new SafetensorsError(`${path}: header truncated`);
    return parseHeader(path, real, hbuf.toString('utf8'), 8 + n, size);
  } finally {
    closeSync(fd);
  }
}

function parseHeader(path: string, realPath: string, text: string, dataOffset: number, fileSize: number): SafetensorsFile {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`${path}: header is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${path}: header is not a JSON object`);
  }
  const dataSize = fileSize - dataOffset;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const where = `${path}: tensor "${name}"`;
    if (typeof raw !== 'object' || raw === null) throw new SafetensorsError(`${where}: entry is not an object`);
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e.dtype !== 'string' || !(e.dtype in DTYPE_BYTES)) {
      throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(e.dtype)}`);
    }
    const dtype = e.dtype as SafetensorsDType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${where}: bad shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(`${where}: bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes; file truncated?)`,
      );
    }
    const expected = numel(shape) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `${where}: holds ${end - begin} bytes but ${dtype}[${shape.join(', ')}] needs ${expected}`,
      );
    }
    spans.push({ name, begin, end });
    tensors.set(name, { name, dtype, shape, fileOffset: dataOffset + begin, byteLength: end - begin });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1]!;
    const cur = spans[i]!;
    if (cur.begin < prev.end) {
      throw new SafetensorsError(`${path}: tensors "${prev.name}" and "${cur.name}" overlap in the data section`);
    }
  }
  return new SafetensorsFile({ path, realPath, dataOffset, metadata, tensors });
}

/** IEEE half → float32. */
export function halfToFloat32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const x = h[i]!;
    const s = x & 0x8000 ? -1 : 1;
    const e = (x >> 10) & 0x1f;
    const m = x & 0x3ff;
    if (e === 0) out[i] = s * m * 2 ** -24;
    else if (e === 31) out[i] = m ? NaN : s * Infinity;
    else out[i] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** bfloat16 → float32: the high half of a float32. */
export function bfloat16ToFloat32(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i]! << 16;
  return new Float32Array(u.buffer);
}
