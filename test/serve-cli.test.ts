/** `cnxs serve`: its options (checked before anything loads) and the command as a user runs it (a child process). */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { HELP, parseServeArgs, type ServeOptions } from '../src/cli/serve.js';
import { isLoopbackHost } from '../src/server/auth.js';
import { readPngText } from '../src/image/png-text.js';
import { DEFAULT_LIMITS } from '../src/server/limits.js';
import { fixture, tempDir } from './helpers.js';
import { startRedisServer } from './redis-server.js';

const D = fixture('tiny-sd-cnxs');
const parse = (args: string[], env: Record<string, string> = {}) => parseServeArgs(args, { XDG_CACHE_HOME: '/cache', ...env }) as ServeOptions;

test('cnxs serve options: defaults, limits, the model options, and every mistake named before anything loads', () => {
  const o = parse(['--model', D, '--controlnet', join(D, 'controlnet'), '--offline', '--no-safety-checker', '--preview-vae', 'madebyollin/taesd']);
  assert.deepEqual(o.model, {
    model: D,
    controlnet: join(D, 'controlnet'),
    offline: true,
    graphCacheDir: '/cache/controlnet-xs/graphs',
    previewVae: 'madebyollin/taesd',
    safetyChecker: false,
  });
  assert.equal(o.host, '127.0.0.1');
  assert.equal(o.port, 7860);
  assert.equal(o.apiKey, undefined);
  assert.equal(o.redis, undefined);
  assert.deepEqual(o.limits, DEFAULT_LIMITS);

  const l = parse(['--model', 'm', '--max-width', '1024', '--max-height', '768', '--max-steps', '50', '--max-images', '2', '--max-queue', '5', '--max-body-mb', '2', '--result-ttl', '60',
    '--graph-cache', 'off', '--device', 'cuda', '--dtype', 'float16', '--port', '0', '--host', '[::1]']);
  assert.deepEqual(l.limits, { ...DEFAULT_LIMITS, maxWidth: 1024, maxHeight: 768, maxPixels: 1024 * 768, maxSteps: 50, maxNumImages: 2, maxQueue: 5, maxBodyBytes: 2 * 2 ** 20 });
  assert.equal(l.resultTtlSeconds, 60);
  assert.deepEqual(l.model, { model: 'm', device: 'cuda', dtype: 'float16' });
  assert.equal(l.port, 0);
  assert.equal(l.host, '::1');

  assert.equal(parse(['--model', 'm'], { CNXS_API_KEY: 'k1' }).apiKey, 'k1');
  assert.equal(parse(['--model', 'm', '--api-key', 'k2'], { CNXS_API_KEY: 'k1' }).apiKey, 'k2');
  // API only: nothing to load here, so no --model needed
  const apiOnly = parse(['--redis', 'redis://127.0.0.1:6379']);
  assert.equal(apiOnly.model, undefined);
  assert.equal(apiOnly.workers, 0);
  assert.equal(parse(['--redis', 'redis://h:1', '--workers', '2', '--model', 'm']).workers, 2);
  assert.equal(parseServeArgs(['--help'], {}), HELP);

  const bad: [string[], RegExp][] = [
    [[], /serve needs --model/],
    [['--redis', 'redis://h:1', '--workers', '1'], /serve needs --model/],
    [['--model', 'm', '--workers', '2'], /--workers needs --redis/],
    [['--model', 'm', '--redis', 'http://h'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [['--model', 'm', '--port', '70000'], /--port must be ≤ 65535/],
    [['--model', 'm', '--max-body-mb', 'lots'], /--max-body-mb must be a number/],
    [['--model', 'm', '--max-steps', '0'], /--max-steps must be ≥ 1/],
    [['--model', 'm', '--api-key', ''], /--api-key .* must not be empty/],
    [['--model', 'm', '--api-key', 'a b'], /must not contain spaces/],
    [['--model', 'm', '--device', 'tpu'], /--device must be one of cpu, cuda, webgpu, got "tpu"/],
    [['--model', 'm', '--dtype', 'float16'], /--dtype float16 needs --device webgpu or cuda/],
    [['--model', 'm', '--pot', '1'], /unknown option --pot; did you mean --port\?/],
    [['--model', 'm', 'extra'], /unexpected argument "extra"/],
  ];
  for (const [args, message] of bad) assert.throws(() => parseServeArgs(args, {}), message, args.join(' '));
});

test('cnxs serve on a taken port fails at once, naming --port, before loading the model', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  after(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  // the model does not exist: reaching the load would fail differently
  const r = spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'serve', '--model', join(D, 'no-such-model'), '--offline', '--port', String(port)], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, `cnxs: cannot listen on 127.0.0.1:${port}: the port is in use (choose another --port)\n`);
});

