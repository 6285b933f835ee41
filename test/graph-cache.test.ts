/**
 * The optimized-graph cache: a second session loads the saved graph, gives the same numbers, and
 * changed weights miss. A cache that cannot be used costs one warning, never the session; a broken
 * entry is written again; temporary folders of killed runs are removed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { OnnxDataType, type ModelProto } from '../src/graph/onnx-proto.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { CACHED_MODEL, GraphCache, makeDirectories } from '../src/runtime/graph-cache.js';
import { ModelSession, type RuntimeOptions } from '../src/runtime/session.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture, oneNodeModel } from './helpers.js';

/** A temporary folder removed when the test ends. */
function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** y = x · W with a 64 KB inline weight, so the cached graph has a data file of that size. */
function matmul(name: string): ModelProto {
  const w = new Float32Array(128 * 128).map((_, i) => (i % 7) - 3);
  return oneNodeModel({
    name,
    opType: 'MatMul',
    shape: [1, 128],
    initializers: [{ name: 'w', dataType: OnnxDataType.FLOAT, dims: [128, 128], raw: new Uint8Array(w.buffer) }],
  });
}

/** Open, run once (y[0] = Σ W[:, 0] = -12 for x = 1), release. */
async function runOnce(name: string, options: RuntimeOptions): Promise<{ fromCache: boolean }> {
  const s = await ModelSession.create(matmul(name), options);
  const y = (await s.run({ x: { data: new Float32Array(128).fill(1), dims: [1, 128] } }))['y']!;
  assert.equal(y.data[0], [...Array(128).keys()].reduce((a, r) => a + (((r * 128) % 7) - 3), 0));
  await s.release();
  return { fromCache: s.fromCache };
}

/**
 * Run `code` (an ES module that may import this repository's .ts files by absolute path) in a child
 * process; a hang is killed after `timeoutMs` and reported as such.
 */
