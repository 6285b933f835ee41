#!/usr/bin/env node
/**
 * Builds the browser entry: src/web/index.ts → <out>/index.js (one ESM file, no bare imports) and
 * copies onnxruntime-web's WebAssembly files (JSEP build: wasm and WebGPU) next to it.
 *
 *   node scripts/build-web.mjs [outDir]     (default dist/web)
 *
 * Two resolutions differ from Node's: a module with a `<name>.browser.ts` twin beside it is
 * replaced by the twin (the platform seam: files, runtime, image decoding, Hub resolution), and
 * each Node-only import (`node:*`, sharp, onnxruntime-node) becomes stand-ins generated from the
 * importer's import clause that throw BrowserUnsupportedError when used (src/web/node-only.ts).
 */
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NODE_ONLY = /^(node:.*|sharp|onnxruntime-node)$/;
/** onnxruntime-web's files that its `ort.min.mjs` loads at run time (from `env.wasm.wasmPaths`). */
export const ORT_FILES = ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm'];

/** `X.ts` → `X.browser.ts` where that file exists. */
const twins = {
  name: 'browser-twins',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\/.*\.js$/ }, (args) => {
      const twin = resolve(args.resolveDir, args.path.replace(/\.js$/, '.browser.ts'));
      // A twin importing its own Node module (for types only, erased) must not resolve to itself.
      if (existsSync(twin) && twin !== args.importer) return { path: twin };
      return undefined;
    });
  },
};

/** The names `importer` imports from `specifier`: [default?, named…]. */
function importedNames(importer, specifier) {
  const text = readFileSync(importer, 'utf8');
  const quoted = specifier.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const names = new Set();
  for (const m of text.matchAll(new RegExp(`import\\s+(?!type\\s)([^;]*?)\\s+from\\s+['"]${quoted}['"]`, 'g'))) {
    const clause = m[1].trim();
    const braces = /\{([^}]*)\}/.exec(clause);
    if (braces) for (const part of braces[1].split(',')) {
      const name = part.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]?.trim();
      if (name && !part.trim().startsWith('type ')) names.add(name);
    }
    const head = clause.replace(/\{[^}]*\}/, '').replace(/,\s*$/, '').trim();
    if (head.startsWith('* as ')) names.add('*');
    else if (head) names.add('default');
  }
  return [...names];
}

const nodeOnly = {
  name: 'node-only',
  setup(b) {
    b.onResolve({ filter: NODE_ONLY }, (args) => ({ path: `${args.path}|${args.importer}`, namespace: 'node-only' }));
    b.onLoad({ filter: /.*/, namespace: 'node-only' }, (args) => {
      const [specifier, importer] = args.path.split('|');
      const where = relative(ROOT, importer);
      const helper = JSON.stringify(join(ROOT, 'src/web/node-only.ts'));
      const lines = [`import { nodeOnly } from ${helper};`];
      // named without the "node:" scheme, so the bundle holds no Node specifier even in a message
      const module = specifier.replace(/^node:/, "Node's ");
      // path and url helpers compute constants at import in some Node-only modules: their results fail when used
      const deferred = specifier === 'node:path' || specifier === 'node:url';
      const at = (n) => `nodeOnly(${JSON.stringify(module)}, ${JSON.stringify(n)}, ${JSON.stringify(where)}, ${deferred})`;
      for (const n of importedNames(importer, specifier)) {
        if (n === 'default' || n === '*') lines.push(`export default ${at('default')};`);
        else lines.push(`export const ${n} = ${at(n)};`);
      }
      return { contents: lines.join('\n'), loader: 'js', resolveDir: ROOT };
    });
  },
};

export async function buildWeb(outDir = join(ROOT, 'dist/web')) {
  mkdirSync(outDir, { recursive: true });
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [join(ROOT, 'src/web/index.ts')],
    outfile: join(outDir, 'index.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    // onnxruntime-web's build that loads its .mjs glue and .wasm from wasmPaths instead of inlining the glue
    conditions: ['onnxruntime-web-use-extern-wasm'],
    minify: true,
    // error classes name themselves from `new.target.name` (DownloadError, InputError…): keep class names
    keepNames: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    plugins: [twins, nodeOnly],
  });
  const require = createRequire(import.meta.url);
  for (const f of ORT_FILES) copyFileSync(require.resolve(`onnxruntime-web/${f}`), join(outDir, f));
  const sizes = Object.fromEntries(['index.js', ...ORT_FILES].map((f) => [f, statSync(join(outDir, f)).size]));
  return { outDir, sizes, metafile: result.metafile };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { outDir, sizes } = await buildWeb(process.argv[2] ? resolve(process.argv[2]) : undefined);
  for (const [f, n] of Object.entries(sizes)) console.log(`${relative(process.cwd(), join(outDir, f))}  ${(n / 1e6).toFixed(2)} MB`);
}
