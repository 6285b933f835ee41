/**
 * Hub client against a local server with the Hub's URL layout (127.0.0.1 only): cache layout as
 * huggingface_hub writes it, cache hits with the server stopped, offline mode, named errors,
 * resumed downloads, tokens, snapshots and diffusers-style file selection.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import {
  HubAuthError,
  HubEntryNotFoundError,
  HubError,
  HubGatedRepoError,
  HubNotCachedError,
  HubRepoNotFoundError,
  HubRevisionNotFoundError,
  hubDownload,
  resolveHubSettings,
  resolvePretrained,
  snapshotDownload,
  type HubOptions,
  type HubProgress,
} from '../src/hub/index.js';
import { filterRepoFiles } from '../src/hub/glob.js';
import { withFileLock } from '../src/hub/lock.js';
import { selectModelFiles, selectPipelineFiles, weightFilesFor } from '../src/hub/select.js';
import { fixture } from './helpers.js';
import { COMMIT, TOKEN, gitSha1, listFiles, sha256, startHub } from './fake-hub.js';

const TIMEOUT = { timeout: 30_000 };
const temps: string[] = [];
after(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cnxs-hub-'));
  temps.push(d);
  return d;
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  return b;
}


/** A small pipeline repo in the diffusers layout, written to a temp dir. */
function buildRepo(): string {
  const dir = tempDir();
  const put = (path: string, data: Buffer | string) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), data);
  };
  const cn = fixture('tiny-sd-cnxs', 'controlnet');
  const vocab = JSON.stringify({ '<|startoftext|>': 0, '<|endoftext|>': 1, a: 2 });
  put('model_index.json', JSON.stringify({
    _class_name: 'StableDiffusionControlNetXSPipeline',
    _diffusers_version: '0.33.1',
    controlnet: ['diffusers', 'ControlNetXSAdapter'],
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', 'EulerDiscreteScheduler'],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    vae: ['diffusers', 'AutoencoderKL'],
  }));
  put('README.md', '# tiny');
  put('v1-5-pruned.ckpt', bytes(5000, 1));
  put('controlnet/config.json', readFileSync(join(cn, 'config.json')));
  put('controlnet/diffusion_pytorch_model.safetensors', readFileSync(join(cn, 'diffusion_pytorch_model.safetensors')));
  put('controlnet/diffusion_pytorch_model.fp16.safetensors', readFileSync(join(cn, 'diffusion_pytorch_model.fp16.safetensors')));
  put('controlnet/diffusion_pytorch_model.bin', bytes(3000, 2));
  put('scheduler/scheduler_config.json', JSON.stringify({ _class_name: 'EulerDiscreteScheduler', num_train_timesteps: 1000 }));
  put('text_encoder/config.json', JSON.stringify({ architectures: ['CLIPTextModel'] }));
  put('text_encoder/model.safetensors', bytes(20_000, 3));
  put('text_encoder/pytorch_model.bin', bytes(20_000, 4));
  put('tokenizer/vocab.json', vocab);
  put('tokenizer/merges.txt', '#version: 0.2\na b\n');
  put('tokenizer/tokenizer_config.json', JSON.stringify({ model_max_length: 77 }));
  put('tokenizer/special_tokens_map.json', JSON.stringify({ bos_token: '<|startoftext|>' }));
  put('extra/empty.txt', '');
  put('extra/vocab.json', vocab); // same bytes as tokenizer/vocab.json: one blob, two pointers
  put('vae/config.json', JSON.stringify({ _class_name: 'AutoencoderKL' }));
  put('vae/diffusion_pytorch_model.safetensors', bytes(30_000, 5));
  put('vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors', bytes(8_000, 6));
  put('vae/diffusion_pytorch_model.fp16-00002-of-00002.safetensors', bytes(7_000, 7));
  put('vae/diffusion_pytorch_model.safetensors.index.fp16.json', JSON.stringify({
    metadata: { total_size: 15_000 },
    weight_map: { 'a.weight': 'diffusion_pytorch_model.fp16-00001-of-00002.safetensors', 'b.weight': 'diffusion_pytorch_model.fp16-00002-of-00002.safetensors' },
  }));
  return dir;
}

