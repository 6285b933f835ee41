/**
 * The torch-compatible generator against torch 1.13.1 golden data (test/fixtures/torch-rng/,
 * copied from the reference set). Every comparison is on raw bits: the fixtures are bit-exact.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { InputError } from '../src/errors.js';
import { fma32 } from '../src/random/cephes32.js';
import { cos64, log64, sin64 } from '../src/random/libm64.js';
import { Generator, MT19937, rand, randn, randnTensor } from '../src/random/index.js';
import type { Tensor } from '../src/tensor.js';
import { at } from '../src/util/at.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture } from './helpers.js';

interface SeqCall {
  op: 'randn' | 'rand';
  shape: number[];
  dtype: 'float32' | 'float64';
  kernel_path: string;
  output: string;
}
interface RngCase {
  name: string;
  kind: 'torch_rng_sequence' | 'diffusers_randn_tensor' | 'diffusers_randn_tensor_list' | 'mt19937_raw_u32';
  seed_str?: string;
  seeds_str?: string[];
  seed_low32?: number;
  shape?: number[];
  calls?: SeqCall[];
  output: string;
}

const cases = JSON.parse(readFileSync(fixture('torch-rng', 'cases.json'), 'utf8')) as RngCase[];
const tensors = loadSafetensorsSync(fixture('torch-rng', 'tensors.safetensors'));

function casesOf(kind: RngCase['kind']): RngCase[] {
  const found = cases.filter((c) => c.kind === kind);
  assert.ok(found.length > 0, `no ${kind} cases in cases.json`);
  return found;
}

/** The raw bit patterns of a float tensor, one bigint per element (float32 widened as u32). */
function bitsOf(t: Tensor): bigint[] {
  const d = t.data;
  if (d instanceof Float32Array) return [...new Uint32Array(d.buffer, d.byteOffset, d.length)].map(BigInt);
  if (d instanceof Float64Array) return [...new BigUint64Array(d.buffer, d.byteOffset, d.length)];
  throw new Error(`expected a float tensor, got ${t.dtype}`);
}

/** Assert two float tensors have the same dtype, dims and bits, naming the first mismatch. */
function assertSameBits(actual: Tensor, expected: Tensor, what: string): void {
  assert.equal(actual.dtype, expected.dtype, `${what}: dtype`);
  assert.deepEqual([...actual.dims], [...expected.dims], `${what}: dims`);
  const a = bitsOf(actual);
  const e = bitsOf(expected);
  const i = a.findIndex((bits, k) => bits !== e[k]);
  if (i >= 0) {
    const mismatches = a.filter((bits, k) => bits !== e[k]).length;
    assert.fail(
      `${what}: ${mismatches} of ${a.length} elements differ; first at ${i}: ` +
        `got ${actual.data[i]} (0x${at(a, i).toString(16)}), want ${expected.data[i]} (0x${e[i]?.toString(16)})`,
    );
  }
}

describe('MT19937', () => {
  for (const c of casesOf('mt19937_raw_u32')) {
    test(`${c.name}: first 1000 raw outputs`, () => {
      const expected = tensors.read(c.output).data as BigInt64Array;
      assert.equal(expected.length, 1000);
      const seed = BigInt(c.seed_str!);
      assert.equal(Number(BigInt.asUintN(32, seed)), c.seed_low32);
      const mt = new MT19937(Number(BigInt.asUintN(32, seed)));
      for (let i = 0; i < expected.length; i++) {
        assert.equal(BigInt(mt.nextUint32()), expected[i], `output ${i}`);
      }
    });
  }
});

describe('torch call sequences (seq_seed_*)', () => {
  for (const c of casesOf('torch_rng_sequence')) {
    test(`${c.name}: ${c.calls!.length} calls on one generator`, () => {
      const g = new Generator().manualSeed(BigInt(c.seed_str!));
      for (const call of c.calls!) {
        const opts = { dtype: call.dtype };
        const got = call.op === 'randn' ? g.randn(call.shape, opts) : g.rand(call.shape, opts);
        assertSameBits(got, tensors.read(call.output), `${call.output} [${call.kernel_path}]`);
      }
    });
  }

  test('a seed given as a number matches the same seed as a bigint', () => {
    const a = new Generator().manualSeed(2 ** 32 + 5).randn([40]);
    const b = new Generator().manualSeed(5n).randn([40]);
    assertSameBits(a, b, 'seed 2^32+5 vs 5');
    assert.equal(new Generator(2 ** 32 + 5).initialSeed(), 4294967301n);
  });
});

