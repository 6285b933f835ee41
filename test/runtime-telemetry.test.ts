/**
 * onnxruntime's usage telemetry is off unless asked for, and importing the library loads no native
 * code and changes no environment. Each case runs a session in a child process whose home, cache
 * and current folders are empty temporary folders, then looks at what onnxruntime left there.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { runNodeScript } from './helpers.js';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** A child that imports the library, then opens and runs one session; it prints what it saw. */
const CHILD = `
const { readFileSync } = await import('node:fs');
const maps = () => (process.platform === 'linux' ? readFileSync('/proc/self/maps', 'utf8') : '');
const before = process.env.ORT_DISABLE_TELEMETRY ?? '(unset)';
const lib = await import(${JSON.stringify(join(SRC, 'index.ts'))});
const afterImport = { env: process.env.ORT_DISABLE_TELEMETRY ?? '(unset)', nativeLoaded: maps().includes('libonnxruntime') };
const m = { irVersion: 10, opsets: [{ domain: '', version: 21 }], producerName: 't', graph: { name: 'g',
  nodes: [{ name: 'n', opType: 'Relu', inputs: ['x'], outputs: ['y'] }], initializers: [],
  inputs: [{ name: 'x', type: { elemType: 1, shape: [2] } }], outputs: [{ name: 'y', type: { elemType: 1, shape: [2] } }] } };
const s = await lib.ModelSession.create(m);
const y = await s.run({ x: { data: Float32Array.of(-1, 2), dims: [2] } });
await s.release();
console.log(JSON.stringify({ before, afterImport, afterSession: { env: process.env.ORT_DISABLE_TELEMETRY ?? '(unset)', nativeLoaded: maps().includes('libonnxruntime') }, y: [...y.y.data] }));
`;

interface Sandbox {
  home: string;
  cache: string;
  cwd: string;
}

function sandbox(t: TestContext): Sandbox {
  const root = mkdtempSync(join(tmpdir(), 'cnxs-telemetry-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const s = { home: join(root, 'home'), cache: join(root, 'cache'), cwd: join(root, 'cwd') };
  for (const d of Object.values(s)) mkdirSync(d);
  return s;
}

/** Every file and folder under `dir`, relative to it. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((p) => relative(dir, join(dir, p)))
    .sort();
}

/** The variables by which onnxruntime 1.30's telemetry recognises a CI machine (and then stays off). */
const CI_VARIABLES = ['CI', 'TF_BUILD', 'GITHUB_ACTIONS', 'GITLAB_CI', 'CIRCLECI', 'TRAVIS', 'JENKINS_URL', 'CODEBUILD_BUILD_ID', 'BUILDKITE', 'TEAMCITY_VERSION', 'APPVEYOR', 'BITBUCKET_BUILD_NUMBER'];

async function runChild(box: Sandbox, env: Record<string, string>): Promise<{ before: string; afterImport: { env: string; nativeLoaded: boolean }; afterSession: { env: string; nativeLoaded: boolean }; y: number[] }> {
  const base = { ...process.env };
  delete base['ORT_DISABLE_TELEMETRY'];
  // onnxruntime records nothing when it sees a CI service's variable (its own list, read from the native library);
  // the children stand for a user's machine, so CI runs of this test must hide them
  for (const name of CI_VARIABLES) delete base[name];
  const { exit, stdout, stderr } = await runNodeScript(CHILD, { cwd: box.cwd, env: { ...base, HOME: box.home, XDG_CACHE_HOME: box.cache, ...env } });
  assert.equal(exit, 0, stderr);
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

test('by default onnxruntime writes no telemetry database, and importing the library loads nothing native', async (t) => {
  const box = sandbox(t);
  const r = await runChild(box, {});
  assert.deepEqual(r.y, [0, 2]);
  assert.equal(r.before, '(unset)');
  assert.deepEqual(r.afterImport.env, '(unset)', 'importing the library changes no environment');
  assert.equal(r.afterSession.env, '1', 'the first session turned telemetry off');
  if (process.platform === 'linux') {
    assert.equal(r.afterImport.nativeLoaded, false, 'onnxruntime is loaded on the first session, not at import');
    assert.equal(r.afterSession.nativeLoaded, true);
  }
  assert.deepEqual(tree(box.home), []);
  assert.deepEqual(tree(box.cache), []);
  assert.deepEqual(tree(box.cwd), []);
});

test('with its cache folder unwritable, onnxruntime leaves no ":memory:.ses" file in the current folder', async (t) => {
  const box = sandbox(t);
  writeFileSync(join(box.cache, 'not-a-folder'), '');
  await runChild(box, { XDG_CACHE_HOME: join(box.cache, 'not-a-folder') });
  assert.deepEqual(tree(box.cwd), []);
  // what it does when telemetry is on (onnxruntime-node 1.30 on Linux)
  const on = sandbox(t);
  writeFileSync(join(on.cache, 'not-a-folder'), '');
  await runChild(on, { XDG_CACHE_HOME: join(on.cache, 'not-a-folder'), ORT_DISABLE_TELEMETRY: '0' });
  assert.deepEqual(tree(on.cwd), [':memory:.ses']);
});

test('ORT_DISABLE_TELEMETRY=0 opts back in: onnxruntime then records into its database', async (t) => {
  const box = sandbox(t);
  const r = await runChild(box, { ORT_DISABLE_TELEMETRY: '0' });
  assert.equal(r.afterSession.env, '0', "the user's choice is kept");
  // This is what the default prevents (measured with onnxruntime-node 1.30 on Linux; a build without
  // telemetry would write nothing, and this test would say so).
  assert.ok(tree(box.cache).includes(join('Microsoft', 'DeveloperTools', '.onnxruntime', 'onnxruntime.db')), tree(box.cache).join('\n'));
  assert.deepEqual(tree(box.cwd), []);
});