/** Options for one test: a fresh cache, the fake Hub, no environment (so no real token or cache). */
function opts(hub: { endpoint: string }, extra: HubOptions = {}): HubOptions & { cacheDir: string } {
  const home = tempDir();
  return { cacheDir: join(home, 'hub'), endpoint: hub.endpoint, env: { HF_HOME: home }, timeoutMs: 5000, ...extra };
}

const storage = (cacheDir: string, repo = 'org/tiny-pipe') => join(cacheDir, `models--${repo.replace('/', '--')}`);

test('fresh download lays out blobs, snapshots and refs exactly as huggingface_hub', TIMEOUT, async () => {
  const repo = buildRepo();
  const hub = await startHub(repo);
  try {
    const o = opts(hub);
    const progress: HubProgress[] = [];
    const file = 'controlnet/diffusion_pytorch_model.safetensors';
    const path = await hubDownload('org/tiny-pipe', file, { ...o, onProgress: (p) => progress.push(p) });
    const index = await hubDownload('org/tiny-pipe', 'model_index.json', o);
    const root = storage(o.cacheDir);
    assert.equal(path, join(root, 'snapshots', COMMIT, 'controlnet', 'diffusion_pytorch_model.safetensors'));
    assert.equal(readFileSync(join(root, 'refs', 'main'), 'utf8'), COMMIT, 'refs/main holds the bare commit hash');
    const data = readFileSync(join(repo, file));
    const oid = sha256(data);
    assert.ok(lstatSync(path).isSymbolicLink());
    assert.equal(readlinkSync(path), `../../../blobs/${oid}`, 'nested pointer: relative, one .. per level');
    assert.equal(realpathSync(path), realpathSync(join(root, 'blobs', oid)));
    assert.deepEqual(readFileSync(path), data);
    const indexData = readFileSync(join(repo, 'model_index.json'));
    assert.equal(readlinkSync(index), `../../blobs/${gitSha1(indexData)}`, 'regular file: blob named by its git sha1 ETag');
    assert.deepEqual(readFileSync(index), indexData);
    assert.deepEqual(readdirSync(join(root, 'blobs')).sort(), [oid, gitSha1(indexData)].sort(), 'no .incomplete left behind');
    // Progress: increasing, ending at the total.
    assert.ok(progress.length >= 2);
    assert.ok(progress.every((p, i) => p.file === file && p.total === data.length && (i === 0 || p.loaded >= progress[i - 1]!.loaded)));
    assert.equal(progress.at(-1)!.loaded, data.length);
    // The token stays off the CDN; the HEAD does not follow the CDN redirect.
    assert.ok(hub.log.some((l) => l.server === 'hub' && l.method === 'HEAD' && l.path === `/org/tiny-pipe/resolve/main/${file}`));
    assert.equal(hub.log.filter((l) => l.server === 'cdn').length, 1, 'one GET on the CDN');
    // A second call only asks for metadata.
    const before = hub.log.length;
    assert.equal(await hubDownload('org/tiny-pipe', file, o), path);
    assert.deepEqual(hub.log.slice(before).map((l) => l.method), ['HEAD']);
    // A commit hash that is cached needs no request at all.
    assert.equal(await hubDownload('org/tiny-pipe', file, { ...o, revision: COMMIT }), path);
    assert.equal(hub.log.length, before + 1);
  } finally {
    await hub.stop();
  }
});

