/**
 * The package as a dependent gets it: `npm pack` this repository (which runs `prepare`, the build), install the
 * tarball into an empty project with the README's command — `ONNXRUNTIME_NODE_INSTALL=skip npm i controlnet-xs`,
 * the tarball standing in for the name — then run the `cnxs` bin and import the package from that project.
 *
 * What it guards: onnxruntime-node's postinstall downloads its CUDA provider (Linux x64) from outside the npm
 * registry unless told `skip`, and a dependent package cannot make `skip` the default (npm reads neither a
 * dependency's .npmrc nor its `overrides`/`allowScripts`), so the README's command is the fix and this test
 * checks it. Every request the script makes goes to a local stand-in proxy that records and refuses it, so
 * nothing leaves the machine and an attempted download fails the test; npm itself only talks to the registry
 * (`--prefer-offline`: the cache `npm ci` filled answers first).
 *
 * npm 10 (what Node 20 ships) runs dependency install scripts; npm 12 runs only those `allowScripts` approves.
 * The installs here set `dangerously-allow-all-scripts`, so whatever npm runs this, the scripts run as on npm 10
 * — the case the command is for — and the last test proves that the script does run here and would download.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join, relative, sep } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tempDir } from './helpers.js';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const PLATFORM = `${process.platform}/${process.arch}`;
/** The only platform onnxruntime-node 1.30's script downloads for (its install-metadata.js `requirements`). */
const DOWNLOADS_HERE = PLATFORM === 'linux/x64';

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const running = new Set<ChildProcess>();

/** Ends a child and everything it started (npm → lifecycle scripts): it leads its own process group. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone between the check and the kill
  }
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      killGroup(child);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** npm_config_* keys that only say how to reach the registry; an npm started here keeps them. */
const REGISTRY_SETTINGS =
  /^npm_config_(registry|@[^:]+:registry|cache|userconfig|globalconfig|cafile|ca|cert|key|proxy|https_proxy|noproxy|strict_ssl|fetch_[a-z_]+)$/;

/**
 * This process's environment for an npm started here, less whatever could decide the outcome for it: under
 * `npm test`, npm exports its settings — this repository's `.npmrc` `onnxruntime-node-install=skip` among them —
 * as npm_config_*, and this project's paths as npm_package_*; the script's own variables and global-agent's
 * proxy settings would steer it too.
 */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    const k = key.toLowerCase();
    if (value === undefined) continue;
    if (k.startsWith('npm_') && !REGISTRY_SETTINGS.test(k)) continue;
    if (k.startsWith('onnxruntime_node_install') || k.startsWith('global_agent_')) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Every file under `dir`, as `/`-separated paths relative to it. */
function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

/** The files onnxruntime-node's script would fetch for this platform, read from the installed copy's metadata. */
function fetchedByScript(ortDir: string): string[] {
  const metadata: unknown = createRequire(join(ortDir, 'package.json'))('./script/install-metadata.js');
  const manifests = (metadata as { manifests?: Record<string, Record<string, unknown>> }).manifests;
  assert.ok(manifests && typeof manifests === 'object', 'onnxruntime-node install-metadata.js has no manifests');
  return Object.entries(manifests)
    .filter(([key]) => key.startsWith(`${PLATFORM}:`))
    .flatMap(([, files]) => Object.keys(files))
    .map((file) => join(ortDir, 'bin', 'napi-v6', PLATFORM, file));
}

// Made at the top level so helpers' `after` removes them when this file is done (not from inside `before`).
const packDir = tempDir('cnxs-pack-');
const project = tempDir('cnxs-dependent-');

