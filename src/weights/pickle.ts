/**
 * A pickle reader that only understands tensor data, and never executes anything.
 *
 * Python's pickle format is a small stack machine whose GLOBAL / STACK_GLOBAL opcodes import any
 * callable by name and whose REDUCE / BUILD / NEWOBJ opcodes call it: loading an untrusted pickle
 * with Python runs whatever the file names (`posix.system`, `builtins.eval`). This reader parses
 * the opcodes itself and models only what torch's `weights_only=True` loading allows for a state
 * dict: plain containers (tuple, list, dict, set), `collections.OrderedDict`, tensor rebuilds
 * (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, `_rebuild_parameter_with_state`) and
 * `torch.<T>Storage` types as the storage type of a persistent id. Any other name is an allow-list
 * miss, refused with a `SecurityError` when its opcode is read — before the call it would feed —
 * and so are INST / OBJ / NEWOBJ / NEWOBJ_EX / EXT*, which build objects of a class. An allow-list
 * and not a deny-list: `os.system` pickles as `posix system` on Linux.
 *
 * Protocols 0–5 are read (torch writes protocol 2; `pickle_protocol=4/5` adds FRAME, MEMOIZE,
 * STACK_GLOBAL and the 8-byte lengths). Out-of-band buffers (protocol 5 NEXT_BUFFER) are refused:
 * a file cannot carry them.
 */
import { SecurityError, TorchCheckpointError } from '../errors.js';
import type { SafetensorsDType } from './safetensors.js';

/** A value the reader can build. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyBytes
  | PyTuple
  | PyList
  | PyDict
  | PySet
  | PyCallable
  | TorchStorageType
  | TorchStorage
  | TorchTensor;

export class PyBytes {
  constructor(readonly data: Uint8Array) {}
}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PyList {
  constructor(readonly items: PyValue[] = []) {}
}

/** A dict or an OrderedDict, in insertion order; attributes set by BUILD (a state dict's `_metadata`) are kept apart. */
export class PyDict {
  readonly entries: [PyValue, PyValue][] = [];
  attributes: PyValue = null;
  /** Where each string key sits in `entries` (state dicts hold thousands of them). */
  private readonly byString = new Map<string, number>();
  constructor(readonly ordered: boolean) {}

  set(key: PyValue, value: PyValue): void {
    // Python replaces the value of an equal key in place.
    const at = typeof key === 'string' ? this.byString.get(key) ?? -1 : this.entries.findIndex(([k]) => sameKey(k, key));
    if (at >= 0) {
      this.entries[at] = [key, value];
      return;
    }
    if (typeof key === 'string') this.byString.set(key, this.entries.length);
    this.entries.push([key, value]);
  }

  get(key: string): PyValue | undefined {
    const at = this.byString.get(key);
    return at === undefined ? undefined : this.entries[at]?.[1];
  }
}

export class PySet {
  constructor(readonly items: PyValue[] = [], readonly frozen = false) {}
}

/** The callables on the allow-list; calling one builds a value, it never runs code. */
export class PyCallable {
  constructor(readonly name: 'collections.OrderedDict' | 'torch._utils._rebuild_tensor_v2' | 'torch._utils._rebuild_parameter' | 'torch._utils._rebuild_parameter_with_state') {}
}

/** `torch.FloatStorage` and friends: only meaningful as the storage type inside a persistent id. */
export class TorchStorageType {
  constructor(
    readonly name: string,
    readonly dtype: SafetensorsDType,
  ) {}
}

/** What a torch file's persistent id stands for: a storage of `numel` elements of `dtype` under `key`. */
export class TorchStorage {
  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDType,
    readonly numel: number,
    readonly location: string,
    /** Legacy files only: this storage is elements [offset, offset + numel) of storage `root`. */
    readonly viewOf?: { readonly root: string; readonly offset: number },
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided window of a storage, in elements. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly strides: readonly number[],
  ) {}
}