test('a revision with a slash is URL-encoded and stored as a nested ref; a renamed repo follows the relative redirect', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  try {
    const o = opts(hub);
    await hubDownload('org/tiny-pipe', 'scheduler/scheduler_config.json', { ...o, revision: 'refs/pr/1' });
    assert.ok(hub.log.some((l) => l.path === '/org/tiny-pipe/resolve/refs%2Fpr%2F1/scheduler/scheduler_config.json'));
    assert.equal(readFileSync(join(storage(o.cacheDir), 'refs', 'refs', 'pr', '1'), 'utf8'), COMMIT);
    const moved = await hubDownload('old-org/tiny-pipe', 'model_index.json', o);
    assert.equal(moved, join(storage(o.cacheDir, 'old-org/tiny-pipe'), 'snapshots', COMMIT, 'model_index.json'), 'cached under the id asked for');
    assert.ok(hub.log.some((l) => l.method === 'HEAD' && l.path === '/org/tiny-pipe/resolve/main/model_index.json'));
  } finally {
    await hub.stop();
  }
});

test('cache hit with the server stopped; an uncached file then fails naming repo, file and revision', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  const o = opts(hub);
  const path = await hubDownload('org/tiny-pipe', 'controlnet/config.json', o);
  const snapshot = await snapshotDownload('org/tiny-pipe', { ...o, allowPatterns: ['controlnet/config.json'] });
  await hub.stop();
  assert.equal(await hubDownload('org/tiny-pipe', 'controlnet/config.json', o), path, 'unreachable Hub: answered from refs/main');
  assert.equal(await snapshotDownload('org/tiny-pipe', o), snapshot);
  await assert.rejects(
    hubDownload('org/tiny-pipe', 'vae/config.json', o),
    (e: Error) => e instanceof HubNotCachedError && /org\/tiny-pipe file "vae\/config.json" at revision "main": cannot reach .*ECONNREFUSED.*not in the cache/.test(e.message) && !e.message.includes('\n'),
  );
});

test('offline: localFilesOnly and HF_HUB_OFFLINE answer from the cache without a request', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  try {
    const o = opts(hub);
    const path = await hubDownload('org/tiny-pipe', 'controlnet/config.json', o);
    const count = hub.log.length;
    assert.equal(await hubDownload('org/tiny-pipe', 'controlnet/config.json', { ...o, localFilesOnly: true }), path);
    const envOffline = { ...o, env: { ...o.env, HF_HUB_OFFLINE: '1' } };
    assert.equal(await hubDownload('org/tiny-pipe', 'controlnet/config.json', envOffline), path);
    assert.equal(await snapshotDownload('org/tiny-pipe', envOffline), dirname(dirname(path)));
    await assert.rejects(hubDownload('org/tiny-pipe', 'vae/config.json', { ...o, localFilesOnly: true }), (e: Error) => e instanceof HubNotCachedError && /vae\/config\.json.*not in the cache.*localFilesOnly/.test(e.message));
    await assert.rejects(hubDownload('org/tiny-pipe', 'vae/config.json', envOffline), (e: Error) => e instanceof HubNotCachedError && /HF_HUB_OFFLINE/.test(e.message));
    await assert.rejects(hubDownload('org/tiny-pipe', 'vae/config.json', { ...o, localFilesOnly: true, revision: 'v1.0' }), HubNotCachedError, 'no ref for v1.0');
    assert.equal(hub.log.length, count, 'offline: no request at all');
  } finally {
    await hub.stop();
  }
});

test('404s and auth failures are named errors; the missing file is remembered in .no_exist', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  try {
    const o = opts(hub);
    await assert.rejects(hubDownload('org/tiny-pipe', 'unet/config.json', o), (e: Error) => {
      assert.ok(e instanceof HubEntryNotFoundError, String(e));
      assert.match(e.message, /^org\/tiny-pipe file "unet\/config\.json" at revision "main": file not found in repo \(HTTP 404\)$/);
      assert.equal(e.status, 404);
      return true;
    });
    assert.ok(existsSync(join(storage(o.cacheDir), '.no_exist', COMMIT, 'unet', 'config.json')));
    await assert.rejects(hubDownload('org/tiny-pipe', 'model_index.json', { ...o, revision: 'nope' }), (e: Error) => e instanceof HubRevisionNotFoundError && /revision "nope" not found in repo org\/tiny-pipe/.test(e.message));
    await assert.rejects(hubDownload('org/missing', 'model_index.json', o), (e: Error) => e instanceof HubRepoNotFoundError && /repository org\/missing not found.*HF_TOKEN/.test(e.message));
    await assert.rejects(hubDownload('org/private', 'model_index.json', o), (e: Error) => e instanceof HubRepoNotFoundError && /HF_TOKEN/.test(e.message));
    await assert.rejects(hubDownload('org/gated', 'model_index.json', o), (e: Error) => e instanceof HubGatedRepoError && e instanceof HubAuthError && /gated.*HF_TOKEN/.test(e.message));
    await assert.rejects(snapshotDownload('org/missing', o), HubRepoNotFoundError);
    await assert.rejects(hubDownload('../etc', 'x', o), HubError);
    await assert.rejects(hubDownload('org/tiny-pipe', '../x', o), HubError);
  } finally {
    await hub.stop();
  }
});

