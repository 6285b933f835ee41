/**
 * torch checkpoints (`.ckpt`, `.pt`, `.pth`, `.bin`) read without Python and without running them.
 *
 * Two layouts exist. The zip archive (torch.save since 1.6): `<stem>/data.pkl` is the pickle and
 * each storage is a stored entry `<stem>/data/<key>` of raw little-endian elements. The legacy file
 * (older torch, or `_use_new_zipfile_serialization=False`): five pickles in a row — torch's magic
 * number, the protocol version 1001, a sys-info dict, the object, and the list of storage keys —
 * then each storage as an int64 element count and its elements, in that list's order.
 *
 * In both, the pickle says for each tensor which storage it views, from which element, with which
 * size and strides (`_rebuild_tensor_v2`); the pickle is read by `pickle.ts` (an allow-list, never
 * executed). Every tensor becomes a `WeightRef` into the file itself — the stored region it reads,
 * and a strided view when it is not a plain contiguous window (shared storages are simply refs
 * with different offsets) — so weights reach onnxruntime as external data, never copied.
 *
 * What the loaders keep, like diffusers' `load_single_file_checkpoint`: the dict under `state_dict`
 * (repeatedly: `{'state_dict': {'state_dict': …}}`); non-tensor entries are listed in `others`.
 */
import { realpathSync } from 'node:fs';
import { TorchCheckpointError } from '../errors.js';
import {
  PickleTruncatedError,
  PyBytes,
  PyDict,
  PyList,
  PyTuple,
  TorchStorage,
  TorchStorageType,
  TorchTensor,
  describe,
  parsePickle,
  type PyValue,
} from './pickle.js';
import type { SafetensorsDType, TensorInfo } from './safetensors.js';
import type { WeightRef } from './source.js';
import { DTYPE_BYTES, classifyStrided, product, stridedExtent } from './view.js';
import { readFileRange, type WeightFile } from './weight-file.js';
import { FileReader, readZipDirectory, readZipEntry } from './zip.js';

/** One tensor of a torch checkpoint as its pickle describes it, with its storage located in the file. */
export interface TorchTensorInfo {
  readonly key: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** In elements, as torch's `stride()`. */
  readonly strides: readonly number[];
  /** In elements, as torch's `storage_offset()`. */
  readonly storageOffset: number;
  readonly storage: {
    /** The storage's key in the file (`data/<key>` in a zip archive). */
    readonly key: string;
    readonly numel: number;
    /** Absolute file offset of the storage's first element. */
    readonly fileOffset: number;
  };
}

export type TorchCheckpointFormat = 'zip' | 'legacy';

export class TorchCheckpoint implements WeightFile {
  constructor(
    readonly path: string,
    readonly realPath: string,
    readonly format: TorchCheckpointFormat,
    /** The tensors of the state dict, in file order. */
    readonly tensors: ReadonlyMap<string, TorchTensorInfo>,
    /** Each tensor as a weight: the stored region it reads and, if not a plain window, its view. */
    readonly refs: ReadonlyMap<string, WeightRef>,
    /**
     * Entries that are not weights, by their path in the file (`global_step`, or a tensor beside a
     * `state_dict` that diffusers would drop too): never bound to a model.
     */
    readonly others: ReadonlyMap<string, PyValue>,
  ) {}

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  /** The stored region of tensor `name` (a view's whole region; `readWeightBytes` applies the view). */
  readBytes(name: string): Uint8Array {
    const ref = this.refs.get(name);
    if (ref === undefined) throw new TorchCheckpointError(`${this.path}: no tensor named "${name}"`);
    return this.readRange(ref.info.fileOffset, ref.info.byteLength);
  }

  readRange(offset: number, length: number): Uint8Array {
    return readFileRange(this.path, this.realPath, offset, length);
  }
}

/**
 * A torch file's whole pickled object — whatever containers hold its tensors (a textual-inversion `.pt`
 * nests one under `string_to_param`; `torch.save(tensor)` pickles a bare tensor) — with each tensor
 * found in it turned into a ref into the file on request. Checkpoints of weights use TorchCheckpoint.
 */