/** torch's storage classes by their names in `torch` (the CPU ones; torch saves CUDA storages under these too). */
export const TORCH_STORAGE_TYPES: Readonly<Record<string, SafetensorsDType>> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

const ALLOWED_CALLABLES = new Set<string>([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
]);

export const SAFETENSORS_ADVICE =
  'Safetensors files cannot carry code: prefer them (diffusers and the Hub publish most models as .safetensors).';

/** The pickle ran past the bytes given: the file is truncated, or a caller reading a prefix needs more of it. */
export class PickleTruncatedError extends TorchCheckpointError {}

export interface PickleOptions {
  /** Names the pickle in messages: a file, or a file and an archive entry. */
  readonly where: string;
  /** Turns a persistent id (BINPERSID / PERSID) into a value; without it, persistent ids are an error. */
  readonly persistentLoad?: (pid: PyValue, at: number) => PyValue;
}

export interface PickleResult {
  readonly value: PyValue;
  /** The offset just past the STOP opcode (legacy torch files hold several pickles in a row). */
  readonly end: number;
}

/** Parse one pickle starting at `start` of `bytes`. */
export function parsePickle(bytes: Uint8Array, start: number, options: PickleOptions): PickleResult {
  return new PickleMachine(bytes, start, options).run();
}

class PickleMachine {
  private pos: number;
  private stack: PyValue[] = [];
  private readonly marks: PyValue[][] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly view: DataView;
  private opAt = 0;

  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    private readonly options: PickleOptions,
  ) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private fail(what: string): never {
    throw new TorchCheckpointError(`${this.options.where}: pickle byte ${this.opAt}: ${what}`);
  }

  private refuse(name: string, how: string): never {
    throw new SecurityError(
      `${this.options.where}: refused ${how} ${name} at pickle byte ${this.opAt}: not on the allow-list of tensor data ` +
        `(tensor rebuilds, storages, OrderedDict, plain containers); nothing was executed. ${SAFETENSORS_ADVICE}`,
      name,
    );
  }

  run(): PickleResult {
    for (;;) {
      this.opAt = this.pos;
      const op = this.u8();
      if (op === 0x2e) {
        // STOP
        if (this.stack.length !== 1 || this.marks.length !== 0) this.fail(`STOP with ${this.stack.length} values on the stack`);
        return { value: this.stack[0]!, end: this.pos };
      }
      this.step(op);
    }
  }

  // ---- reading -------------------------------------------------------------------------

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.bytes.length) {
      throw new PickleTruncatedError(`${this.options.where}: pickle byte ${this.opAt}: needs ${n} more bytes but the data ends at byte ${this.bytes.length} (truncated?)`);
    }
  }

  private u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!; // bounds: checked by need
  }

  private uint(n: 1 | 2 | 4 | 8): number {
    this.need(n);
    const p = this.pos;
    this.pos += n;
    if (n === 1) return this.view.getUint8(p);
    if (n === 2) return this.view.getUint16(p, true);
    if (n === 4) return this.view.getUint32(p, true);
    const v = this.view.getBigUint64(p, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`length ${v} is too large`);
    return Number(v);
  }

  private take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleTruncatedError(`${this.options.where}: pickle byte ${this.opAt}: a text argument has no end of line (truncated?)`);
    const s = Buffer.from(this.bytes.subarray(this.pos, end)).toString('latin1');
    this.pos = end + 1;
    return s;
  }

  private utf8(n: number): string {
    return Buffer.from(this.take(n)).toString('utf8');
  }

  // ---- stack ---------------------------------------------------------------------------

  private push(v: PyValue): void {
    this.stack.push(v);
  }

  private pop(): PyValue {
    if (this.stack.length === 0) this.fail('pops an empty stack');
    return this.stack.pop()!;
  }

  private top(): PyValue {
    if (this.stack.length === 0) this.fail('reads an empty stack');
    return this.stack[this.stack.length - 1]!;
  }

  /** The values pushed since the last MARK, which is removed. */
  private popMark(): PyValue[] {
    const items = this.stack;
    const outer = this.marks.pop();
    if (outer === undefined) this.fail('needs a MARK that is not there');
    this.stack = outer;
    return items;
  }

  private memoGet(i: number): PyValue {
    if (!this.memo.has(i)) this.fail(`memo entry ${i} was never stored`);
    return this.memo.get(i)!;
  }

  // ---- opcodes -------------------------------------------------------------------------

  private step(op: number): void {
    switch (op) {
      // framing and protocol
      case 0x80: {
        const proto = this.u8();
        if (proto > 5) this.fail(`unsupported pickle protocol ${proto}`);
        return;
      }
      case 0x95: // FRAME: a length hint only
        this.uint(8);
        return;
      // stack and marks
      case 0x28: // MARK
        this.marks.push(this.stack);
        this.stack = [];
        return;
      case 0x30: // POP
        if (this.stack.length > 0) this.stack.pop();
        else this.popMark(); // POP of a bare mark removes the mark, as Python does
        return;
      case 0x31: // POP_MARK
        this.popMark();
        return;
      case 0x32: // DUP
        this.push(this.top());
        return;
      // scalars
      case 0x4e: // NONE
        return this.push(null);
      case 0x88: // NEWTRUE
        return this.push(true);
      case 0x89: // NEWFALSE
        return this.push(false);
      case 0x4b: // BININT1
        return this.push(this.uint(1));
      case 0x4d: // BININT2
        return this.push(this.uint(2));
      case 0x4a: {
        // BININT
        this.need(4);
        const v = this.view.getInt32(this.pos, true);
        this.pos += 4;
        return this.push(v);
      }
      case 0x8a: // LONG1
        return this.push(this.long(this.uint(1)));
      case 0x8b: {
        // LONG4
        this.need(4);
        const n = this.view.getInt32(this.pos, true);
        this.pos += 4;
        if (n < 0) this.fail('LONG4 with a negative length');
        return this.push(this.long(n));
      }
      case 0x47: {
        // BINFLOAT: big-endian double
        this.need(8);
        const v = this.view.getFloat64(this.pos, false);
        this.pos += 8;
        return this.push(v);
      }
      case 0x49: {
        // INT (text); protocol 0 writes booleans as I01 / I00
        const s = this.line();
        if (s === '01') return this.push(true);
        if (s === '00') return this.push(false);
        return this.push(this.textInt(s));
      }
      case 0x4c: // LONG (text, trailing L)
        return this.push(this.textInt(this.line().replace(/L$/, '')));
      case 0x46: {
        // FLOAT (text)
        const s = this.line();
        const v = Number(s);
        if (Number.isNaN(v) && !/^[-+]?nan$/i.test(s)) this.fail(`FLOAT ${JSON.stringify(s)} is not a number`);
        return this.push(v);
      }
      // strings and bytes
      case 0x58: // BINUNICODE
        return this.push(this.utf8(this.uint(4)));
      case 0x8c: // SHORT_BINUNICODE
        return this.push(this.utf8(this.uint(1)));
      case 0x8d: // BINUNICODE8
        return this.push(this.utf8(this.uint(8)));
      case 0x56: // UNICODE (text, raw-unicode-escape)
        return this.push(rawUnicodeUnescape(this.line()));
      case 0x54: // BINSTRING: Python 2 str, read as text (torch's storage keys in old files)
        return this.push(Buffer.from(this.take(this.uint(4))).toString('latin1'));
      case 0x55: // SHORT_BINSTRING
        return this.push(Buffer.from(this.take(this.uint(1))).toString('latin1'));
      case 0x53: // STRING (text, quoted)
        return this.push(this.quoted(this.line()));
      case 0x42: // BINBYTES
        return this.push(new PyBytes(this.take(this.uint(4)).slice()));
      case 0x43: // SHORT_BINBYTES
        return this.push(new PyBytes(this.take(this.uint(1)).slice()));
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        return this.push(new PyBytes(this.take(this.uint(8)).slice()));
      // containers
      case 0x29: // EMPTY_TUPLE
        return this.push(new PyTuple([]));
      case 0x85: // TUPLE1
        return this.push(new PyTuple([this.pop()]));
      case 0x86: {
        // TUPLE2
        const b = this.pop();
        return this.push(new PyTuple([this.pop(), b]));
      }
      case 0x87: {
        // TUPLE3
        const c = this.pop();
        const b = this.pop();
        return this.push(new PyTuple([this.pop(), b, c]));
      }
      case 0x74: // TUPLE
        return this.push(new PyTuple(this.popMark()));
      case 0x5d: // EMPTY_LIST
        return this.push(new PyList());
      case 0x6c: // LIST
        return this.push(new PyList(this.popMark()));
      case 0x61: {
        // APPEND
        const v = this.pop();
        this.list(this.top()).items.push(v);
        return;
      }
      case 0x65: {
        // APPENDS
        const items = this.popMark();
        this.list(this.top()).items.push(...items);
        return;
      }
      case 0x7d: // EMPTY_DICT
        return this.push(new PyDict(false));
      case 0x64: {
        // DICT
        const items = this.popMark();
        const d = new PyDict(false);
        this.setItems(d, items);
        return this.push(d);
      }
      case 0x73: {
        // SETITEM
        const v = this.pop();
        const k = this.pop();
        this.dict(this.top()).set(k, v);
        return;
      }
      case 0x75: {
        // SETITEMS
        const items = this.popMark();
        this.setItems(this.dict(this.top()), items);
        return;
      }
      case 0x8f: // EMPTY_SET
        return this.push(new PySet());
      case 0x90: {
        // ADDITEMS
        const items = this.popMark();
        const s = this.top();
        if (!(s instanceof PySet) || s.frozen) this.fail('ADDITEMS on something that is not a set');
        s.items.push(...items);
        return;
      }
      case 0x91: // FROZENSET
        return this.push(new PySet(this.popMark(), true));
      // memo
      case 0x70: // PUT (text)
        this.memo.set(this.textIndex(this.line()), this.top());
        return;
      case 0x71: // BINPUT
        this.memo.set(this.uint(1), this.top());
        return;
      case 0x72: // LONG_BINPUT
        this.memo.set(this.uint(4), this.top());
        return;
      case 0x94: // MEMOIZE
        this.memo.set(this.memo.size, this.top());
        return;
      case 0x67: // GET (text)
        return this.push(this.memoGet(this.textIndex(this.line())));
      case 0x68: // BINGET
        return this.push(this.memoGet(this.uint(1)));
      case 0x6a: // LONG_BINGET
        return this.push(this.memoGet(this.uint(4)));
      // names, calls, persistent ids
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = this.line();
        const name = this.line();
        return this.push(this.global(module, name, 'GLOBAL'));
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL with a module or name that is not a string');
        return this.push(this.global(module, name, 'GLOBAL'));
      }
      case 0x52: {
        // REDUCE
        const args = this.pop();
        const fn = this.pop();
        return this.push(this.call(fn, args));
      }
      case 0x62: {
        // BUILD
        const state = this.pop();
        const obj = this.top();
        if (!(obj instanceof PyDict) || !obj.ordered) {
          this.fail(`BUILD on ${describe(obj)}: only an OrderedDict's attributes (a state dict's _metadata) are accepted`);
        }
        obj.attributes = state;
        return;
      }
      case 0x51: {
        // BINPERSID
        const pid = this.pop();
        return this.push(this.persistent(pid));
      }
      case 0x50: // PERSID (text)
        return this.push(this.persistent(this.line()));
      case 0x69: {
        // INST "module\nname\n": builds an instance of a class, never tensor data
        const module = this.line();
        const name = this.line();
        return this.refuse(`${module}.${name}`, 'INST of');
      }
      case 0x6f: // OBJ: MARK cls args… OBJ
        return this.refuse(describe(this.stack[0] ?? null), 'OBJ of');
      case 0x81: // NEWOBJ: cls args NEWOBJ
        return this.refuse(describe(this.stack[this.stack.length - 2] ?? null), 'NEWOBJ of');
      case 0x92: // NEWOBJ_EX: cls args kwargs NEWOBJ_EX
        return this.refuse(describe(this.stack[this.stack.length - 3] ?? null), 'NEWOBJ_EX of');
      case 0x82: // EXT1: an object from the copyreg extension registry
        return this.refuse(`copyreg extension ${this.uint(1)}`, 'EXT1');
      case 0x83:
        return this.refuse(`copyreg extension ${this.uint(2)}`, 'EXT2');
      case 0x84:
        return this.refuse(`copyreg extension ${this.uint(4)}`, 'EXT4');
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        return this.fail(`out-of-band buffer opcode 0x${op.toString(16)}: a checkpoint file cannot provide out-of-band data`);
      default:
        this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}: not a pickle, or a newer protocol than 5`);
    }
  }

  private long(n: number): number | bigint {
    const b = this.take(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!); // bounds: i in [0, n)
    if (b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n); // two's complement
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  }

  private textInt(s: string): number | bigint {
    if (!/^[-+]?\d+$/.test(s.trim())) this.fail(`${JSON.stringify(s)} is not an integer`);
    const v = BigInt(s.trim());
    return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  }

  private textIndex(s: string): number {
    const v = this.textInt(s);
    if (typeof v !== 'number' || v < 0) this.fail(`memo index ${s} is out of range`);
    return v;
  }

  private quoted(s: string): string {
    const q = s[0];
    if ((q !== "'" && q !== '"') || s[s.length - 1] !== q || s.length < 2) this.fail(`STRING argument ${JSON.stringify(s)} is not quoted`);
    return pythonUnescape(s.slice(1, -1));
  }

  private list(v: PyValue): PyList {
    if (!(v instanceof PyList)) this.fail(`APPEND to ${describe(v)}, not a list`);
    return v;
  }

  private dict(v: PyValue): PyDict {
    if (!(v instanceof PyDict)) this.fail(`SETITEM on ${describe(v)}, not a dict`);
    return v;
  }

  private setItems(d: PyDict, items: PyValue[]): void {
    if (items.length % 2 !== 0) this.fail('SETITEMS with an odd number of values');
    for (let i = 0; i < items.length; i += 2) d.set(items[i]!, items[i + 1]!); // bounds: i + 1 < length
  }

  /** GLOBAL / STACK_GLOBAL: the allow-list, checked when the name is read. */
  private global(module: string, name: string, how: string): PyValue {
    const full = `${module}.${name}`;
    if (ALLOWED_CALLABLES.has(full)) return new PyCallable(full as PyCallable['name']);
    const dtype = module === 'torch' ? TORCH_STORAGE_TYPES[name] : undefined;
    if (dtype !== undefined) return new TorchStorageType(name, dtype);
    this.refuse(full, how);
  }

  /** REDUCE: only allow-listed callables, each modelled here. */
  private call(fn: PyValue, args: PyValue): PyValue {
    if (fn instanceof TorchStorageType) this.refuse(`torch.${fn.name}`, 'a call to');
    if (!(fn instanceof PyCallable)) this.fail(`REDUCE calls ${describe(fn)}, which is not a callable`);
    if (!(args instanceof PyTuple)) this.fail(`REDUCE of ${fn.name} with ${describe(args)} as arguments`);
    const a = args.items;
    switch (fn.name) {
      case 'collections.OrderedDict': {
        const d = new PyDict(true);
        if (a.length === 0) return d;
        const pairs = a[0];
        if (a.length !== 1 || !(pairs instanceof PyList || pairs instanceof PyTuple)) this.fail('OrderedDict(...) with arguments other than a list of pairs');
        for (const p of pairs.items) {
          const kv = p instanceof PyTuple || p instanceof PyList ? p.items : [];
          if (kv.length !== 2) this.fail('OrderedDict(...) with an item that is not a pair');
          d.set(kv[0]!, kv[1]!);
        }
        return d;
      }
      case 'torch._utils._rebuild_tensor_v2':
        return this.rebuildTensor(a);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        const data = a[0];
        if (!(data instanceof TorchTensor) || a.length < 3) this.fail(`${fn.name} without a tensor as its first argument`);
        return data;
      }
    }
  }

  /** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`. */
  private rebuildTensor(a: readonly PyValue[]): TorchTensor {
    const what = '_rebuild_tensor_v2';
    if (a.length !== 6 && a.length !== 7) this.fail(`${what} with ${a.length} arguments (6 or 7 expected)`);
    const [storage, offset, size, stride, requiresGrad, hooks] = a;
    if (!(storage instanceof TorchStorage)) this.fail(`${what}: first argument is ${describe(storage ?? null)}, not a storage`);
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) this.fail(`${what}: storage offset ${String(offset)} is not a non-negative integer`);
    const shape = this.ints(size ?? null, `${what}: size`);
    const strides = this.ints(stride ?? null, `${what}: stride`);
    if (shape.length !== strides.length) this.fail(`${what}: size [${shape.join(', ')}] and stride [${strides.join(', ')}] differ in rank`);
    if (typeof requiresGrad !== 'boolean') this.fail(`${what}: requires_grad is ${describe(requiresGrad ?? null)}`);
    if (!(hooks instanceof PyDict) || hooks.entries.length > 0) this.fail(`${what}: backward hooks must be an empty OrderedDict`);
    return new TorchTensor(storage, offset, shape, strides);
  }

  private ints(v: PyValue, what: string): number[] {
    const items = v instanceof PyTuple || v instanceof PyList ? v.items : null;
    if (items === null || !items.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      this.fail(`${what} is ${describe(v)}, not a tuple of non-negative integers`);
    }
    return items as number[];
  }

  private persistent(pid: PyValue): PyValue {
    const load = this.options.persistentLoad;
    if (load === undefined) this.fail('a persistent id outside a torch checkpoint');
    return load(pid, this.opAt);
  }
}