test('the token goes to the Hub (option, HF_TOKEN, token file) but not to the CDN', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  try {
    const file = 'text_encoder/model.safetensors';
    const viaOption = opts(hub, { token: TOKEN });
    await hubDownload('org/private', file, viaOption);
    const head = hub.log.find((l) => l.method === 'HEAD');
    assert.equal(head?.authorization, `Bearer ${TOKEN}`);
    const cdn = hub.log.filter((l) => l.server === 'cdn');
    assert.equal(cdn.length, 1);
    assert.equal(cdn[0]!.authorization, undefined, 'signed CDN URL: no token');
    const viaEnv = opts(hub);
    await hubDownload('org/private', 'model_index.json', { ...viaEnv, env: { ...viaEnv.env, HF_TOKEN: TOKEN } });
    const viaFile = opts(hub);
    writeFileSync(join(viaFile.env!.HF_HOME!, 'token'), `${TOKEN}\n`);
    await hubDownload('org/private', 'model_index.json', viaFile);
    // Without a token the Hub says "not found"; the copy cached with the token still answers, as in Python.
    await assert.rejects(hubDownload('org/private', 'vae/config.json', { ...viaFile, token: false }), HubRepoNotFoundError);
    assert.ok(await hubDownload('org/private', 'model_index.json', { ...viaFile, token: false }));
  } finally {
    await hub.stop();
  }
});

test('a connection cut mid-file leaves .incomplete; the next call resumes with Range and the bytes match', TIMEOUT, async () => {
  const repo = buildRepo();
  const hub = await startHub(repo);
  try {
    const o = opts(hub);
    const file = 'controlnet/diffusion_pytorch_model.safetensors';
    const data = readFileSync(join(repo, file));
    const partial = join(storage(o.cacheDir), 'blobs', `${sha256(data)}.incomplete`);
    hub.state.cutAfter = 100_000;
    await assert.rejects(hubDownload('org/tiny-pipe', file, { ...o, retries: 0 }), (e: Error) => e instanceof HubError && /cut at byte 100000 of 269200/.test(e.message));
    assert.equal(statSync(partial).size, 100_000);
    assert.ok(!existsSync(join(storage(o.cacheDir), 'snapshots', COMMIT, file)), 'no pointer to a partial blob');
    const progress: HubProgress[] = [];
    const path = await hubDownload('org/tiny-pipe', file, { ...o, retries: 0, onProgress: (p) => progress.push(p) });
    const gets = hub.log.filter((l) => l.server === 'cdn');
    assert.deepEqual(gets.map((l) => l.range), [undefined, 'bytes=100000-']);
    assert.deepEqual(readFileSync(path), data);
    assert.ok(!existsSync(partial));
    assert.equal(progress[0]!.loaded, 100_000, 'progress counts the resumed bytes');
    assert.equal(progress.at(-1)!.loaded, data.length);

    // Within one call, a cut is resumed after a pause (huggingface_hub retries 5 times).
    const again = opts(hub);
    hub.state.cutAfter = 50_000;
    const resumed = await hubDownload('org/tiny-pipe', file, again);
    assert.deepEqual(readFileSync(resumed), data);
    assert.equal(hub.log.filter((l) => l.server === 'cdn').at(-1)!.range, 'bytes=50000-');

    // A server that goes silent mid-file counts as a cut once the timeout passes.
    const silent = opts(hub, { timeoutMs: 300, retries: 0 });
    hub.state.stallAfter = 70_000;
    await assert.rejects(hubDownload('org/tiny-pipe', file, silent), /cut at byte 70000 of 269200 \(timed out\); call again to resume/);
    assert.deepEqual(readFileSync(await hubDownload('org/tiny-pipe', file, silent)), data);
    assert.equal(hub.log.filter((l) => l.server === 'cdn').at(-1)!.range, 'bytes=70000-');
  } finally {
    await hub.stop();
  }
});