export class TorchObject implements WeightFile {
  private readonly refs = new Map<string, WeightRef>();

  constructor(
    readonly path: string,
    readonly realPath: string,
    readonly format: TorchCheckpointFormat,
    /** The unpickled object (dicts, lists, tuples, strings, numbers, tensors). */
    readonly value: PyValue,
    private readonly locate: (s: TorchStorage, tensorKey: string) => StorageRegion,
  ) {}

  /** `tensor`, found in `value`, as a ref into the file (validated against its storage); `key` names it. */
  ref(tensor: TorchTensor, key: string): WeightRef {
    const region = this.locate(tensor.storage, key);
    const ref = weightRef(this, tensorInfo(key, tensor, region));
    this.refs.set(key, ref);
    return ref;
  }

  /** The stored region of a tensor made into a ref by `ref(…, name)`. */
  readBytes(name: string): Uint8Array {
    const ref = this.refs.get(name);
    if (ref === undefined) throw new TorchCheckpointError(`${this.path}: no tensor "${name}" was located`);
    return this.readRange(ref.info.fileOffset, ref.info.byteLength);
  }

  readRange(offset: number, length: number): Uint8Array {
    return readFileRange(this.path, this.realPath, offset, length);
  }
}

/** Open a torch checkpoint; only its pickle and directory are read (async twin of `loadTorchCheckpointSync`). */
export async function loadTorchCheckpoint(path: string): Promise<TorchCheckpoint> {
  return loadTorchCheckpointSync(path);
}

export function loadTorchCheckpointSync(path: string): TorchCheckpoint {
  const { realPath, format, value, locate } = parseTorchFile(path);
  return build(path, realPath, format, value, locate);
}

/** Open any torch file as its pickled object; only its pickle and directory are read (never run). */
export function loadTorchObjectSync(path: string): TorchObject {
  const { realPath, format, value, locate } = parseTorchFile(path);
  return new TorchObject(path, realPath, format, value, locate);
}

/** A torch file's pickle, parsed, and how its storages are found in the file. */
interface ParsedTorchFile {
  readonly realPath: string;
  readonly format: TorchCheckpointFormat;
  readonly value: PyValue;
  readonly locate: (s: TorchStorage, tensorKey: string) => StorageRegion;
}

function parseTorchFile(path: string): ParsedTorchFile {
  let realPath: string;
  let file: FileReader;
  try {
    realPath = realpathSync(path);
    file = new FileReader(path, realPath);
  } catch (e) {
    throw new TorchCheckpointError(`${path}: cannot open torch checkpoint (${(e as Error).message})`, { cause: e });
  }
  try {
    const head = file.read(0, Math.min(file.size, 512), 'the file header');
    if (head.length >= 4 && head.readUInt32LE(0) === 0x04034b50) return readZipCheckpoint(file, realPath);
    if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') {
      throw new TorchCheckpointError(`${path}: a tar checkpoint of torch < 0.4, which is not read here; re-save it with a current torch (or as safetensors)`);
    }
    if (head.length >= 2 && head[0] === 0x80) return readLegacyCheckpoint(file, realPath);
    throw new TorchCheckpointError(`${path}: not a torch checkpoint (neither a zip archive nor a pickle)`);
  } finally {
    file.close();
  }
}

// ---- zip archives ----------------------------------------------------------------------

