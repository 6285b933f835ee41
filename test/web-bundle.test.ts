/**
 * The browser bundle as built by scripts/build-web.mjs: one ESM file a page can import() straight
 * from a static server (no bare imports, no Node built-ins), onnxruntime-web's files next to it, and
 * each `.browser.ts` twin exporting at least what the Node module it replaces exports.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { tempDir } from './helpers.js';
// @ts-expect-error: a plain ES module without types
import { buildWeb, ORT_FILES } from '../scripts/build-web.mjs';

const out = join(tempDir('cnxs-web-bundle-'), 'web');
let code = '';
let sizes: Record<string, number> = {};

before(async () => {
  ({ sizes } = (await buildWeb(out)) as { sizes: Record<string, number> });
  code = readFileSync(join(out, 'index.js'), 'utf8');
});

test('index.js imports nothing by bare name and holds no Node built-in', () => {
  const staticImports = [...code.matchAll(/(?:^|[;\s}])(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']/g)].map((m) => m[1]);
  assert.deepEqual(staticImports, [], 'a bundle has no static imports at all');
  const literalImports = [...code.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
  assert.deepEqual(literalImports, []);
  // The only "node:" left is onnxruntime-web's own Node branch (its thread count when `navigator` is undefined,
  // never taken in a browser), which calls esbuild's require shim.
  const nodeSpecifiers = [...code.matchAll(/["'`]node:([\w/]+)["'`]/g)].map((m) => m[1]);
  assert.deepEqual(nodeSpecifiers, ['os']);
  assert.match(code, /typeof navigator>"u"\?\w+\("node:os"\)/);
  for (const name of ['onnxruntime-node', 'sharp', 'bullmq', 'ioredis']) assert.doesNotMatch(code, new RegExp(`from\\s*["']${name}["']|require\\(["']${name}["']\\)`));
});

test("onnxruntime-web's wasm files lie next to the bundle; sizes", () => {
  for (const f of ORT_FILES as string[]) assert.ok(existsSync(join(out, f)), f);
  assert.deepEqual(readdirSync(out).filter((f) => !f.endsWith('.LEGAL.txt')).sort(), ['index.js', ...(ORT_FILES as string[])].sort());
  console.log(Object.entries(sizes).map(([f, n]) => `${f} ${(n / 1e6).toFixed(2)} MB`).join(', '));
  // A bound that catches a Node dependency or a second copy of onnxruntime being pulled in (today ~0.8 MB).
  assert.ok(sizes['index.js']! < 2e6, `index.js is ${sizes['index.js']} bytes`);
});

test('every browser twin exports what its Node module exports', async () => {
  const twins = ['platform/files', 'runtime/onnxruntime', 'image/load', 'hub/pretrained'];
  for (const t of twins) {
    const nodeModule = (await import(`../src/${t}.js`)) as Record<string, unknown>;
    const browserModule = (await import(`../src/${t}.browser.js`)) as Record<string, unknown>;
    const missing = Object.keys(nodeModule).filter((k) => !(k in browserModule));
    assert.deepEqual(missing, [], `src/${t}.browser.ts lacks`);
  }
});