test('an aborted download rejects with the abort reason and keeps its partial file', TIMEOUT, async () => {
  const hub = await startHub(buildRepo());
  try {
    const o = opts(hub);
    const controller = new AbortController();
    const reason = new Error('stop now');
    await assert.rejects(
      hubDownload('org/tiny-pipe', 'controlnet/diffusion_pytorch_model.safetensors', {
        ...o,
        signal: controller.signal,
        onProgress: (p) => p.loaded > 0 && controller.abort(reason),
      }),
      (e) => e === reason,
    );
    const blobs = readdirSync(join(storage(o.cacheDir), 'blobs'));
    assert.ok(blobs.every((b) => b.endsWith('.incomplete')), blobs.join());
  } finally {
    await hub.stop();
  }
});

test('snapshotDownload fetches only what allowPatterns allow; one blob shared by two paths is fetched once', TIMEOUT, async () => {
  const repo = buildRepo();
  const hub = await startHub(repo);
  try {
    const o = opts(hub);
    const folder = await snapshotDownload('org/tiny-pipe', { ...o, allowPatterns: ['tokenizer/', 'extra/*', '*.md'] });
    assert.equal(folder, join(storage(o.cacheDir), 'snapshots', COMMIT));
    assert.deepEqual(listFiles(folder), [
      'README.md',
      'extra/empty.txt',
      'extra/vocab.json',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
    ]);
    for (const f of listFiles(folder)) assert.deepEqual(readFileSync(join(folder, f)), readFileSync(join(repo, f)), f);
    assert.equal(realpathSync(join(folder, 'extra/vocab.json')), realpathSync(join(folder, 'tokenizer/vocab.json')));
    assert.equal(hub.log.filter((l) => l.method === 'GET' && l.path.endsWith('/vocab.json')).length, 1, 'the shared blob is downloaded once');
    assert.ok(!hub.log.some((l) => l.method === 'GET' && l.path.endsWith('/empty.txt')), 'an empty file needs no GET');
    assert.ok(hub.log.some((l) => l.path === `/api/models/org/tiny-pipe/revision/main`));
    assert.equal(readFileSync(join(storage(o.cacheDir), 'refs', 'main'), 'utf8'), COMMIT);
  } finally {
    await hub.stop();
  }
});