test('loopback hosts', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LocalHost', 'app.localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '192.168.1.10', 'example.com', 'localhost.example.com', '127.0.0.1.nip.io', '']) assert.ok(!isLoopbackHost(h), h);
});

/** `cnxs serve …` as a child process, its URL once it printed it; killed when the file is done, whatever happens. */
async function startServe(args: string[], env: Record<string, string>): Promise<{ url: string; child: ChildProcess; exited: Promise<number | null>; stdout: () => string; stderr: () => string }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'serve', ...args], {
    env: { ...process.env, CNXS_API_KEY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`cnxs serve exited (${code}) before listening: ${stderr}`)));
  });
  return { url, child, exited, stdout: () => stdout, stderr: () => stderr };
}

test('cnxs serve on the tiny checkpoint: one URL line when ready, /healthz, a warning for an open host without a key, SIGTERM exits 0', async () => {
  const cacheHome = tempDir('cnxs-serve-cli-');
  const { url, child, exited, stdout, stderr } = await startServe(['--model', D, '--controlnet', join(D, 'controlnet'), '--offline', '--port', '0', '--host', '0.0.0.0'], { XDG_CACHE_HOME: cacheHome });
  assert.match(url, /^http:\/\/0\.0\.0\.0:\d+$/);
  assert.equal(stdout().trim().split('\n').length, 1, stdout());
  const local = url.replace('0.0.0.0', '127.0.0.1');
  assert.equal((await fetch(`${local}/healthz`)).status, 200);
  const ready = await fetch(`${local}/readyz`);
  assert.equal(ready.status, 200);
  assert.ok(((await ready.json()) as { models?: unknown[] }).models?.length === 1);
  assert.equal(stderr().split('\n').filter((l) => /warning: listening on 0\.0\.0\.0 without --api-key/.test(l)).length, 1, stderr());
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr());
});

test('cnxs serve --redis --workers 1: a job through Redis and the in-process worker; SIGTERM exits 0', async () => {
  const redis = await startRedisServer();
  after(() => redis.stop());
  const cacheHome = tempDir('cnxs-serve-redis-');
  const { url, child, exited, stdout, stderr } = await startServe(['--model', D, '--controlnet', join(D, 'controlnet'), '--offline', '--port', '0', '--redis', redis.url, '--workers', '1',
    '--api-key', 'k'], { XDG_CACHE_HOME: cacheHome });
  assert.match(stdout(), /Redis queue, 1 worker here/);
  const auth = { authorization: 'Bearer k', 'content-type': 'application/json' };
  const image = readFileSync(join(D, 'pipeline', 'control.png')).toString('base64');
  const submitted = await fetch(`${url}/v1/generations`, { method: 'POST', headers: auth, body: JSON.stringify({ prompt: 'a bird', image, steps: 2, seed: 5 }) });
  assert.equal(submitted.status, 202);
  const { id } = (await submitted.json()) as { id: string };
  let status: { status: string; images: string[] };
  do {
    await new Promise((r) => setTimeout(r, 50));
    status = (await (await fetch(`${url}/v1/generations/${id}`, { headers: auth })).json()) as typeof status;
  } while (!['succeeded', 'failed', 'canceled'].includes(status.status));
  assert.equal(status.status, 'succeeded', JSON.stringify(status));
  const png = new Uint8Array(await (await fetch(`${url}${status.images[0]}`, { headers: auth })).arrayBuffer());
  assert.match(readPngText(png)['parameters']!, /^a bird\nSteps: 2, Sampler: DDIM, CFG scale: 7\.5, Seed: 5, Size: 64x64/);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr());
});