function readZipCheckpoint(file: FileReader, realPath: string): ParsedTorchFile {
  const path = file.path;
  const entries = readZipDirectory(file);
  // torch names every record after the archive's folder; the pickle is <folder>/data.pkl.
  const pickles = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  const first = entries.keys().next().value;
  const pklName = pickles.length === 1 ? pickles[0] : pickles.find((n) => first !== undefined && n.startsWith(`${first.split('/')[0]}/`));
  if (pklName === undefined) {
    throw new TorchCheckpointError(`${path}: a zip archive without <folder>/data.pkl, so not a torch.save checkpoint (a TorchScript or other archive?)`);
  }
  const prefix = pklName.slice(0, -'data.pkl'.length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder !== undefined && Buffer.from(readZipEntry(file, byteorder)).toString('latin1') !== 'little') {
    throw new TorchCheckpointError(`${path}: storages are saved big-endian; only little-endian checkpoints are read`);
  }
  const pkl = readZipEntry(file, entries.get(pklName)!); // bounds: pklName is a key of entries
  const where = `${path} (${pklName})`;
  const { value } = parsePickle(pkl, 0, {
    where,
    persistentLoad: (pid) => {
      const t = pidTuple(pid, where, 5);
      const [, type, key, location, numel] = t;
      return new TorchStorage(text(key, where, 'storage key'), storageDtype(type, where), count(numel, where, 'storage size'), text(location, where, 'storage location'));
    },
  });

  const locate = (s: TorchStorage, tensorKey: string): StorageRegion => {
    const name = `${prefix}data/${s.key}`;
    const entry = entries.get(name);
    if (entry === undefined) throw new TorchCheckpointError(`${path}: tensor "${tensorKey}" uses storage "${s.key}", but the archive has no entry ${name}`);
    if (entry.method !== 0) {
      throw new TorchCheckpointError(`${path}: storage entry ${name} is compressed (method ${entry.method}); torch.save stores them uncompressed — re-save it`);
    }
    const bytes = s.numel * DTYPE_BYTES[s.dtype];
    if (entry.size !== bytes) {
      throw new TorchCheckpointError(`${path}: storage "${s.key}" is ${s.numel} × ${s.dtype} (${bytes} bytes) in the pickle, but its entry ${name} holds ${entry.size} bytes`);
    }
    return { fileOffset: entry.dataOffset, numel: s.numel };
  };
  return { realPath, format: 'zip', value, locate };
}

// ---- legacy files ----------------------------------------------------------------------