test('resolvePretrained: a pipeline with variant fp16 gets the fp16 files, falls back per component, skips pickles', TIMEOUT, async () => {
  const repo = buildRepo();
  const hub = await startHub(repo);
  try {
    const o = opts(hub);
    const warnings: string[] = [];
    const folder = await resolvePretrained('org/tiny-pipe', { ...o, variant: 'fp16', warn: (w) => warnings.push(w) });
    assert.equal(folder, join(storage(o.cacheDir), 'snapshots', COMMIT));
    assert.deepEqual(listFiles(folder), [
      'controlnet/config.json',
      'controlnet/diffusion_pytorch_model.fp16.safetensors',
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/config.json',
      'text_encoder/model.safetensors',
      'tokenizer/merges.txt',
      'tokenizer/special_tokens_map.json',
      'tokenizer/tokenizer_config.json',
      'tokenizer/vocab.json',
      'vae/config.json',
      'vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors',
      'vae/diffusion_pytorch_model.fp16-00002-of-00002.safetensors',
      'vae/diffusion_pytorch_model.safetensors.index.fp16.json',
    ]);
    assert.match(warnings.join('\n'), /no "fp16" weights for text_encoder; loading their default weights/);
    assert.ok(!hub.log.some((l) => /\.(bin|ckpt)$/.test(l.path)), 'never asks for pickles');

    // The same id offline: the cached snapshot answers; a single model with a subfolder.
    const count = hub.log.length;
    assert.equal(await resolvePretrained('org/tiny-pipe', { ...o, variant: 'fp16', localFilesOnly: true, warn: () => {} }), folder);
    const model = await resolvePretrained('org/tiny-pipe', { ...o, subfolder: 'controlnet', variant: 'fp16', localFilesOnly: true });
    assert.equal(model, join(folder, 'controlnet'));
    assert.equal(hub.log.length, count);
    await assert.rejects(resolvePretrained('org/tiny-pipe', { ...o, subfolder: 'vae', localFilesOnly: true }), /org\/tiny-pipe\/vae: no safetensors weights in the cached snapshot/);

    // Online single model without a variant: config.json and the default weights only.
    const single = opts(hub);
    const vae = await resolvePretrained('org/tiny-pipe', { ...single, subfolder: 'vae' });
    assert.deepEqual(listFiles(dirname(vae)), ['vae/config.json', 'vae/diffusion_pytorch_model.safetensors']);
    await assert.rejects(resolvePretrained('org/tiny-pipe', { ...single, subfolder: 'text_encoder', variant: 'fp16' }), /text_encoder: no "fp16" safetensors weights in the repo; it has model\.safetensors, pytorch_model\.bin/);

    // A local folder is used as is.
    const local = fixture('tiny-sd-cnxs');
    assert.equal(await resolvePretrained(local), local);
    assert.equal(await resolvePretrained(local, { subfolder: 'unet' }), join(local, 'unet'));
    await assert.rejects(resolvePretrained('./no/such/folder'), /neither a local folder nor a Hub repo id/);
  } finally {
    await hub.stop();
  }
});

test('settings: cache root, endpoint, token and offline precedence', () => {
  const s = (env: Record<string, string>, options: HubOptions = {}) => resolveHubSettings(options, env);
  assert.equal(s({ HF_HUB_CACHE: '/a', HF_HOME: '/b', XDG_CACHE_HOME: '/c' }).cacheDir, '/a');
  assert.equal(s({ HF_HOME: '/b', XDG_CACHE_HOME: '/c' }).cacheDir, '/b/hub');
  assert.equal(s({ XDG_CACHE_HOME: '/c' }).cacheDir, '/c/huggingface/hub');
  assert.match(s({}, { token: false }).cacheDir, /[/\\]\.cache[/\\]huggingface[/\\]hub$/, 'token: false: the real token file is not read');
  assert.equal(s({ HF_HUB_CACHE: '/a' }, { cacheDir: '/x' }).cacheDir, '/x');
  assert.equal(s({}, { token: false }).endpoint, 'https://huggingface.co');
  assert.equal(s({ HF_ENDPOINT: 'https://mirror.example/', HF_HOME: '/nonexistent' }).endpoint, 'https://mirror.example');
  assert.equal(s({ HF_TOKEN: 'env', HF_HOME: '/nonexistent' }).token, 'env');
  assert.equal(s({ HF_TOKEN: 'env' }, { token: 'opt' }).token, 'opt');
  assert.equal(s({ HF_TOKEN: 'env' }, { token: false }).token, null);
  assert.equal(s({ HF_TOKEN: 'env', HF_HUB_DISABLE_IMPLICIT_TOKEN: '1' }).token, null);
  assert.equal(s({ HF_HUB_OFFLINE: 'true', HF_HOME: '/nonexistent' }).offline, 'HF_HUB_OFFLINE');
  assert.equal(s({ HF_HUB_OFFLINE: '0', HF_HOME: '/nonexistent' }).offline, null);
  assert.equal(s({ HF_HOME: '/nonexistent' }, { localFilesOnly: true }).offline, 'localFilesOnly');
});

