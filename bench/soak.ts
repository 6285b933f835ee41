/**
 * Soak of the distributed mode (issue 15): an own redis-server (append-only, as in the tests), the API as
 * `cnxs serve --redis URL --workers 0` and `--workers` `cnxs worker` processes on the tiny checkpoint, and
 * `--jobs` generations through the HTTP API, `--concurrency` of them in flight at any time (each client
 * submits, polls its job until it ends, fetches the image, submits the next). Prints throughput, latency
 * percentiles (submit → finished, from the job's own createdAt/finishedAt, and submit → image fetched, as a
 * client sees it), the RSS of every process when ready, after the warm-up jobs and at the end, how many runs
 * were repeats (at-least-once), and the jobs lost — any job that did not end `succeeded` with its image
 * (must be 0). Not a test: figures only.
 *
 *   node --import tsx bench/soak.ts [--jobs 1000] [--workers 2] [--concurrency 16] [--steps 2] [--warmup 50]
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RedisQueue } from '../src/server/redis-queue.js';
import { freePort, spawnCnxs, waitForHttp, type CnxsProcess } from '../test/cnxs-process.js';
import { startRedisServer } from '../test/redis-server.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const D = join(HERE, '..', 'test', 'fixtures', 'tiny-sd-cnxs');
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    workers: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '16' },
    steps: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '50' },
  },
});
const JOBS = Number(values.jobs);
const WORKERS = Number(values.workers);
const CONCURRENCY = Number(values.concurrency);
const STEPS = Number(values.steps);
const WARMUP = Number(values.warmup);
const CONTROL = readFileSync(join(D, 'pipeline', 'control.png')).toString('base64');

interface Done {
  id: string;
  status: string;
  /** createdAt → finishedAt, as the queue recorded them. */
  queueMs: number;
  /** submit → image fetched, as this client saw it. */
  clientMs: number;
  imageBytes: number;
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const mb = (b: number | null) => (b === null ? '—' : `${(b / 2 ** 20).toFixed(0)} MB`);

const redis = await startRedisServer();
const procs: CnxsProcess[] = [];
let queue: RedisQueue | null = null;
try {
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const server = spawnCnxs('api', ['serve', '--redis', redis.url, '--workers', '0', '--port', String(port), '--max-queue', String(JOBS)]);
  procs.push(server);
  for (let i = 1; i <= WORKERS; i++) {
    procs.push(spawnCnxs(`worker ${i}`, ['worker', '--redis', redis.url, '--model', D, '--controlnet', join(D, 'controlnet'), '--offline']));
  }
  await Promise.all([
    waitForHttp(`${api}/healthz`, 120_000, () => server.output()),
    ...procs.slice(1).map((w) => w.waitFor(/ready: taking jobs/, 120_000)),
  ]);
  queue = await RedisQueue.connect({ url: redis.url });
  const rss = () => [...procs.map((p) => ({ name: p.name, rss: p.rss() })), { name: 'redis-server', rss: redis.rss() }];
  const rssReady = rss();
  let rssWarm = rssReady;

  const done: Done[] = [];
  const errors: string[] = [];
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    for (let i = next++; i < JOBS; i = next++) {
      const start = performance.now();
      try {
        const r = await fetch(`${api}/v1/generations`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: 'a photo of a bird', image: CONTROL, steps: STEPS, seed: String(i) }),
        });
        const { id } = (await r.json()) as { id: string };
        if (r.status !== 202) throw new Error(`submit answered ${r.status}`);
        let s: { status: string; createdAt: number; finishedAt?: number; images: string[] };
        for (;;) {
          const g = await fetch(`${api}/v1/generations/${id}`);
          s = (await g.json()) as typeof s;
          if (g.status !== 200) throw new Error(`status of ${id} answered ${g.status}: ${JSON.stringify(s)}`);
          if (!['queued', 'running'].includes(s.status)) break;
          await sleep(25);
        }
        const image = s.images[0] ? await fetch(new URL(s.images[0], api)) : null;
        const bytes = image && image.status === 200 ? (await image.arrayBuffer()).byteLength : 0;
        done.push({ id, status: s.status, queueMs: (s.finishedAt ?? NaN) - s.createdAt, clientMs: performance.now() - start, imageBytes: bytes });
        if (done.length === WARMUP) rssWarm = rss();
        if (done.length % 100 === 0) console.error(`${done.length}/${JOBS} done (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        errors.push(`job ${i}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  const seconds = (performance.now() - t0) / 1000;
  const rssEnd = rss();

  const ok = done.filter((d) => d.status === 'succeeded' && d.imageBytes > 0);
  const lost = JOBS - ok.length;
  let repeats = 0;
  for (const d of done) repeats += Math.max(0, (await queue.runs(d.id)) - 1);
  const measured = ok.slice(Math.min(WARMUP, ok.length / 2));
  const q = measured.map((d) => d.queueMs);
  const c = measured.map((d) => d.clientMs);
  console.log(`soak: ${JOBS} jobs (${STEPS} steps, 64×64, tiny-sd-cnxs) through cnxs serve --redis + ${WORKERS} cnxs workers, ${CONCURRENCY} in flight`);
  console.log(`  wall ${seconds.toFixed(1)} s, throughput ${(ok.length / seconds).toFixed(2)} jobs/s`);
  console.log(`  latency after the first ${WARMUP} jobs (ms): queue (created → finished) p50 ${percentile(q, 50).toFixed(0)}, p99 ${percentile(q, 99).toFixed(0)}, max ${Math.max(...q).toFixed(0)}; client (submit → image) p50 ${percentile(c, 50).toFixed(0)}, p99 ${percentile(c, 99).toFixed(0)}`);
  console.log('  RSS           ready     after warm-up   end');
  for (const [i, p] of rssReady.entries()) {
    console.log(`  ${p.name.padEnd(13)} ${mb(p.rss).padStart(7)}   ${mb(rssWarm[i]!.rss).padStart(9)}   ${mb(rssEnd[i]!.rss).padStart(9)}`);
  }
  console.log(`  runs repeated (at-least-once): ${repeats}; client errors: ${errors.length}${errors.length ? ` (${errors.slice(0, 3).join('; ')})` : ''}`);
  console.log(`  jobs lost: ${lost}`);
  process.exitCode = lost === 0 ? 0 : 1;
} finally {
  await queue?.close();
  await Promise.all(procs.map((p) => p.kill('SIGTERM', 30_000)));
  await redis.stop();
}