describe('diffusers randn_tensor', () => {
  for (const c of casesOf('diffusers_randn_tensor')) {
    test(`${c.name}: one generator`, () => {
      const g = new Generator().manualSeed(BigInt(c.seed_str!));
      assertSameBits(randnTensor(c.shape!, { generator: g }), tensors.read(c.output), c.name);
    });
  }

  for (const c of casesOf('diffusers_randn_tensor_list')) {
    test(`${c.name}: one generator per batch item`, () => {
      const gens = c.seeds_str!.map((s) => new Generator().manualSeed(BigInt(s)));
      assertSameBits(randnTensor(c.shape!, { generator: gens }), tensors.read(c.output), c.name);
    });
  }

  test('a generator list of the wrong length throws InputError', () => {
    const gens = [new Generator(1), new Generator(2), new Generator(3)];
    assert.throws(() => randnTensor([2, 4, 8, 8], { generator: gens }), InputError);
    assert.throws(() => randnTensor([], { generator: [] }), InputError);
  });
});

describe('Generator behaviour', () => {
  test('two generators with the same seed are independent objects with identical streams', () => {
    const a = new Generator(42);
    const b = new Generator(42);
    assert.notEqual(a, b);
    // Drain `a` first: `b` must be untouched by it and then replay the same values.
    const fromA = [a.randn([3]), a.randn([100]), a.rand([7]), a.randn([5], { dtype: 'float64' })];
    const fromB = [b.randn([3]), b.randn([100]), b.rand([7]), b.randn([5], { dtype: 'float64' })];
    fromA.forEach((t, i) => assertSameBits(at(fromB, i), t, `call ${i}`));
  });

  test('manualSeed restarts the stream and drops the cached normal', () => {
    const g = new Generator(7);
    const first = g.randn([1]); // leaves the sine half cached
    g.manualSeed(7);
    assertSameBits(g.randn([1]), first, 'after reseeding');
  });

  test('the free functions use a fresh default-seeded generator per call', () => {
    const g = new Generator();
    assert.equal(g.initialSeed(), 67280421310721n);
    assertSameBits(randn([20]), g.randn([20]), 'randn default seed');
    assertSameBits(randn([20]), randn([20]), 'randn is repeatable without a generator');
    assertSameBits(rand([5], { dtype: 'float64' }), new Generator().rand([5], { dtype: 'float64' }), 'rand');
    const g2 = new Generator(3);
    assertSameBits(randn([4], { generator: g2 }), new Generator(3).randn([4]), 'randn with generator');
  });

  test('empty shapes draw nothing; bad shapes, seeds and dtypes throw InputError', () => {
    const g = new Generator(9);
    assert.equal(g.randn([0, 3]).size, 0);
    assert.deepEqual([...g.randn([]).dims], []);
    assertSameBits(new Generator(9).randn([0]).reshape([0]), g.randn([0]), 'empty');
    for (const bad of [[-1], [1.5], [Number.NaN], [2 ** 60, 2 ** 60]]) {
      assert.throws(() => g.randn(bad), InputError, `shape ${String(bad)}`);
    }
    assert.throws(() => g.manualSeed(0.5), InputError);
    assert.throws(() => g.manualSeed(2n ** 64n), InputError);
    assert.equal(g.manualSeed(-1n).initialSeed(), 2n ** 64n - 1n);
    // @ts-expect-error: a runtime check for JavaScript callers
    assert.throws(() => g.randn([2], { dtype: 'float16' }), InputError);
  });

  test('1M float32 normals (timing printed, not asserted)', () => {
    const g = new Generator(0);
    g.randn([1 << 16]); // warm up the JIT
    const t0 = performance.now();
    const t = g.randn([1, 4, 512, 512]);
    const ms = performance.now() - t0;
    console.log(`randn 1,048,576 float32: ${ms.toFixed(1)} ms`);
    let sum = 0;
    let sq = 0;
    for (const v of t.data) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / t.size;
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(sq / t.size - 1) < 0.01, `variance ${sq / t.size}`);
  });
});