/** torch's legacy magic number and protocol version, the first two pickles of a legacy file. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;

function readLegacyCheckpoint(file: FileReader, realPath: string): ParsedTorchFile {
  // The pickles come first and are small next to the storages after them: read a growing prefix.
  for (let length = Math.min(file.size, 1 << 22); ; length = Math.min(file.size, length * 4)) {
    const bytes = file.read(0, length, 'the legacy pickles');
    try {
      return parseLegacy(file, realPath, bytes);
    } catch (e) {
      if (!(e instanceof PickleTruncatedError) || length === file.size) throw e;
    }
  }
}

function parseLegacy(file: FileReader, realPath: string, bytes: Uint8Array): ParsedTorchFile {
  const path = file.path;
  const magic = parsePickle(bytes, 0, { where: path });
  if (magic.value !== LEGACY_MAGIC) {
    throw new TorchCheckpointError(`${path}: a pickle, but not a torch checkpoint: it starts with ${describe(magic.value)}, not torch's magic number`);
  }
  const protocol = parsePickle(bytes, magic.end, { where: `${path} (pickle 2 of 5)` });
  if (protocol.value !== LEGACY_PROTOCOL) throw new TorchCheckpointError(`${path}: legacy protocol version ${describe(protocol.value)}, expected ${LEGACY_PROTOCOL}`);
  const sysInfo = parsePickle(bytes, protocol.end, { where: `${path} (pickle 3 of 5)` });
  if (sysInfo.value instanceof PyDict && sysInfo.value.get('little_endian') === false) {
    throw new TorchCheckpointError(`${path}: saved on a big-endian machine; only little-endian checkpoints are read`);
  }
  const where = `${path} (pickle 4 of 5)`;
  const roots = new Map<string, { dtype: SafetensorsDType; numel: number }>();
  const main = parsePickle(bytes, sysInfo.end, {
    where,
    persistentLoad: (pid) => {
      const [, type, rootKey, location, numel, viewMeta] = pidTuple(pid, where, 6);
      const dtype = storageDtype(type, where);
      const root = text(rootKey, where, 'storage key');
      const n = count(numel, where, 'storage size');
      const seen = roots.get(root);
      if (seen !== undefined && (seen.dtype !== dtype || seen.numel !== n)) {
        throw new TorchCheckpointError(`${where}: storage "${root}" is both ${seen.numel} × ${seen.dtype} and ${n} × ${dtype}`);
      }
      roots.set(root, { dtype, numel: n });
      const loc = text(location, where, 'storage location');
      if (viewMeta === null || viewMeta === undefined) return new TorchStorage(root, dtype, n, loc);
      // Storages of old torch could be views of a root storage: (view key, element offset, size).
      const v = viewMeta instanceof PyTuple ? viewMeta.items : [];
      if (v.length !== 3) throw new TorchCheckpointError(`${where}: storage view metadata is ${describe(viewMeta)}, not (key, offset, size)`);
      const offset = count(v[1]!, where, 'storage view offset');
      const size = count(v[2]!, where, 'storage view size');
      if (offset + size > n) throw new TorchCheckpointError(`${where}: storage view "${text(v[0]!, where, 'view key')}" (elements ${offset}..${offset + size}) runs past its root storage "${root}" of ${n}`);
      return new TorchStorage(text(v[0]!, where, 'view key'), dtype, size, loc, { root, offset });
    },
  });
  const keysPickle = parsePickle(bytes, main.end, { where: `${path} (pickle 5 of 5)` });
  const keyList = keysPickle.value;
  const keys = keyList instanceof PyList ? keyList.items : null;
  if (keys === null) throw new TorchCheckpointError(`${path}: the storage key list is ${describe(keyList)}`);

  // The raw storages follow, each an int64 element count then its elements.
  const located = new Map<string, number>();
  let at = keysPickle.end;
  for (const k of keys) {
    const key = text(k, path, 'storage key');
    const root = roots.get(key);
    if (root === undefined) throw new TorchCheckpointError(`${path}: storage "${key}" is listed but no tensor uses it, so its element type is unknown`);
    const head = file.read(at, 8, `the size of storage "${key}"`);
    const numel = head.readBigInt64LE(0);
    if (numel !== BigInt(root.numel)) throw new TorchCheckpointError(`${path}: storage "${key}" holds ${numel} elements but the pickle says ${root.numel}`);
    const bytes = root.numel * DTYPE_BYTES[root.dtype];
    if (at + 8 + bytes > file.size) {
      throw new TorchCheckpointError(`${path}: storage "${key}" (bytes ${at + 8}..${at + 8 + bytes}) runs past the end of the ${file.size}-byte file (truncated?)`);
    }
    located.set(key, at + 8);
    at += 8 + bytes;
  }
  const locate = (s: TorchStorage, tensorKey: string): StorageRegion => {
    const rootKey = s.viewOf?.root ?? s.key;
    const base = located.get(rootKey);
    if (base === undefined) throw new TorchCheckpointError(`${path}: tensor "${tensorKey}" uses storage "${rootKey}", which the file does not hold`);
    return { fileOffset: base + (s.viewOf?.offset ?? 0) * DTYPE_BYTES[s.dtype], numel: s.numel };
  };
  return { realPath, format: 'legacy', value: main.value, locate };
}

// ---- shared ----------------------------------------------------------------------------

interface StorageRegion {
  readonly fileOffset: number;
  readonly numel: number;
}

/** The state dict (under any `state_dict` keys), its tensors validated against their storages and made into refs. */
function build(
  path: string,
  realPath: string,
  format: TorchCheckpointFormat,
  top: PyValue,
  locate: (s: TorchStorage, tensorKey: string) => StorageRegion,
): TorchCheckpoint {
  const others = new Map<string, PyValue>();
  let dict = top;
  let at = '';
  // diffusers' load_single_file_checkpoint: while the dict has a "state_dict" key, descend into it.
  while (dict instanceof PyDict && dict.get('state_dict') !== undefined) {
    for (const [k, v] of dict.entries) if (k !== 'state_dict') others.set(`${at}${String(k)}`, v);
    dict = dict.get('state_dict')!;
    at += 'state_dict.';
  }
  if (!(dict instanceof PyDict)) throw new TorchCheckpointError(`${path}: holds ${describe(dict)}${at ? ` under ${at.slice(0, -1)}` : ''}, not a dict of tensors`);
  const tensors = new Map<string, TorchTensorInfo>();
  const refs = new Map<string, WeightRef>();
  const file = new TorchCheckpoint(path, realPath, format, tensors, refs, others);
  for (const [k, v] of dict.entries) {
    if (typeof k !== 'string' || !(v instanceof TorchTensor)) {
      others.set(`${at}${String(k)}`, v);
      continue;
    }
    const info = tensorInfo(k, v, locate(v.storage, k));
    tensors.set(k, info);
    refs.set(k, weightRef(file, info));
  }
  return file;
}

