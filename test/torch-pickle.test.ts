/**
 * torch checkpoints read without running them: the reference `.ckpt` (every tensor's dtype, shape,
 * strides, storage and the sha256 of the bytes its view yields, in JS and through onnxruntime), the
 * three malicious pickles refused with a SecurityError naming their callable, and hand-made files
 * for every other path — legacy (non-zip) files, zip64, protocol 4 opcodes, nested state dicts,
 * refused opcodes and each malformed-file error — plus an old diffusers folder with only
 * `diffusion_pytorch_model.bin` decoding like the reference.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SecurityError, TorchCheckpointError, WeightLoadError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { AutoencoderKL } from '../src/models/autoencoder-kl.js';
import { openWeights } from '../src/models/loading.js';
import { ModelSession } from '../src/runtime/session.js';
import { parsePickle } from '../src/weights/pickle.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { WeightSource, weightShape } from '../src/weights/source.js';
import { loadTorchCheckpointSync } from '../src/weights/torch-archive.js';
import { readWeightBytes } from '../src/weights/view.js';
import { assertClose, fixture, tempDir } from './helpers.js';

const SF = fixture('single-file');
const CKPT = join(SF, 'checkpoints', 'tiny-sd15-vae.ckpt');
const VAE = fixture('tiny-sd-cnxs', 'vae');
const tmp = tempDir('cnxs-pickle-');

interface KeyRow {
  ldm_key: string;
  shape: number[];
  dtype: string;
  to: [string, string, string][];
  sha256: string;
  storage: string;
  storage_offset: number;
  stride: number[];
}
const keysJson = JSON.parse(readFileSync(`${CKPT}.keys.json`, 'utf8')) as { keys: KeyRow[]; storages: Record<string, { dtype: string; numel: number }> };
interface PickleCase {
  name: string;
  kind: string;
  file: string;
  dangerous_callable?: string;
  n_tensors?: number;
  top_level_non_tensor_entries?: Record<string, number>;
  storages?: { count: number };
  views?: Record<string, { storage: string; storage_offset: number; stride: number[]; shape: number[] }>;
}
const cases = JSON.parse(readFileSync(join(SF, 'pickle-cases.json'), 'utf8')) as PickleCase[];
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// ---- the reference checkpoint --------------------------------------------------------------

test('ckpt_reader: every tensor of the reference .ckpt (dtype, shape, strides, storage, offset, sha256 of its view)', () => {
  const c = cases.find((x) => x.kind === 'ckpt_reader')!;
  const ckpt = loadTorchCheckpointSync(join(SF, c.file));
  assert.equal(ckpt.format, 'zip');
  assert.equal(ckpt.tensors.size, c.n_tensors);
  assert.deepEqual(Object.fromEntries(ckpt.others), c.top_level_non_tensor_entries, 'non-tensor entries beside state_dict');
  assert.equal(new Set([...ckpt.tensors.values()].map((t) => t.storage.key)).size, c.storages!.count);
  for (const row of keysJson.keys) {
    const t = ckpt.tensors.get(row.ldm_key);
    assert.ok(t, `${row.ldm_key} missing`);
    assert.deepEqual(
      { dtype: t.dtype, shape: t.shape, stride: t.strides, storage: t.storage.key, offset: t.storageOffset, numel: t.storage.numel },
      { dtype: row.dtype, shape: row.shape, stride: row.stride, storage: row.storage, offset: row.storage_offset, numel: keysJson.storages[row.storage]!.numel },
      row.ldm_key,
    );
    const ref = ckpt.refs.get(row.ldm_key)!;
    assert.deepEqual(weightShape(ref), row.shape);
    assert.equal(sha(readWeightBytes(ref)), row.sha256, `${row.ldm_key}: bytes`);
  }
  for (const [key, v] of Object.entries(c.views!)) {
    const t = ckpt.tensors.get(key.replace(/^state_dict\./, ''))!;
    assert.deepEqual([t.storage.key, t.storageOffset, t.strides, t.shape], [v.storage, v.storage_offset, v.stride, v.shape], key);
  }
  // the non-contiguous tensor is a strided view over only the region it reads; shared-storage tensors need none
  const pq = ckpt.refs.get('post_quant_conv.weight')!;
  assert.equal(pq.view?.kind, 'strided');
  const conv = ckpt.refs.get('decoder.conv_out.weight')!;
  assert.equal(conv.view, undefined);
  assert.equal(conv.info.fileOffset, ckpt.tensors.get('decoder.conv_out.weight')!.storage.fileOffset + 611 * 4);
});

test('ckpt_reader through onnxruntime: every tensor as an external initializer into the .ckpt gives the reference bytes', async () => {
  const ckpt = loadTorchCheckpointSync(CKPT);
  const source = WeightSource.fromFiles([ckpt], CKPT);
  const specs = keysJson.keys.map((r) => ({ key: r.ldm_key, shape: r.shape }));
  const op = GraphBuilder.create(source.bindStrict(specs));
  specs.forEach((p, i) => op.output(op.param(p), `t${i}`));
  const model = op.toModel('ckpt');
  assert.ok(model.graph.initializers.filter((t) => t.external).every((t) => '/' + t.external!.location === ckpt.realPath));
  const session = await ModelSession.create(model);
  try {
    const out = await session.run({});
    keysJson.keys.forEach((r, i) => {
      const got = out[`t${i}`]!;
      const data = got.data as Float32Array;
      assert.equal(sha(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)), r.sha256, r.ldm_key);
    });
  } finally {
    await session.release();
  }
});

test('the .ckpt holds the tiny VAE: each LDM tensor has the bytes of the diffusers tensor keys.json maps it to', () => {
  // The LDM → diffusers VAE key map is the single-file loader's; this checks the reader's bytes only.
  const ckpt = loadTorchCheckpointSync(CKPT);
  const vae = loadSafetensorsSync(join(VAE, 'diffusion_pytorch_model.safetensors'));
  let n = 0;
  for (const row of keysJson.keys) {
    for (const [component, key, transform] of row.to) {
      assert.equal(component, 'vae');
      assert.ok(transform === 'copy' || transform.startsWith('squeeze_1x1'), transform); // squeezing keeps the bytes
      assert.equal(sha(readWeightBytes(ckpt.refs.get(row.ldm_key)!)), sha(vae.readBytes(key)), `${row.ldm_key} → ${key}`);
      n++;
    }
  }
  assert.equal(n, vae.keys().length);
});

// ---- malicious files -----------------------------------------------------------------------

for (const c of cases.filter((x) => x.kind === 'malicious_pickle')) {
  test(`${c.name} is refused with a SecurityError naming ${c.dangerous_callable}`, async () => {
    const dir = join(tmp, c.name);
    mkdirSync(dir);
    const check = (e: unknown): boolean => {
      assert.ok(e instanceof SecurityError, `expected SecurityError, got ${String(e)}`);
      assert.equal(e.refused, c.dangerous_callable);
      assert.match(e.message, new RegExp(`refused GLOBAL ${c.dangerous_callable!.replace('.', '\\.')}`));
      assert.match(e.message, /nothing was executed/);
      assert.match(e.message, /Safetensors .*prefer them/);
      assert.equal(e.stack?.includes('SINGLE-FILE-FIXTURE'), false);
      return true;
    };
    assert.throws(() => loadTorchCheckpointSync(join(SF, c.file)), check);
    // the same through a model folder's .bin fallback, which leaves nothing behind
    copyFileSync(join(SF, c.file), join(dir, 'diffusion_pytorch_model.bin'));
    await assert.rejects(openWeights(dir, 'diffusion_pytorch_model'), check);
    assert.deepEqual(readdirSync(dir), ['diffusion_pytorch_model.bin']);
  });
}

// ---- hand-made files -----------------------------------------------------------------------

/** Assembles pickle opcodes (what torch.save writes, or worse). */
class P {
  private parts: Buffer[] = [];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  raw(b: Uint8Array): this {
    this.parts.push(Buffer.from(b));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return this.op(0x58).raw(len).raw(b); // BINUNICODE
  }
  int(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.op(0x4a).raw(b); // BININT
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  tuple(items: readonly number[]): this {
    this.op(0x28);
    for (const i of items) this.int(i);
    return this.op(0x74);
  }
  emptyOrderedDict(): this {
    return this.global('collections', 'OrderedDict').op(0x29, 0x52);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

interface TensorSpec {
  key: string;
  storage: string;
  storageType?: string;
  numel: number;
  offset: number;
  shape: number[];
  stride: number[];
  /** Legacy only: (view key, offset, size) of a storage view. */
  view?: [string, number, number];
}

/** `_rebuild_tensor_v2(storage_pid, offset, size, stride, False, OrderedDict())` for one tensor. */
function tensor(p: P, t: TensorSpec, legacy: boolean): P {
  p.global('torch._utils', '_rebuild_tensor_v2').op(0x28);
  p.op(0x28).str('storage').global('torch', t.storageType ?? 'FloatStorage').str(t.storage).str('cpu').int(t.numel);
  if (legacy) {
    if (t.view) p.op(0x28).str(t.view[0]).int(t.view[1]).int(t.view[2]).op(0x74);
    else p.op(0x4e);
  }
  p.op(0x74, 0x51); // TUPLE, BINPERSID
  return p.int(t.offset).tuple(t.shape).tuple(t.stride).op(0x89).emptyOrderedDict().op(0x74, 0x52);
}

/** A protocol-2 pickle of `{...outer, 'state_dict': OrderedDict(tensors)}` (or the OrderedDict alone). */
function statePickle(tensors: readonly TensorSpec[], o: { legacy?: boolean; wrap?: number } = {}): Buffer {
  const p = new P().op(0x80, 2);
  for (let w = 0; w < (o.wrap ?? 0); w++) p.op(0x7d).str('global_step').int(7).op(0x73).str('state_dict');
  p.emptyOrderedDict();
  for (const t of tensors) tensor(p.str(t.key), t, o.legacy ?? false).op(0x73);
  for (let w = 0; w < (o.wrap ?? 0); w++) p.op(0x73);
  return p.op(0x2e).bytes();
}

/** A zip as torch.save writes it: STORED entries whose local headers pad the data to 64 bytes; zip64 records if asked. */
function writeZip(path: string, entries: [string, Uint8Array][], o: { zip64?: boolean } = {}): void {
  const out: Buffer[] = [];
  const central: Buffer[] = [];
  let at = 0;
  const push = (b: Buffer): void => {
    out.push(b);
    at += b.length;
  };
  for (const [name, data] of entries) {
    const nameBuf = Buffer.from(name);
    const headerAt = at;
    const pad = (64 - ((at + 30 + nameBuf.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4246, 0); // torch's 'FB' padding field
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(extra.length, 28);
    push(Buffer.concat([local, nameBuf, extra, Buffer.from(data)]));
    const z64 = Buffer.alloc(o.zip64 ? 28 : 0);
    if (o.zip64) {
      z64.writeUInt16LE(1, 0);
      z64.writeUInt16LE(24, 2);
      z64.writeBigUInt64LE(BigInt(data.length), 4);
      z64.writeBigUInt64LE(BigInt(data.length), 12);
      z64.writeBigUInt64LE(BigInt(headerAt), 20);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : data.length, 20);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : data.length, 24);
    c.writeUInt16LE(nameBuf.length, 28);
    c.writeUInt16LE(z64.length, 30);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : headerAt, 42);
    central.push(Buffer.concat([c, nameBuf, z64]));
  }
  const cd = Buffer.concat(central);
  const cdAt = at;
  push(cd);
  if (o.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(cdAt), 48);
    const recAt = at;
    push(rec);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(recAt), 8);
    loc.writeUInt32LE(1, 16);
    push(loc);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(o.zip64 ? 0xffffffff : cd.length, 12);
  end.writeUInt32LE(o.zip64 ? 0xffffffff : cdAt, 16);
  push(end);
  writeFileSync(path, Buffer.concat(out));
}

function torchZip(name: string, pickle: Uint8Array, storages: Record<string, Float32Array>, o: { zip64?: boolean } = {}): string {
  const path = join(tmp, name);
  const stem = name.replace(/\..*$/, '');
  writeZip(path, [[`${stem}/data.pkl`, pickle], ...Object.entries(storages).map(([k, v]): [string, Uint8Array] => [`${stem}/data/${k}`, new Uint8Array(v.buffer)]), [`${stem}/version`, Buffer.from('3\n')]], o);
  return path;
}

/** A legacy (non-zip) torch file: magic number, protocol, sys info, the object, storage keys, raw storages. */
function legacyFile(name: string, main: Uint8Array, storages: Record<string, Float32Array>): string {
  const magic = new P().op(0x80, 2, 0x8a, 10).raw(Buffer.from('6c fc 9c 46 f9 20 6a a8 50 19'.replace(/ /g, ''), 'hex')).op(0x2e).bytes();
  const protocol = new P().op(0x80, 2, 0x4d, 0xe9, 0x03, 0x2e).bytes(); // BININT2 1001
  const sysInfo = new P().op(0x80, 2, 0x7d).str('protocol_version').op(0x4d, 0xe9, 0x03, 0x73).str('little_endian').op(0x88, 0x73).op(0x2e).bytes();
  const keys = new P().op(0x80, 2, 0x5d, 0x28);
  for (const k of Object.keys(storages)) keys.str(k);
  const parts = [magic, protocol, sysInfo, main, keys.op(0x65, 0x2e).bytes()];
  for (const data of Object.values(storages)) {
    const n = Buffer.alloc(8);
    n.writeBigInt64LE(BigInt(data.length));
    parts.push(n, Buffer.from(data.buffer));
  }
  const path = join(tmp, name);
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

const seq = (n: number, from = 0): Float32Array => Float32Array.from({ length: n }, (_, i) => from + i);
const values = (ckpt: ReturnType<typeof loadTorchCheckpointSync>, key: string): number[] => {
  const b = readWeightBytes(ckpt.refs.get(key)!).slice();
  return [...new Float32Array(b.buffer)];
};

/** Tensors over two storages: a shared one (offsets), a transposed view and a strided one with gaps. */
const SPECS: TensorSpec[] = [
  { key: 'a.weight', storage: '0', numel: 20, offset: 0, shape: [2, 3], stride: [3, 1] },
  { key: 'a.bias', storage: '0', numel: 20, offset: 6, shape: [2], stride: [1] },
  { key: 'b.weight', storage: '0', numel: 20, offset: 8, shape: [3, 4], stride: [1, 3] }, // a transpose
  { key: 'c', storage: '1', numel: 10, offset: 1, shape: [2, 2], stride: [4, 2] }, // gaps
  { key: 'scalar', storage: '1', numel: 10, offset: 9, shape: [], stride: [] },
];
const EXPECT: Record<string, number[]> = {
  'a.weight': [0, 1, 2, 3, 4, 5],
  'a.bias': [6, 7],
  'b.weight': [8, 11, 14, 17, 9, 12, 15, 18, 10, 13, 16, 19],
  c: [101, 103, 105, 107],
  scalar: [109],
};
const STORAGES = { '0': seq(20), '1': seq(10, 100) };

test('zip archives: shared storages, transposed and strided views, nested state_dict like diffusers, zip64', () => {
  for (const [name, wrap, zip64] of [['plain.pt', 0, false], ['nested.ckpt', 2, false], ['big.ckpt', 1, true]] as const) {
    const ckpt = loadTorchCheckpointSync(torchZip(name, statePickle(SPECS, { wrap }), STORAGES, { zip64 }));
    assert.deepEqual(ckpt.keys(), SPECS.map((s) => s.key), name);
    for (const [k, v] of Object.entries(EXPECT)) assert.deepEqual(values(ckpt, k), v, `${name}: ${k}`);
    assert.deepEqual([...ckpt.others.keys()], wrap === 2 ? ['global_step', 'state_dict.global_step'] : wrap === 1 ? ['global_step'] : []);
  }
});

test('legacy (non-zip) torch files, storage views included', () => {
  const specs: TensorSpec[] = [
    ...SPECS,
    // an old-torch storage view: elements [4, 10) of root storage '0', seen as storage 'v'
    { key: 'viewed', storage: '0', numel: 20, offset: 1, shape: [3], stride: [2], view: ['v', 4, 6] },
  ];
  const ckpt = loadTorchCheckpointSync(legacyFile('legacy.pt', statePickle(specs, { legacy: true }), STORAGES));
  assert.equal(ckpt.format, 'legacy');
  for (const [k, v] of Object.entries({ ...EXPECT, viewed: [5, 7, 9] })) assert.deepEqual(values(ckpt, k), v, k);
  // a raw storage whose size field disagrees with the pickle
  const bad = legacyFile('legacy-bad.pt', statePickle(SPECS, { legacy: true }), { '0': seq(20), '1': seq(9) });
  assert.throws(() => loadTorchCheckpointSync(bad), (e: Error) => e instanceof TorchCheckpointError && /storage "1" holds 9 elements but the pickle says 10/.test(e.message));
});

test('protocol 4 opcodes: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINGET, LONG1, BINBYTES', () => {
  const s = (t: string) => [0x8c, t.length, ...Buffer.from(t)];
  const bytes = Buffer.from([
    0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0,
    0x7d, 0x94, // {} memo 0
    0x28, // MARK
    ...s('od'), 0x94, ...s('collections'), ...s('OrderedDict'), 0x93, 0x94, 0x29, 0x52, // OrderedDict()
    ...s('big'), 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2**64
    ...s('neg'), 0x8a, 1, 0xff,
    ...s('raw'), 0x43, 2, 7, 8,
    ...s('again'), 0x68, 1, // BINGET 1: the key 'od'
    0x75, 0x2e,
  ]);
  const { value } = parsePickle(bytes, 0, { where: 'p4' });
  assert.ok(value !== null && typeof value === 'object' && 'entries' in value);
  const got = Object.fromEntries(value.entries.map(([k, v]) => [String(k), v]));
  assert.equal(got['big'], 2n ** 64n);
  assert.equal(got['neg'], -1);
  assert.equal(got['again'], 'od');
  assert.deepEqual(got['raw'] && typeof got['raw'] === 'object' && 'data' in got['raw'] ? [...got['raw'].data] : null, [7, 8]);
});

test('refused: INST, OBJ, NEWOBJ, EXT, a call to a storage type, any other GLOBAL — a SecurityError when its opcode is read', () => {
  const refused = (p: P, name: string): void => {
    assert.throws(
      () => parsePickle(p.bytes(), 0, { where: 'x' }),
      (e: Error) => e instanceof SecurityError && e.refused === name && /nothing was executed/.test(e.message),
      name,
    );
  };
  refused(new P().op(0x80, 2, 0x28, 0x69).raw(Buffer.from('os\nsystem\n')).op(0x2e), 'os.system'); // INST
  refused(new P().op(0x80, 2).global('builtins', 'getattr'), 'builtins.getattr');
  refused(new P().op(0x80, 2).global('torch', 'load'), 'torch.load'); // a torch name is not enough
  refused(new P().op(0x80, 2).global('torch._utils', '_rebuild_qtensor'), 'torch._utils._rebuild_qtensor');
  refused(new P().op(0x80, 2).global('collections', 'OrderedDict').op(0x29, 0x81), 'collections.OrderedDict'); // NEWOBJ
  refused(new P().op(0x80, 2, 0x28).global('collections', 'OrderedDict').op(0x6f), 'collections.OrderedDict'); // OBJ
  refused(new P().op(0x80, 2, 0x82, 5), 'copyreg extension 5'); // EXT1
  refused(new P().op(0x80, 2).global('torch', 'FloatStorage').op(0x29, 0x52), 'torch.FloatStorage'); // a storage type called
});

test('malformed files: each a TorchCheckpointError saying what is wrong', () => {
  const fails = (path: string, re: RegExp): void => {
    assert.throws(() => loadTorchCheckpointSync(path), (e: Error) => e instanceof TorchCheckpointError && e instanceof WeightLoadError && re.test(e.message), re.source);
  };
  // a truncated archive: the end of the zip (its directory) is gone
  const truncated = join(tmp, 'truncated.ckpt');
  writeFileSync(truncated, readFileSync(CKPT).subarray(0, 200_000));
  fails(truncated, /no zip end-of-central-directory record/);
  // a storage offset past the end of its storage
  fails(torchZip('past.pt', statePickle([{ key: 'w', storage: '0', numel: 20, offset: 18, shape: [2, 2], stride: [2, 1] }]), { '0': seq(20) }), /tensor "w" \[2, 2\] \(storage offset 18, stride \[2, 1\]\) reads up to element 22 of storage "0", which holds 20/);
  // a storage entry shorter than the pickle says
  fails(torchZip('short.pt', statePickle([{ key: 'w', storage: '0', numel: 20, offset: 0, shape: [4], stride: [1] }]), { '0': seq(16) }), /storage "0" is 20 × F32 \(80 bytes\) in the pickle, but its entry short\/data\/0 holds 64 bytes/);
  // a storage the archive does not have
  fails(torchZip('missing.pt', statePickle([{ key: 'w', storage: '3', numel: 4, offset: 0, shape: [4], stride: [1] }]), { '0': seq(4) }), /tensor "w" uses storage "3", but the archive has no entry missing\/data\/3/);
  // an unknown opcode in data.pkl
  fails(torchZip('opcode.pt', Buffer.from([0x80, 2, 0x7d, 0xff, 0x2e]), {}), /pickle byte 3: unknown opcode 0xff/);
  // a pickle that is not a state dict
  fails(torchZip('list.pt', new P().op(0x80, 2, 0x5d, 0x2e).bytes(), {}), /holds a list of 0, not a dict of tensors/);
  // a pickle cut short, a legacy file whose storages are cut short, neither zip nor pickle
  fails(torchZip('cut.pt', statePickle(SPECS).subarray(0, 60), STORAGES), /needs \d+ more bytes but the data ends|no end of line/);
  const legacy = readFileSync(legacyFile('legacy-full.pt', statePickle(SPECS, { legacy: true }), STORAGES));
  const cut = join(tmp, 'legacy-cut.pt');
  writeFileSync(cut, legacy.subarray(0, legacy.length - 8));
  fails(cut, /storage "1" \(bytes \d+\.\.\d+\) runs past the end of the \d+-byte file/);
  const text = join(tmp, 'text.ckpt');
  writeFileSync(text, 'hello');
  fails(text, /not a torch checkpoint \(neither a zip archive nor a pickle\)/);
});

test('an old diffusers folder with only diffusion_pytorch_model.bin loads and decodes like the reference', async () => {
  // The tiny VAE re-saved as torch.save would, all tensors in one shared storage; one conv weight stored
  // transposed (a permuted view) and one bias with gaps (a strided view), to run views in a real model.
  const st = loadSafetensorsSync(join(VAE, 'diffusion_pytorch_model.safetensors'));
  const chunks: Float32Array[] = [];
  const specs: TensorSpec[] = [];
  let at = 0;
  for (const key of st.keys()) {
    const data = st.readFloat32(key).data;
    const shape = [...st.info(key).shape];
    if (key === 'decoder.conv_in.weight') {
      // stored as [C_in, C_out, kh, kw] contiguous; the model's [C_out, C_in, kh, kw] is its transpose
      const [co, ci, kh, kw] = shape as [number, number, number, number];
      const t = new Float32Array(data.length);
      for (let o = 0; o < co; o++) for (let i = 0; i < ci; i++) for (let k = 0; k < kh * kw; k++) t[(i * co + o) * kh * kw + k] = data[(o * ci + i) * kh * kw + k]!;
      chunks.push(t);
      specs.push({ key, storage: '0', numel: 0, offset: at, shape, stride: [kh * kw, co * kh * kw, kw, 1] });
    } else if (key === 'decoder.conv_out.bias') {
      const t = new Float32Array(data.length * 2).fill(NaN); // every other element; the NaNs must never be read
      data.forEach((v, i) => (t[2 * i] = v));
      chunks.push(t);
      specs.push({ key, storage: '0', numel: 0, offset: at, shape, stride: [2] });
    } else {
      chunks.push(data);
      specs.push({ key, storage: '0', numel: 0, offset: at, shape, stride: shape.map((_, i) => shape.slice(i + 1).reduce((a, d) => a * d, 1)) });
    }
    at += chunks[chunks.length - 1]!.length;
  }
  const storage = new Float32Array(at);
  let o = 0;
  for (const c of chunks) {
    storage.set(c, o);
    o += c.length;
  }
  const dir = join(tmp, 'old-vae');
  mkdirSync(dir);
  copyFileSync(join(VAE, 'config.json'), join(dir, 'config.json'));
  const zip = torchZip('archive.bin', statePickle(specs.map((s) => ({ ...s, numel: at }))), { '0': storage });
  copyFileSync(zip, join(dir, 'diffusion_pytorch_model.bin'));

  const source = await openWeights(dir, 'diffusion_pytorch_model');
  assert.equal(source.get('decoder.conv_in.weight')!.view?.kind, 'strided');
  const vae = await AutoencoderKL.fromPretrained(dir);
  const ref = loadSafetensorsSync(fixture('tiny-sd-cnxs', 'reference', 'tensors.safetensors'));
  try {
    const { sample } = await vae.decode(ref.readFloat32('inputs.vae_latents'));
    assertClose(sample, ref.readFloat32('vae_decode.sample'), 1e-4, 'decode from .bin');
  } finally {
    await vae.release();
  }
});

test('folder fallback: pytorch_model.bin for transformers models, .bin shards and variants; safetensors win when both exist', async () => {
  const one = (key: string, storage: string): TensorSpec => ({ key, storage, numel: 4, offset: 0, shape: [4], stride: [1] });
  const dir = join(tmp, 'bins');
  mkdirSync(dir);
  copyFileSync(torchZip('s1.bin', statePickle([one('a', '0')]), { '0': seq(4) }), join(dir, 'pytorch_model-00001-of-00002.bin'));
  copyFileSync(torchZip('s2.bin', statePickle([one('b', '0')]), { '0': seq(4, 10) }), join(dir, 'pytorch_model-00002-of-00002.bin'));
  writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: { a: 'pytorch_model-00001-of-00002.bin', b: 'pytorch_model-00002-of-00002.bin' } }));
  const sharded = await openWeights(dir, 'model');
  assert.deepEqual(sharded.keys().sort(), ['a', 'b']);
  assert.deepEqual([...new Float32Array(readWeightBytes(sharded.get('b')!).slice().buffer)], [10, 11, 12, 13]);

  copyFileSync(torchZip('v.bin', statePickle([one('v', '0')]), { '0': seq(4) }), join(dir, 'diffusion_pytorch_model.fp16.bin'));
  assert.deepEqual((await openWeights(dir, 'diffusion_pytorch_model', 'fp16')).keys(), ['v']);
  await assert.rejects(openWeights(dir, 'diffusion_pytorch_model'), (e: Error) => e instanceof WeightLoadError && /diffusion_pytorch_model\.bin/.test(e.message));

  copyFileSync(join(VAE, 'diffusion_pytorch_model.safetensors'), join(dir, 'diffusion_pytorch_model.safetensors'));
  copyFileSync(join(SF, 'malicious', 'malicious-global-os-system.ckpt'), join(dir, 'diffusion_pytorch_model.bin'));
  const preferred = await openWeights(dir, 'diffusion_pytorch_model'); // the .bin beside it is never opened
  assert.ok(preferred.keys().includes('decoder.conv_in.weight'));
});