describe('fma32', () => {
  // One 4-byte scratch word read as float32 or int32 (same byte order both ways).
  const word = new DataView(new ArrayBuffer(4));
  /** The float32 value `steps` representable values away from x (x finite and non-zero). */
  function stepF32(x: number, steps: number): number {
    word.setFloat32(0, x);
    word.setInt32(0, word.getInt32(0) + (x > 0 ? steps : -steps));
    return word.getFloat32(0);
  }
  function hasEvenMantissa(x: number): boolean {
    word.setFloat32(0, x);
    return (word.getInt32(0) & 1) === 0;
  }
  /** x * 2^149 as a bigint: exact for any float32 x. */
  const scaled = (x: number): bigint => BigInt(x * 2 ** 149);
  /** Assert r is a correctly rounded (ties-to-even) float32 of a*b + c, using exact integers. */
  function assertCorrectlyRounded(a: number, b: number, c: number): void {
    const r = fma32(a, b, c);
    const exact = scaled(a) * scaled(b) + (scaled(c) << 149n);
    const dist = (v: number): bigint => {
      const d = exact - (scaled(v) << 149n);
      return d < 0n ? -d : d;
    };
    const where = `fma32(${a}, ${b}, ${c}) = ${r}`;
    if (r === 0) return assert.equal(exact, 0n, where);
    const dr = dist(r);
    for (const n of [stepF32(r, -1), stepF32(r, 1)]) {
      const dn = dist(n);
      assert.ok(dr < dn || (dr === dn && hasEvenMantissa(r)), `${where}: ${n} is at least as close`);
    }
  }

  test('resolves ties the double sum creates (double rounding)', () => {
    // p = 2^6 - 2^-40 and c = 2^30 + 2^7: the double sum is the tie 2^30 + 3·2^6, which rounds
    // up to even, but the exact sum is below it.
    const a = Math.fround(1 + 2 ** -23);
    const b = Math.fround(2 ** 6 * (1 - 2 ** -23));
    assert.equal(fma32(a, b, 2 ** 30 + 2 ** 7), 2 ** 30 + 2 ** 7);
    assert.equal(fma32(-a, -b, -(2 ** 30 + 2 ** 7)), -(2 ** 30 + 2 ** 7));
    assertCorrectlyRounded(a, b, 2 ** 30 + 2 ** 7);
    assertCorrectlyRounded(a, b, 2 ** 30);
  });

  test('is correctly rounded on random float32 inputs', () => {
    const u = new Generator(123).rand([3 * 20000]).data;
    for (let i = 0; i < u.length; i += 3) {
      // Spread magnitudes over a few binades so that cancellation and carries both occur.
      const a = Math.fround((at(u, i) - 0.5) * 2 ** ((i % 7) - 3));
      const b = Math.fround((at(u, i + 1) - 0.5) * 2 ** ((i % 5) - 2));
      const c = Math.fround((at(u, i + 2) - 0.5) * 2 ** ((i % 11) - 6));
      assertCorrectlyRounded(a, b, c);
    }
  });
});

describe('libm64 (correctly rounded double log/sin/cos)', () => {
  // Inputs where V8's Math.log/sin/cos round the other way; expected values are the correctly
  // rounded results (checked with mpmath), which glibc's log/sin/cos also return.
  const cases: [string, (x: number) => number, number, number][] = [
    ['log', log64, 0.6225327289306379, -0.4739590754299728],
    ['log', log64, 0.6255137054534564, -0.46918203811864495],
    ['sin', sin64, 0.8233136517899013, 0.7334024550221644],
    ['sin', sin64, 5.271520810242239, -0.8477159516563167],
    ['cos', cos64, 5.2943308121759305, 0.5496471723173512],
    ['cos', cos64, 2.579194115792763, -0.8459786049408636],
  ];
  for (const [name, fn, x, want] of cases) {
    test(`${name}(${x})`, () => assert.equal(fn(x), want));
  }

  test('exact and special values', () => {
    assert.ok(Object.is(log64(1), 0));
    assert.equal(log64(0.5), -Math.LN2);
    assert.equal(log64(0), -Infinity);
    assert.ok(Number.isNaN(log64(-1)));
    assert.ok(Object.is(sin64(0), 0));
    assert.equal(cos64(0), 1);
  });
});