function runChild(code: string, o: { timeoutMs: number; shell?: string }): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const loader = import.meta.resolve('tsx');
  const args = ['--import', loader, '--input-type=module', '-e', code];
  const child = o.shell
    ? spawn('bash', ['-c', `${o.shell}; exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

test('optimized graphs are cached on disk, reused, and invalidated when weights change', async (t) => {
  const D = fixture('tiny-sd-cnxs');
  const dir = tempDir(t, 'cnxs-cache-');
  cpSync(D, join(dir, 'model'), { recursive: true, filter: (p) => !p.includes('pipeline') && !p.includes('text_encoder') });
  const cache = join(dir, 'graphs');
  const ref = loadSafetensorsSync(join(D, 'reference', 'tensors.safetensors'));
  const feeds = {
    sample: ref.read('inputs.sample'),
    timestep: ref.read('inputs.timestep_batch'),
    encoder_hidden_states: ref.read('inputs.encoder_hidden_states'),
    controlnet_cond: ref.read('inputs.controlnet_cond'),
    conditioning_scale: 1,
    apply_control: true,
  };
  const timestep = { data: Float32Array.from([999, 10]), dims: [2] };
  const build = async () => {
    const unet = await UNet2DConditionModel.fromPretrained(join(dir, 'model', 'unet'));
    return UNetControlNetXSModel.fuse(unet, await ControlNetXSAdapter.fromPretrained(join(dir, 'model', 'controlnet'))).toOnnx();
  };
  const warn = (m: string) => assert.fail(`unexpected warning: ${m}`);
  const first = await ModelSession.create(await build(), { graphCacheDir: cache, warn });
  assert.equal(first.fromCache, false);
  const a = (await first.run({ ...feeds, timestep }))['out_sample']!;
  assertClose(a, ref.read('unet_cnxs_forward_tbatch_s1.sample'), 1e-4, 'first session');
  assert.equal(readdirSync(cache).length, 1, 'one entry, no temporary folders left');

  const second = await ModelSession.create(await build(), { graphCacheDir: cache, warn });
  assert.equal(second.fromCache, true, 'the second session loads the cached graph');
  assertClose((await second.run({ ...feeds, timestep }))['out_sample']!, a, 0, 'cached graph');

  const later = new Date(Date.now() + 5000);
  utimesSync(join(dir, 'model', 'unet', 'diffusion_pytorch_model.safetensors'), later, later);
  const third = await ModelSession.create(await build(), { graphCacheDir: cache, warn });
  assert.equal(third.fromCache, false, 'changed weights miss the cache');
  assert.equal(readdirSync(cache).length, 2);
  await Promise.all([first.release(), second.release(), third.release()]);
});

test('only CPU sessions use the cache (a WebGPU session opens without it; after a fallback the CPU one caches)', async (t) => {
  const D = fixture('tiny-sd-cnxs');
  const cache = tempDir(t, 'cnxs-cache-ep-');
  const model = (await UNet2DConditionModel.fromPretrained(join(D, 'unet'))).toOnnx();
  const s = await ModelSession.create(model, { graphCacheDir: cache, executionProviders: ['webgpu', 'cpu'], onDeviceFallback: () => {} });
  assert.equal(s.fromCache, false);
  assert.equal(readdirSync(cache).length, s.executionProvider === 'cpu' ? 1 : 0);
  await s.release();
});

test('a cache folder that cannot be created costs one warning for every model sharing it, and the models run', async (t) => {
  const dir = tempDir(t, 'cnxs-cache-bad-');
  writeFileSync(join(dir, 'a-file'), '');
  const root = join(dir, 'a-file', 'graphs'); // under a regular file: ENOTDIR, whoever runs the test (root included)

  const shared: string[] = [];
  const cache = new GraphCache(root);
  for (const name of ['text_encoder', 'unet', 'vae']) {
    assert.deepEqual(await runOnce(name, { graphCache: cache, warn: (m) => shared.push(m) }), { fromCache: false });
  }
  assert.equal(shared.length, 1, shared.join('\n'));
  assert.match(shared[0]!, /^graph cache .*a-file\/graphs: cannot write there \(ENOTDIR: not a directory, mkdir .*\); running without it$/);
  assert.match(cache.writeProblem ?? '', /ENOTDIR/);

  // `graphCacheDir` is a cache per session: one warning per model.
  const each: string[] = [];
  for (const name of ['text_encoder', 'unet']) await runOnce(name, { graphCacheDir: root, warn: (m) => each.push(m) });
  assert.equal(each.length, 2);
});

test('a cache folder under /proc fails at once instead of spinning in mkdir', { skip: process.platform !== 'linux' }, async () => {
  const started = Date.now();
  assert.throws(() => makeDirectories('/proc/cnxs-nope/graphs'), /ENOENT/);
  assert.ok(Date.now() - started < 1000);
  // Through a session, in a child process: Node's recursive mkdir never returns there, so a regression
  // must be a killed child, not a hung test run.
  const r = await runChild(
    `const { ModelSession } = await import(${JSON.stringify(join(SRC, 'runtime', 'session.ts'))});
     const m = { irVersion: 10, opsets: [{ domain: '', version: 21 }], producerName: 't', graph: { name: 'g',
       nodes: [{ name: 'n', opType: 'Relu', inputs: ['x'], outputs: ['y'] }], initializers: [],
       inputs: [{ name: 'x', type: { elemType: 1, shape: [2] } }], outputs: [{ name: 'y', type: { elemType: 1, shape: [2] } }] } };
     const s = await ModelSession.create(m, { graphCacheDir: '/proc/cnxs-nope', warn: (w) => console.log('WARN ' + w) });
     console.log('ran ' + s.executionProvider);`,
    { timeoutMs: 30_000 },
  );
  assert.equal(r.signal, null, 'the child hung and was killed');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^WARN graph cache \/proc\/cnxs-nope: cannot write there \(ENOENT.*\); running without it\nran cpu\n$/);
});

test('when onnxruntime cannot write the optimized graph (a full disk), the session opens without the cache', { skip: process.platform !== 'linux' }, async (t) => {
  const dir = tempDir(t, 'cnxs-cache-full-');
  // A 32 KB file size limit makes onnxruntime's write of the 64 KB data file fail as a full disk would.
  const r = await runChild(
    `process.on('SIGXFSZ', () => {}); // the limit's signal would kill the process; ignored, the write fails with EFBIG
     const { ModelSession } = await import(${JSON.stringify(join(SRC, 'runtime', 'session.ts'))});
     const { GraphCache } = await import(${JSON.stringify(join(SRC, 'runtime', 'graph-cache.ts'))});
     const w = new Float32Array(128 * 128).fill(1);
     const m = (name) => ({ irVersion: 10, opsets: [{ domain: '', version: 21 }], producerName: 't', graph: { name,
       nodes: [{ name: 'n', opType: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
       initializers: [{ name: 'w', dataType: 1, dims: [128, 128], raw: new Uint8Array(w.buffer) }],
       inputs: [{ name: 'x', type: { elemType: 1, shape: [1, 128] } }], outputs: [{ name: 'y', type: { elemType: 1, shape: [1, 128] } }] } });
     const cache = new GraphCache(${JSON.stringify(join(dir, 'graphs'))});
     for (const name of ['a', 'b']) {
       const s = await ModelSession.create(m(name), { graphCache: cache, warn: (x) => console.log('WARN ' + x) });
       const y = await s.run({ x: { data: new Float32Array(128).fill(1), dims: [1, 128] } });
       console.log(name + ' ' + y.y.data[0] + ' ' + s.fromCache);
     }`,
    { timeoutMs: 60_000, shell: 'ulimit -f 32' },
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 3, r.stdout);
  assert.match(lines[0]!, /^WARN graph cache .*graphs: could not save an optimized graph \(Failed to write external initializers to file: .*\); running without it$/);
  assert.deepEqual(lines.slice(1), ['a 128 false', 'b 128 false']);
  assert.deepEqual(readdirSync(join(dir, 'graphs')), [], 'no entry and no temporary folder left');
});

test('an entry that does not load is reported once and written again; a lost file is replaced quietly', async (t) => {
  const root = tempDir(t, 'cnxs-cache-corrupt-');
  const quiet = { graphCacheDir: root, warn: (m: string) => assert.fail(`unexpected warning: ${m}`) };
  await runOnce('m', quiet);
  const [entry] = readdirSync(root);
  writeFileSync(join(root, entry!, CACHED_MODEL), 'not a protobuf');

  const warnings: string[] = [];
  assert.deepEqual(await runOnce('m', { graphCacheDir: root, warn: (m) => warnings.push(m) }), { fromCache: false });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^m: ignoring the cached optimized graph in .*, which did not load \(.*Protobuf parsing failed.*\)$/);
  assert.deepEqual(await runOnce('m', quiet), { fromCache: true }, 'the entry was written again in the same run');

  rmSync(join(root, entry!, 'model.data'));
  assert.deepEqual(await runOnce('m', quiet), { fromCache: false });
  assert.deepEqual(await runOnce('m', quiet), { fromCache: true });
  assert.deepEqual(readdirSync(root), [entry]);
});

test("temporary folders of writers that are gone are removed; a live writer's folder is kept", async (t) => {
  const root = tempDir(t, 'cnxs-cache-tmp-');
  // a pid that surely is not running: a child that has exited
  const gone = await new Promise<number>((resolve) => {
    const c = spawn(process.execPath, ['-e', '']);
    c.on('close', () => resolve(c.pid!));
  });
  const now = Date.now();
  const live = [`x-1.tmp-${process.pid}-${now}-00ff`, `x-2.tmp-${process.ppid}-${now}`];
  const stale = [
    `x-3.tmp-${gone}-${now}-00ff`, // killed
    `x-4.tmp-${process.ppid}-${now - 2 * 24 * 3600 * 1000}-00ff`, // alive pid, but two days old
    `x-5.tmp-${process.pid}-${Math.round(now - (process.uptime() + 60) * 1000)}-00ff`, // our pid, from before this process started
  ];
  for (const n of [...live, ...stale]) mkdirSync(join(root, n));
  assert.ok(!existsSync(`/proc/${gone}`) || process.platform !== 'linux');

  await runOnce('m', { graphCacheDir: root });
  const left = readdirSync(root).sort();
  assert.deepEqual(left.filter((n) => n.includes('.tmp-')), [...live].sort());
  assert.equal(left.filter((n) => !n.includes('.tmp-')).length, 1, 'the new entry');
});