function tensorInfo(key: string, v: TorchTensor, region: StorageRegion): TorchTensorInfo {
  return {
    key,
    dtype: v.storage.dtype,
    shape: v.shape,
    strides: v.strides,
    storageOffset: v.storageOffset,
    storage: { key: v.storage.key, numel: region.numel, fileOffset: region.fileOffset },
  };
}

/** The stored region a tensor reads, and its view when that region is not the tensor in C order. */
function weightRef(file: WeightFile, t: TorchTensorInfo): WeightRef {
  const eb = DTYPE_BYTES[t.dtype];
  const extent = stridedExtent(t.shape, t.strides, t.storageOffset);
  if (extent > t.storage.numel) {
    throw new TorchCheckpointError(
      `${file.path}: tensor "${t.key}" [${t.shape.join(', ')}] (storage offset ${t.storageOffset}, stride [${t.strides.join(', ')}]) ` +
        `reads up to element ${extent} of storage "${t.storage.key}", which holds ${t.storage.numel}`,
    );
  }
  const region = (shape: readonly number[]): TensorInfo => ({
    name: t.key,
    dtype: t.dtype,
    shape,
    fileOffset: t.storage.fileOffset + t.storageOffset * eb,
    byteLength: product(shape) * eb,
  });
  if (classifyStrided(t.shape, t.strides, t.storageOffset).kind === 'contiguous') return { file, info: region(t.shape) };
  // Strides are never negative, so the first element read is the one at the storage offset.
  return { file, info: region([extent - t.storageOffset]), view: { kind: 'strided', shape: t.shape, strides: t.strides, offset: 0 } };
}

/** A storage persistent id: ('storage', torch.<T>Storage, key, location, numel[, view metadata]). */
function pidTuple(pid: PyValue, where: string, length: number): PyValue[] {
  const items = pid instanceof PyTuple ? [...pid.items] : null;
  const tag = items?.[0];
  const kind = tag instanceof PyBytes ? Buffer.from(tag.data).toString('latin1') : tag;
  if (items === null || kind !== 'storage' || items.length !== length) {
    throw new TorchCheckpointError(`${where}: persistent id ${describe(pid)} is not a ('storage', type, key, location, size${length === 6 ? ', view' : ''}) record`);
  }
  return items;
}

function storageDtype(type: PyValue | undefined, where: string): SafetensorsDType {
  if (!(type instanceof TorchStorageType)) throw new TorchCheckpointError(`${where}: storage type ${describe(type ?? null)} is not a torch storage class`);
  return type.dtype;
}

function text(v: PyValue | undefined, where: string, what: string): string {
  if (typeof v === 'string') return v;
  if (v instanceof PyBytes) return Buffer.from(v.data).toString('latin1'); // keys written by Python 2
  throw new TorchCheckpointError(`${where}: ${what} is ${describe(v ?? null)}, not a string`);
}

function count(v: PyValue | undefined, where: string, what: string): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  throw new TorchCheckpointError(`${where}: ${what} is ${describe(v ?? null)}, not a non-negative integer`);
}
