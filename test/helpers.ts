/**
 * Shared test helpers: fixture paths, temporary folders and whole-tensor comparison.
 * Fixtures live in test/fixtures/ (copied from ../shared/reference; see test/fixtures/README.md).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OnnxDataType, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from '../src/graph/onnx-proto.js';
import { Tensor, type TensorLike } from '../src/tensor.js';
import type { UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

/**
 * A new, empty folder in the OS temp dir (`$TMPDIR`) whose name starts with `prefix`, removed with
 * everything in it when the scope it was made in ends — node:test's `after`, so: at a file's top level,
 * when the file's tests are done; in a `describe` body, after that suite; inside a test, after that test.
 * `npm test` then leaves nothing behind.
 *
 * Not from inside a `before`/`beforeEach` hook: node:test attaches an `after` registered there to the
 * hook itself, which would remove the folder as soon as the hook returns. Make it at the top level
 * (`const tmp = tempDir('cnxs-x-')`) or in the test instead.
 */
export function tempDir(prefix = 'cnxs-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Largest |a - b| over whole tensors, after checking dims match. NaN counts as infinitely far. */
export function maxAbsDiff(actual: TensorLike, expected: TensorLike): number {
  assert.deepEqual([...actual.dims], [...expected.dims], 'dims differ');
  const a = actual.data;
  const b = expected.data;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(Number(a[i]) - Number(b[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Assert two whole tensors agree within `atol`, reporting the worst element. */
export function assertClose(actual: TensorLike, expected: TensorLike, atol: number, what = 'tensor'): void {
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= atol, `${what}: max abs diff ${d.toExponential(3)} exceeds ${atol.toExponential(3)}`);
}

/** Every node of a graph, those inside `If` branches (and any other subgraph attribute) included. */
export function allNodes(graph: GraphProto): NodeProto[] {
  return graph.nodes.flatMap((n) => [
    n,
    ...Object.values(n.attributes ?? {}).flatMap((a) => (typeof a === 'object' && a !== null && 'graph' in a ? allNodes(a.graph) : [])),
  ]);
}

/** A one-node float32 ONNX model `y = op(x[, w])` over fixed shapes, for runtime tests that need a real session. */
export function oneNodeModel(o: {
  name: string;
  opType: string;
  shape: number[];
  outShape?: number[];
  initializers?: TensorProto[];
}): ModelProto {
  const value = (name: string, shape: number[]) => ({ name, type: { elemType: OnnxDataType.FLOAT, shape } });
  const inits = o.initializers ?? [];
  // an initializer named `w` is the node's second input; others stay unused (a graph with weights but no use of them)
  const inputs = inits.some((t) => t.name === 'w') ? ['x', 'w'] : ['x'];
  return {
    irVersion: 10,
    opsets: [{ domain: '', version: 21 }],
    producerName: 'test',
    graph: {
      name: o.name,
      nodes: [{ name: 'n', opType: o.opType, inputs, outputs: ['y'] }],
      initializers: inits,
      inputs: [value('x', o.shape)],
      outputs: [value('y', o.outShape ?? o.shape)],
    },
  };
}

/**
 * Run an ES module `code` in a child Node process (TypeScript through tsx), killed after `timeoutMs`:
 * its exit code, stdout and stderr.
 */
export async function runNodeScript(
  code: string,
  o: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ exit: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', code], {
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.env ? { env: o.env } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
  const exit = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { exit, stdout, stderr };
}

/** Rows of a batch-1 tensor repeated to `batch` (a stored controlnet_cond of batch 1 serves both CFG rows). */
export function repeatRows(t: Tensor, batch: number): Tensor {
  if (t.dims[0] === batch) return t;
  const d = t.data as Float32Array;
  const out = new Float32Array(d.length * batch);
  for (let i = 0; i < batch; i++) out.set(d, i * d.length);
  return new Tensor('float32', out, [batch, ...t.dims.slice(1)]);
}

/** An adapters-reference module case's UNet inputs (tensor names read through `read`) as forward args. */
export function unetCaseArgs(inputs: Readonly<Record<string, unknown>>, read: (name: string) => Tensor): UNetControlNetXSForwardArgs {
  const sample = read(inputs['sample'] as string);
  const added = inputs['added_cond_kwargs'] as Record<string, string> | undefined;
  return {
    sample,
    timestep: inputs['timestep'] as number,
    encoderHiddenStates: read(inputs['encoder_hidden_states'] as string),
    ...(inputs['controlnet_cond'] !== undefined ? { controlnetCond: repeatRows(read(inputs['controlnet_cond'] as string), sample.dims[0]!) } : {}),
    ...(inputs['conditioning_scale'] !== undefined ? { conditioningScale: inputs['conditioning_scale'] as number } : {}),
    ...(inputs['apply_control'] !== undefined ? { applyControl: inputs['apply_control'] as boolean } : {}),
    ...(added ? { addedCondKwargs: { textEmbeds: read(added['text_embeds']!), timeIds: read(added['time_ids']!) } } : {}),
  };
}
