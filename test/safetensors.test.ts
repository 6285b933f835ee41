/** The safetensors reader: round trip, every header check, shards and variants. */
import assert from 'node:assert/strict';
import { writeFileSync, cpSync, symlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MissingWeightsError, SafetensorsError, WeightLoadError } from '../src/errors.js';
import { openWeights } from '../src/models/loading.js';
import { halfToFloat32, loadSafetensors, loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture, tempDir } from './helpers.js';

/** Write a safetensors file from a header object and a data section. */
function writeSafetensors(path: string, header: unknown, data: Uint8Array, opts: { headerLength?: bigint } = {}): string {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLength ?? BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

/** A temp folder removed when the calling test ends. */
const tmp = () => tempDir('cnxs-st-');
const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

test('reads F32, F16 and BF16 tensors with their offsets', async () => {
  const dir = tmp();
  const half = Uint16Array.of(0x3c00, 0xc000); // 1, -2
  const bf = Uint16Array.of(0x3f80, 0x4040); // 1, 3
  const data = new Uint8Array([...f32(1.5, -2.25), ...new Uint8Array(half.buffer), ...new Uint8Array(bf.buffer)]);
  const path = writeSafetensors(join(dir, 'a.safetensors'), {
    __metadata__: { format: 'pt' },
    a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    h: { dtype: 'F16', shape: [1, 2], data_offsets: [8, 12] },
    b: { dtype: 'BF16', shape: [2], data_offsets: [12, 16] },
  }, data);
  const file = await loadSafetensors(path);
  assert.deepEqual([...file.read('a').data], [1.5, -2.25]);
  assert.deepEqual([...file.read('h').data], [1, -2]);
  assert.deepEqual([...file.read('h').dims], [1, 2]);
  assert.deepEqual([...file.read('b').data], [1, 3]);
  assert.equal(file.info('h').fileOffset, file.dataOffset + 8);
  assert.equal(file.metadata['format'], 'pt');
  assert.deepEqual([...halfToFloat32(Uint16Array.of(0x0001, 0x7c00))], [2 ** -24, Infinity]);
});

test('header checks name the file and the tensor', async (t) => {
  const dir = tmp();
  const cases: [string, unknown, Uint8Array, RegExp, { headerLength?: bigint }?][] = [
    ['truncated data', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(1, 2), /"a".*run past the end.*truncated/],
    ['offsets past the end', { a: { dtype: 'F32', shape: [1], data_offsets: [100, 104] } }, f32(1), /"a".*past the end/],
    ['overlapping', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(1, 2, 3), /"a" and "b" overlap/],
    ['unknown dtype', { a: { dtype: 'F31', shape: [1], data_offsets: [0, 4] } }, f32(1), /"a": unknown dtype "F31"/],
    ['byte count ≠ shape × dtype', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(1, 2), /"a": holds 8 bytes but F32\[3\] needs 12/],
    ['bad shape', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1), /"a": bad shape/],
    ['header length beyond the file', {}, new Uint8Array(), /header length 1000000 does not fit/, { headerLength: 1000000n }],
    ['not JSON', 'not-an-object', new Uint8Array(), /not a JSON object/],
  ];
  for (const [name, header, data, message, opts] of cases) {
    await t.test(name, async () => {
      const path = writeSafetensors(join(dir, `${name.replace(/\W+/g, '_')}.safetensors`), header, data, opts);
      await assert.rejects(loadSafetensors(path), (e: Error) => e instanceof SafetensorsError && message.test(e.message) && e.message.includes(path));
      assert.throws(() => loadSafetensorsSync(path), SafetensorsError);
    });
  }
  await t.test('a file shorter than 8 bytes', async () => {
    const path = join(dir, 'short.safetensors');
    writeFileSync(path, Buffer.from([1, 2, 3]));
    await assert.rejects(loadSafetensors(path), /too short/);
  });
  await t.test('a missing file', async () => {
    await assert.rejects(loadSafetensors(join(dir, 'nope.safetensors')), (e: Error) => e instanceof SafetensorsError && e.message.includes('nope.safetensors'));
    assert.throws(() => loadSafetensorsSync(join(dir, 'nope.safetensors')), (e: Error) => e instanceof SafetensorsError && e.message.includes('nope.safetensors'));
  });
});

test('weights are found as a single file, a variant, or shards; symlinks resolve to the real file', async () => {
  const dir = tmp();
  writeSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1));
  assert.deepEqual((await openWeights(dir, 'diffusion_pytorch_model')).keys(), ['a']);
  await assert.rejects(openWeights(dir, 'diffusion_pytorch_model', 'fp16'), (e: Error) => e instanceof MissingWeightsError && e instanceof WeightLoadError && /variant "fp16"/.test(e.message));

  const sharded = tmp();
  writeSafetensors(join(sharded, 'model-00001-of-00002.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1));
  writeSafetensors(join(sharded, 'model-00002-of-00002.safetensors'), { b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2));
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
  const source = await openWeights(sharded, 'model');
  assert.deepEqual(source.keys().sort(), ['a', 'b']);
  assert.equal(new Float32Array(source.get('b')!.file.readBytes('b').buffer)[0], 2);

  // HF-cache layout: snapshots/<rev>/file → ../../blobs/<hash>
  const cache = tmp();
  mkdirSync(join(cache, 'blobs'));
  mkdirSync(join(cache, 'snapshots', 'abc'), { recursive: true });
  cpSync(fixture('tiny-sd-cnxs', 'controlnet', 'diffusion_pytorch_model.safetensors'), join(cache, 'blobs', 'deadbeef'));
  symlinkSync('../../blobs/deadbeef', join(cache, 'snapshots', 'abc', 'diffusion_pytorch_model.safetensors'));
  const linked = await openWeights(join(cache, 'snapshots', 'abc'), 'diffusion_pytorch_model');
  const ref = linked.get(linked.keys()[0]!)!;
  assert.equal(ref.file.realPath, join(cache, 'blobs', 'deadbeef'));
});