/** Python's key equality for the non-string keys a state dict can have; containers compare by identity (no recursion on hostile nesting). */
function sameKey(a: PyValue, b: PyValue): boolean {
  if (a === b) return true;
  // 1 == 1.0 == True as dict keys in Python; a bigint and a number of the same value too.
  const numeric = (v: PyValue): v is number | bigint | boolean => typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean';
  return numeric(a) && numeric(b) && Number(a) === Number(b);
}

/** A short description of a value for messages. */
export function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'string') return `str ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint') return `int ${v}`;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (v instanceof PyBytes) return `bytes (${v.data.length})`;
  if (v instanceof PyTuple) return `a tuple of ${v.items.length}`;
  if (v instanceof PyList) return `a list of ${v.items.length}`;
  if (v instanceof PyDict) return `${v.ordered ? 'an OrderedDict' : 'a dict'} of ${v.entries.length}`;
  if (v instanceof PySet) return `a set of ${v.items.length}`;
  if (v instanceof PyCallable) return v.name;
  if (v instanceof TorchStorageType) return `torch.${v.name}`;
  if (v instanceof TorchStorage) return `storage "${v.key}"`;
  return `a tensor [${v.shape.join(', ')}]`;
}

/** Python string-literal escapes (protocol 0 STRING). */
function pythonUnescape(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v' };
    return simple[e] ?? `\\${e}`;
  });
}

/** raw-unicode-escape (protocol 0 UNICODE): only \uXXXX and \UXXXXXXXX are escapes. */
function rawUnicodeUnescape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u?: string, U?: string) => String.fromCodePoint(parseInt((u ?? U)!, 16)));
}
