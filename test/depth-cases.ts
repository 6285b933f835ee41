/**
 * The depth reference folders as the depth tests read them (test/fixtures/depth, the shared transformers
 * 4.44 reference, and test/fixtures/depth-heldout): each folder's `cases.json` and its tensors, and the
 * 8-bit tolerance their READMEs give.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture } from './helpers.js';

/** The fields every case of both folders has; a test widens it with the ones it reads. */
export interface DepthCase {
  readonly name: string;
  /** The model folder, relative to the reference folder. */
  readonly model: string;
  /** The input image, relative to the reference folder. */
  readonly image_file: string;
  /** The input image's [height, width]. */
  readonly size_hw: [number, number];
  /** Tensor role (`pixel_values`, `depth_u8`, …) → its name in `tensors.safetensors`. */
  readonly tensors: Readonly<Record<string, string>>;
}

export interface DepthReference<C extends DepthCase> {
  /** The fixture folder. */
  readonly dir: string;
  readonly cases: readonly C[];
  /** Case `c`'s tensor `role`; a role the case lacks fails naming the case. */
  read(c: C, role: string): Tensor;
  /** Case `c`'s uint8 tensor `role` (an image's bytes); another dtype fails naming the case. */
  bytes(c: C, role: string): Uint8Array;
}

/** One reference folder under test/fixtures: its cases and a reader of their tensors. */
export function depthReference<C extends DepthCase = DepthCase>(folder: 'depth' | 'depth-heldout'): DepthReference<C> {
  const dir = fixture(folder);
  const file = loadSafetensorsSync(join(dir, 'tensors.safetensors'));
  const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as C[];
  const read = (c: C, role: string): Tensor => {
    const name = c.tensors[role];
    if (name === undefined) throw new Error(`${folder}/cases.json: case ${c.name} has no tensor "${role}"`);
    return file.read(name);
  };
  return {
    dir,
    cases,
    read,
    bytes(c, role) {
      const t = read(c, role);
      if (t.dtype !== 'uint8') throw new Error(`${folder}: case ${c.name}'s "${role}" is ${t.dtype}, not uint8`);
      return t.data as Uint8Array;
    },
  };
}

/** A `warn` option that fails the test: the reference configs must parse without a warning. */
export const noWarn = { warn: (m: string): never => assert.fail(`unexpected warning: ${m}`) };

/**
 * uint8 images: exact, or off by one on at most 0.1 % of the bytes — the references' allowance for a
 * value that lands on a truncation boundary (`* 255 / max` then numpy's cast) one float step apart.
 */
export function assertBytesNear(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let off = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    assert.ok(d <= 1, `${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    if (d) off++;
  }
  assert.ok(off <= actual.length * 0.001, `${what}: ${off} of ${actual.length} bytes off by one (over 0.1 %)`);
}
