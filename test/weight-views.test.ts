/**
 * Weight views on the graph level: a weight stored as a region of a file and made into the model's
 * tensor by a transpose or a torch-style as_strided window. Each view is checked three ways: the
 * expected values by hand (flat[offset + Σ i·stride]), `readWeightBytes` in JS, and an onnxruntime
 * session on the traced graph — plus the graph's shape (no op, Transpose or Gather) and its errors.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { WeightLoadError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { ModelSession } from '../src/runtime/session.js';
import { loadSafetensorsSync, type TensorInfo } from '../src/weights/safetensors.js';
import { WeightSource, weightShape, type WeightRef, type WeightView } from '../src/weights/source.js';
import { classifyStrided, readWeightBytes } from '../src/weights/view.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { tempDir } from './helpers.js';

const N = 24;
const values = Float32Array.from({ length: N }, (_, i) => i * 0.5 - 3); // exactly representable in fp16
const dir = tempDir('cnxs-views-');
const path = join(dir, 'storage.safetensors');
writeSafetensors(path, [
  { name: 'f32', dtype: 'F32', shape: [N], bytes: () => new Uint8Array(values.buffer) },
  { name: 'f16', dtype: 'F16', shape: [N], bytes: () => new Uint8Array(toHalf(values).buffer) },
]);
const file = loadSafetensorsSync(path);

/** float32 → IEEE half for values that are exact in half (small multiples of 0.5). */
function toHalf(v: Float32Array): Uint16Array {
  return Uint16Array.from(v, (x) => {
    if (x === 0) return 0;
    const s = x < 0 ? 0x8000 : 0;
    const a = Math.abs(x);
    const e = Math.floor(Math.log2(a));
    return s | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
  });
}

interface Case {
  name: string;
  stored: 'f32' | 'f16';
  /** The stored region: elements [begin, begin + numel(shape)) of the storage, as `shape`. */
  begin?: number;
  shape?: number[];
  view?: WeightView;
  expectOps: string[];
}

const CASES: Case[] = [
  { name: 'plain', stored: 'f32', expectOps: [] },
  { name: 'rows', stored: 'f32', begin: 8, shape: [2, 5], expectOps: [] },
  { name: 'transposed', stored: 'f32', shape: [4, 6], view: { kind: 'transpose', perm: [1, 0] }, expectOps: ['Transpose'] },
  { name: 'permuted3d', stored: 'f32', shape: [2, 3, 4], view: { kind: 'transpose', perm: [2, 0, 1] }, expectOps: ['Transpose'] },
  { name: 'offset-contiguous', stored: 'f32', view: { kind: 'strided', shape: [3, 4], strides: [4, 1], offset: 5 }, expectOps: [] },
  { name: 'strided-transpose', stored: 'f32', view: { kind: 'strided', shape: [4, 3], strides: [1, 4], offset: 2 }, expectOps: ['Transpose'] },
  { name: 'unit-axes', stored: 'f32', view: { kind: 'strided', shape: [1, 3, 1, 2], strides: [99, 1, 7, 3], offset: 0 }, expectOps: ['Transpose'] },
  { name: 'gaps', stored: 'f32', view: { kind: 'strided', shape: [2, 3], strides: [7, 2], offset: 1 }, expectOps: ['Reshape', 'Add', 'Add', 'Gather'] },
  { name: 'broadcast', stored: 'f32', view: { kind: 'strided', shape: [3, 2], strides: [0, 5], offset: 4 }, expectOps: ['Reshape', 'Add', 'Add', 'Gather'] },
  { name: 'scalar', stored: 'f32', view: { kind: 'strided', shape: [], strides: [], offset: 9 }, expectOps: [] },
  { name: 'half-gaps', stored: 'f16', view: { kind: 'strided', shape: [3, 2], strides: [5, 3], offset: 2 }, expectOps: ['Reshape', 'Add', 'Add', 'Gather', 'Cast'] },
  { name: 'half-transposed', stored: 'f16', shape: [6, 4], view: { kind: 'transpose', perm: [1, 0] }, expectOps: ['Transpose', 'Cast'] },
];

function refOf(c: Case): WeightRef {
  const base = file.info(c.stored);
  const eb = c.stored === 'f32' ? 4 : 2;
  const shape = c.shape ?? [N];
  const n = shape.reduce((a, d) => a * d, 1);
  const info: TensorInfo = { ...base, shape, fileOffset: base.fileOffset + (c.begin ?? 0) * eb, byteLength: n * eb };
  return c.view ? { file, info, view: c.view } : { file, info };
}