describe('installing the packed tarball as a dependency', { skip: process.platform === 'win32' && 'spawns npm and npx directly and ends process groups: POSIX only' }, () => {
  /** Requests onnxruntime-node's script sent to the stand-in proxy (CONNECT host:port or a plain URL). */
  const attempts: string[] = [];
  // Refuses everything: global-agent (which the script bootstraps) sends https through CONNECT here.
  const proxy = createServer((req, res) => {
    attempts.push(`${req.method ?? '?'} ${req.url ?? ''}`);
    res.writeHead(403).end();
  });
  proxy.on('connect', (req, socket) => {
    attempts.push(`CONNECT ${req.url ?? ''}`);
    socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
  });
  let proxyUrl = '';
  let install: RunResult = { code: null, stdout: '', stderr: '' };
  const ortDir = join(project, 'node_modules', 'onnxruntime-node');
  const pkgDir = join(project, 'node_modules', 'controlnet-xs');

  /** The environment of every install here: scripts run as on npm 10, their downloads go to the proxy. */
  const installEnv = (extra: Record<string, string>) =>
    childEnv({
      npm_config_dangerously_allow_all_scripts: 'true',
      GLOBAL_AGENT_HTTP_PROXY: proxyUrl,
      GLOBAL_AGENT_HTTPS_PROXY: proxyUrl,
      ...extra,
    });

  before(async () => {
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    const pack = await run('npm', ['pack', '--pack-destination', packDir], REPO, childEnv({}), 240_000);
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const tarballs = readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
    assert.equal(tarballs.length, 1, `expected one tarball in ${packDir}, got ${tarballs.join(', ')}`);

    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'cnxs-dependent', version: '0.0.0', private: true }));
    // The README's `ONNXRUNTIME_NODE_INSTALL=skip npm i controlnet-xs`, with the tarball for the name.
    install = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', join(packDir, tarballs[0] ?? '')],
      project,
      installEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }),
      240_000,
    );
  });

  after(async () => {
    for (const child of running) killGroup(child);
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
  });

  test('the documented command installs it with the registry alone: onnxruntime-node fetched nothing', () => {
    assert.equal(install.code, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
    assert.deepEqual(attempts, [], 'onnxruntime-node tried to download from outside the npm registry');
    const fetchable = fetchedByScript(ortDir);
    if (DOWNLOADS_HERE) assert.ok(fetchable.length > 0, 'no CUDA files listed for linux/x64: the check below would be empty');
    for (const file of fetchable) assert.ok(!existsSync(file), `${file} appeared: the CUDA download ran`);
  });

  test('the tarball ships dist/ without source maps, plus README and LICENSE', () => {
    const files = listFiles(pkgDir);
    const outside = files.filter((f) => !f.startsWith('dist/') && !['LICENSE', 'README.md', 'package.json'].includes(f));
    assert.deepEqual(outside, [], 'files outside dist/ besides LICENSE, README.md, package.json');
    assert.deepEqual(files.filter((f) => f.endsWith('.map')), [], 'source maps ship without their sources');
    const pointing = files.filter((f) => /\.[cm]?[jt]s$/.test(f) && readFileSync(join(pkgDir, f), 'utf8').includes('sourceMappingURL'));
    assert.deepEqual(pointing, [], 'files that point at source maps');
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/cli/main.js'));
    // single files load offline from the default configs shipped as data beside their module (the build copies them)
    const bundled = ['clip-bpe/vocab.json', 'clip-bpe/merges.txt', ...['sd15', 'sd21-base', 'sd21-v', 'sdxl-base'].map((b) => `${b}/unet/config.json`), 'sdxl-base/tokenizer_2/tokenizer_config.json'];
    for (const f of bundled) assert.ok(files.includes(`dist/models/single-file/configs/${f}`), `tarball lacks bundled config ${f}`);
    // cnxs serve's page and the browser entry with the onnxruntime-web files it loads from its own folder
    for (const f of ['dist/server/ui/index.html', 'dist/server/ui/app.js', 'dist/web/index.js', 'dist/web/index.d.ts', 'dist/web/ort-wasm-simd-threaded.jsep.mjs', 'dist/web/ort-wasm-simd-threaded.jsep.wasm']) {
      assert.ok(files.includes(f), `tarball lacks ${f}`);
    }
    assert.ok(!files.includes('dist/server/ui/tsconfig.json'), 'the UI\'s type-check config stays behind');
    assert.match(readFileSync(join(pkgDir, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
    const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { license?: string };
    assert.equal(manifest.license, 'Apache-2.0');
  });

  test('npx cnxs help runs the installed bin', async () => {
    // --no: run the installed bin or fail, never install one.
    const r = await run('npx', ['--no', 'cnxs', 'help'], project, childEnv({}), 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: cnxs <command>/);
  });

  test("import('controlnet-xs') from the dependent project resolves to the installed package", async () => {
    const script = `const m = await import('controlnet-xs');
console.log(JSON.stringify({ url: import.meta.resolve('controlnet-xs'), exports: Object.keys(m).filter((k) => typeof m[k] === 'function').sort() }));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], project, childEnv({}), 60_000);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { url: string; exports: string[] };
    assert.equal(out.url, pathToFileURL(join(pkgDir, 'dist', 'index.js')).href);
    for (const name of ['StableDiffusionControlNetXSPipeline', 'StableDiffusionXLControlNetXSPipeline', 'ControlNetXSAdapter', 'UNetControlNetXSModel', 'Generator', 'loadSafetensors']) {
      assert.ok(out.exports.includes(name), `${name} missing from the package's exports`);
    }
  });

  test("the subpaths: 'controlnet-xs/server' imports in Node, 'controlnet-xs/web' resolves to the browser bundle", async () => {
    const script = `const m = await import('controlnet-xs/server');
console.log(JSON.stringify({ web: import.meta.resolve('controlnet-xs/web'), server: Object.keys(m).filter((k) => typeof m[k] === 'function').sort() }));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], project, childEnv({}), 60_000);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { web: string; server: string[] };
    assert.equal(out.web, pathToFileURL(join(pkgDir, 'dist', 'web', 'index.js')).href);
    for (const name of ['startServer', 'EmbeddedQueue', 'RedisQueue', 'startRedisWorker', 'createPipelineRunner', 'parseGenerationRequest']) {
      assert.ok(out.server.includes(name), `${name} missing from controlnet-xs/server`);
    }
  });

  // The control: the same script without the variable tries the download (and fails the install, as it does
  // for a dependent on npm 10 where only the registry is reachable). Without this, a script that never ran —
  // a newer npm, a user config with ignore-scripts — would pass the first test for the wrong reason.
  test('without ONNXRUNTIME_NODE_INSTALL=skip the script would fetch CUDA from outside the registry', { skip: !DOWNLOADS_HERE && `onnxruntime-node downloads nothing on ${PLATFORM}` }, async () => {
    const seen = attempts.length;
    const r = await run('npm', ['rebuild', 'onnxruntime-node'], project, installEnv({}), 120_000);
    assert.ok(attempts.length > seen, `onnxruntime-node's postinstall did not try to download (npm rebuild exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    assert.notEqual(r.code, 0, 'a refused download should fail the install');
  });
});
