/**
 * The layering of docs/architecture.md ("Layering"), checked on every import in src/ (type-only
 * imports and re-exports included: they couple layers just the same). Each layer names the layers
 * it may import; every one of those sits earlier in the order, so no layer imports upward.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/** Layers, lowest first, with what each may import besides itself (the table in docs/architecture.md). */
const LAYERS = [
  { name: 'core', paths: ['tensor.ts', 'errors.ts'], mayImport: [] },
  // The file and runtime seam that differs between the Node and browser builds (files.ts / files.browser.ts).
  { name: 'platform', paths: ['platform/'], mayImport: ['core'] },
  { name: 'util', paths: ['util/'], mayImport: ['core', 'platform'] },
  { name: 'weights', paths: ['weights/'], mayImport: ['core', 'platform', 'util'] },
  { name: 'random', paths: ['random/'], mayImport: ['core', 'util'] },
  { name: 'tokenizer', paths: ['tokenizer/'], mayImport: ['core', 'platform', 'util'] },
  { name: 'image', paths: ['image/'], mayImport: ['core', 'platform', 'util'] },
  { name: 'hub', paths: ['hub/'], mayImport: ['core', 'platform', 'util'] },
  { name: 'graph', paths: ['graph/'], mayImport: ['core', 'util', 'weights'] },
  { name: 'runtime', paths: ['runtime/'], mayImport: ['core', 'platform', 'util', 'graph'] },
  // Module trees are pure structure: no configs, no I/O, nothing that runs.
  { name: 'nn', paths: ['nn/'], mayImport: ['core', 'util', 'weights', 'graph'] },
  { name: 'schedulers', paths: ['schedulers/'], mayImport: ['core', 'util', 'random'] },
  { name: 'models', paths: ['models/'], mayImport: ['core', 'platform', 'util', 'weights', 'random', 'hub', 'graph', 'runtime', 'nn'] },
  {
    name: 'pipelines',
    paths: ['pipelines/'],
    mayImport: ['core', 'platform', 'util', 'weights', 'random', 'tokenizer', 'image', 'hub', 'graph', 'runtime', 'schedulers', 'models'],
  },
  {
    name: 'generate',
    paths: ['generate/'],
    mayImport: ['core', 'platform', 'util', 'weights', 'random', 'tokenizer', 'image', 'hub', 'graph', 'runtime', 'schedulers', 'models', 'pipelines'],
  },
  {
    name: 'server',
    paths: ['server/'],
    mayImport: ['core', 'platform', 'util', 'weights', 'random', 'tokenizer', 'image', 'hub', 'graph', 'runtime', 'schedulers', 'models', 'pipelines', 'generate'],
  },
  {
    name: 'cli',
    paths: ['cli/'],
    mayImport: ['core', 'platform', 'util', 'weights', 'random', 'tokenizer', 'image', 'hub', 'graph', 'runtime', 'schedulers', 'models', 'pipelines', 'generate', 'server'],
  },
  { name: 'public API', paths: ['index.ts', 'web/'], mayImport: ['*'] },
] as const satisfies readonly { name: string; paths: readonly string[]; mayImport: readonly string[] }[];

type Layer = (typeof LAYERS)[number];

/** The layer of a path relative to src/: the longest matching entry. */
function layerOf(path: string): Layer | undefined {
  let best: { layer: Layer; length: number } | undefined;
  for (const layer of LAYERS) {
    for (const p of layer.paths) {
      const hit = p.endsWith('/') ? path.startsWith(p) : path === p;
      if (hit && (best === undefined || p.length > best.length)) best = { layer, length: p.length };
    }
  }
  return best?.layer;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Relative imports of a file as paths relative to src/ (`.js` specifiers name the `.ts` sources). */
function localImports(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((s) => s.startsWith('.'))
    .map((s) => relative(SRC, resolve(dirname(file), s)).replace(/\.js$/, '.ts'));
}

test('the layer table only points downward', () => {
  LAYERS.forEach((layer, i) => {
    for (const dep of layer.mayImport) {
      if (dep === '*') continue;
      const at = LAYERS.findIndex((l) => l.name === dep);
      assert.ok(at >= 0 && at < i, `${layer.name} may import "${dep}", which is not a layer below it`);
    }
  });
});

/** What is wrong with a file at `path` (relative to src/) importing `imports`: nothing, if empty. */
function violations(path: string, imports: readonly string[]): string[] {
  const from = layerOf(path);
  if (from === undefined) return [`src/${path} is in no layer (add its folder to docs/architecture.md and this test)`];
  const allowed: readonly string[] = from.mayImport;
  return imports.flatMap((target) => {
    const to = layerOf(target);
    if (to === undefined) return [`src/${path} imports src/${target}, which is in no layer`];
    if (to === from || allowed.includes('*') || allowed.includes(to.name)) return [];
    return [`src/${path} (${from.name}) imports src/${target} (${to.name})`];
  });
}

test('every file in src/ belongs to a layer and imports only what its layer may', () => {
  const files = sourceFiles(SRC);
  assert.ok(files.length > 50, `expected the whole source tree, found ${files.length} files`);
  assert.deepEqual(
    files.flatMap((file) => violations(relative(SRC, file), localImports(file))),
    [],
  );
});

test('the check catches upward and sideways imports', () => {
  assert.deepEqual(violations('nn/unet-blocks.ts', ['models/unet-2d-condition.ts', 'runtime/session.ts', 'hub/index.ts']), [
    'src/nn/unet-blocks.ts (nn) imports src/models/unet-2d-condition.ts (models)',
    'src/nn/unet-blocks.ts (nn) imports src/runtime/session.ts (runtime)',
    'src/nn/unet-blocks.ts (nn) imports src/hub/index.ts (hub)',
  ]);
  assert.deepEqual(violations('graph/builder.ts', ['nn/module.ts']), ['src/graph/builder.ts (graph) imports src/nn/module.ts (nn)']);
  assert.deepEqual(violations('schedulers/ddim.ts', ['models/unet-2d-condition.ts']), [
    'src/schedulers/ddim.ts (schedulers) imports src/models/unet-2d-condition.ts (models)',
  ]);
  // the config idiom lives in util/, below models/ and schedulers/
  assert.deepEqual(violations('schedulers/settings.ts', ['util/config.ts']), []);
  assert.deepEqual(violations('util/config.ts', ['models/loading.ts']), ['src/util/config.ts (util) imports src/models/loading.ts (models)']);
  assert.deepEqual(violations('extras/thing.ts', []), ['src/extras/thing.ts is in no layer (add its folder to docs/architecture.md and this test)']);
  // type-only imports count (nn/ reaches graph/ only through `import type`), and so do re-exports
  assert.deepEqual(localImports(join(SRC, 'nn/controlnet-xs-blocks.ts')).filter((p) => !p.startsWith('nn/')).sort(), ['graph/builder.ts', 'util/math.ts']);
  assert.ok(localImports(join(SRC, 'index.ts')).includes('schedulers/index.ts'));
});