/** The model's tensor by the definition of each view, from the float32 values. */
function expected(c: Case): { dims: number[]; data: number[] } {
  const begin = c.begin ?? 0;
  const stored = c.shape ?? [N];
  let shape: number[];
  let strides: number[];
  let offset = begin;
  const st = stored.map((_, i) => stored.slice(i + 1).reduce((a, d) => a * d, 1));
  if (c.view === undefined) [shape, strides] = [stored, st];
  else if (c.view.kind === 'transpose') [shape, strides] = [c.view.perm.map((p) => stored[p]!), c.view.perm.map((p) => st[p]!)];
  else [shape, strides, offset] = [[...c.view.shape], [...c.view.strides], begin + c.view.offset];
  const data: number[] = [];
  const walk = (axis: number, at: number): void => {
    if (axis === shape.length) {
      data.push(values[at]!);
      return;
    }
    for (let i = 0; i < shape[axis]!; i++) walk(axis + 1, at + i * strides[axis]!);
  };
  walk(0, offset);
  return { dims: shape, data };
}

function decode(bytes: Uint8Array, stored: 'f32' | 'f16'): number[] {
  const copy = bytes.slice();
  if (stored === 'f32') return [...new Float32Array(copy.buffer)];
  return [...new Uint16Array(copy.buffer)].map((h) => {
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
    return h & 0x8000 ? -v : v;
  });
}

function trace(cases: readonly Case[]): { op: GraphBuilder; source: WeightSource } {
  const source = new WeightSource(new Map(cases.map((c) => [c.name, refOf(c)])), dir);
  const op = GraphBuilder.create(source.bindStrict(cases.map((c) => ({ key: c.name, shape: expected(c).dims }))));
  for (const c of cases) op.output(op.param({ key: c.name, shape: expected(c).dims }), `out_${c.name}`);
  return { op, source };
}

test('weightShape: the stored shape, a transpose of it, or the strided view\'s own', () => {
  for (const c of CASES) assert.deepEqual([...weightShape(refOf(c))], expected(c).dims, c.name);
});

test('readWeightBytes applies each view in JS', () => {
  for (const c of CASES) assert.deepEqual(decode(readWeightBytes(refOf(c)), c.stored), expected(c).data, c.name);
});

test('the traced graph: each view is a narrowed initializer plus root weight-prep nodes, and onnxruntime computes the views', async () => {
  const { op } = trace(CASES);
  const model = op.toModel('views');
  for (const c of CASES) {
    const prep = model.graph.nodes.filter((n) => n.name.startsWith(`${c.name}/`)).map((n) => n.opType);
    assert.deepEqual(prep, c.expectOps, `${c.name}: weight-prep ops`);
    const init = model.graph.initializers.find((t) => t.name === c.name)!;
    assert.ok(init.external, `${c.name}: external data`);
    assert.equal('/' + init.external.location, file.realPath);
  }
  // a contiguous window maps only its own bytes: elements 5..16 of the float32 storage
  const narrowed = model.graph.initializers.find((t) => t.name === 'offset-contiguous')!;
  assert.deepEqual([narrowed.external!.offset, narrowed.external!.length], [file.info('f32').fileOffset + 20, 48]);
  assert.deepEqual([...narrowed.dims], [3, 4]);

  const session = await ModelSession.create(model);
  try {
    const out = await session.run({});
    for (const c of CASES) {
      const got = out[`out_${c.name}`]!;
      const want = expected(c);
      assert.deepEqual([...got.dims], want.dims, `${c.name}: dims`);
      assert.deepEqual([...(got.data as Float32Array)], want.data, `${c.name}: values`);
    }
  } finally {
    await session.release();
  }
});

test('layouts are classified by strides, not by luck', () => {
  assert.deepEqual(classifyStrided([3, 4], [4, 1], 0), { kind: 'contiguous', offset: 0 });
  assert.deepEqual(classifyStrided([4, 3], [1, 4], 0), { kind: 'permuted', offset: 0, storedShape: [3, 4], perm: [1, 0] });
  assert.deepEqual(classifyStrided([2, 2], [1, 1], 0), { kind: 'general' }, 'overlapping axes');
  assert.deepEqual(classifyStrided([2, 3], [4, 1], 0), { kind: 'general' }, 'a row gap');
  assert.deepEqual(classifyStrided([0, 3], [5, 9], 2), { kind: 'contiguous', offset: 2 }, 'empty');
});

test('bindStrict compares the view\'s shape; a view past its stored region is a WeightLoadError', () => {
  const c = CASES.find((x) => x.name === 'transposed')!;
  const source = new WeightSource(new Map([[c.name, refOf(c)]]), dir);
  assert.throws(() => source.bindStrict([{ key: c.name, shape: [4, 6] }]), (e: Error) => e instanceof WeightLoadError && /checkpoint has \[6, 4\], model expects \[4, 6\]/.test(e.message));
  const bad: WeightRef = { file, info: file.info('f32'), view: { kind: 'strided', shape: [3, 4], strides: [8, 1], offset: 5 } };
  const bound = new WeightSource(new Map([['bad', bad]]), dir).bindStrict([{ key: 'bad', shape: [3, 4] }]);
  assert.throws(() => GraphBuilder.create(bound).param({ key: 'bad', shape: [3, 4] }), (e: Error) => e instanceof WeightLoadError && /"bad".*reads past/.test(e.message));
  assert.throws(() => readWeightBytes(bad), (e: Error) => e instanceof WeightLoadError && /reads past/.test(e.message));
});