test('file selection: fnmatch patterns and diffusers variant rules', () => {
  const files = ['a.json', 'unet/config.json', 'unet/x/deep.json', 'README.md'];
  assert.deepEqual(filterRepoFiles(files, ['*.json']), ['a.json', 'unet/config.json', 'unet/x/deep.json'], 'fnmatch * crosses /');
  assert.deepEqual(filterRepoFiles(files, ['unet/']), ['unet/config.json', 'unet/x/deep.json']);
  assert.deepEqual(filterRepoFiles(files, undefined, ['unet/*', '[AR]*.md']), ['a.json']);
  assert.deepEqual(filterRepoFiles(files, ['?.json']), ['a.json']);

  const names = [
    'diffusion_pytorch_model.safetensors',
    'diffusion_pytorch_model.fp16.safetensors',
    'diffusion_pytorch_model.fp16.bin',
    'model.fp16-00001-of-00002.safetensors',
    'model.safetensors.index.fp16.json',
    'diffusion_pytorch_model.ema.safetensors',
  ];
  assert.deepEqual(weightFilesFor(names), ['diffusion_pytorch_model.safetensors']);
  assert.deepEqual(weightFilesFor(names, 'fp16'), ['diffusion_pytorch_model.fp16.safetensors', 'model.fp16-00001-of-00002.safetensors', 'model.safetensors.index.fp16.json']);
  assert.deepEqual(weightFilesFor(['model-00001-of-00002.fp16.safetensors', 'model.safetensors.fp16.index.json'], 'fp16'), [
    'model-00001-of-00002.fp16.safetensors',
    'model.safetensors.fp16.index.json',
  ], 'legacy sharded variant layout');

  const repo = ['model_index.json', 'unet/config.json', 'unet/diffusion_pytorch_model.bin', 'vae/config.json', 'vae/diffusion_pytorch_model.safetensors'];
  assert.throws(() => selectPipelineFiles(repo, ['unet', 'vae'], undefined, 'o/r'), /o\/r\/unet: no safetensors weights in the repo; it has diffusion_pytorch_model\.bin/);
  assert.throws(() => selectPipelineFiles(repo, ['vae'], 'fp16', 'o/r'), /no component in the repo has "fp16" weights/);
  assert.deepEqual(selectPipelineFiles(repo, ['vae', 'nope'], undefined, 'o/r').warnings, ['o/r: model_index.json lists "nope" but the repo has no nope/ folder']);
  assert.throws(() => selectModelFiles(repo, 'text', undefined, 'o/r'), /o\/r\/text: no config\.json in the repo \(is "text" the right subfolder\?\)/);
});

test('blob lock: holders take turns; a lock left by a dead process or gone stale is taken over', TIMEOUT, async () => {
  const lock = join(tempDir(), '.locks', 'x.node.lock');
  const order: string[] = [];
  const hold = (name: string, ms: number) =>
    withFileLock(lock, async () => {
      order.push(`${name}+`);
      await new Promise((r) => setTimeout(r, ms));
      order.push(`${name}-`);
    }, { pollMs: 5 });
  await Promise.all([hold('a', 30), hold('b', 1)]);
  assert.ok(/^(a\+a-b\+b-|b\+b-a\+a-)$/.test(order.join('')), `never both at once: ${order.join(' ')}`);
  assert.ok(!existsSync(lock), 'released');

  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
  writeFileSync(lock, JSON.stringify({ pid: deadPid, host: hostname() }));
  assert.equal(await withFileLock(lock, async () => 'taken', { pollMs: 5 }), 'taken');
  writeFileSync(lock, JSON.stringify({ pid: process.ppid, host: 'elsewhere' }));
  utimesSync(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  assert.equal(await withFileLock(lock, async () => 'stale', { pollMs: 5, staleMs: 10_000 }), 'stale');
  writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname() }));
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('gave up')), 30);
  await assert.rejects(withFileLock(lock, async () => 'never', { pollMs: 5, signal: controller.signal }), /gave up/);
});
