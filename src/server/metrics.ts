/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4): jobs by state and the queue depth
 * (asked of the queue at scrape time, so every API process reports the shared queue), step and job
 * durations as histograms (observed by `instrumentRunner` around the runners this process runs; an API
 * process without workers reports none), HTTP responses by route and code, and the process's RSS.
 */
import type { GenerationRunner, JobState } from './jobs.js';

/** Bucket upper bounds in seconds: a tiny model's step is milliseconds, an SDXL step on a CPU tens of seconds. */
const STEP_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const JOB_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    for (const [i, b] of this.bounds.entries()) if (seconds <= b) this.counts[i]!++;
  }

  /** The `_bucket` (cumulative, as the format wants), `_sum` and `_count` lines. */
  lines(name: string): string[] {
    return [
      ...this.bounds.map((b, i) => `${name}_bucket{le="${b}"} ${this.counts[i]}`),
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    ];
  }
}

/** One server's (and its in-process workers') metrics; one instance per `startServer`, no globals. */
export class ServerMetrics {
  private readonly steps = new Histogram(STEP_BUCKETS);
  private readonly jobs = new Histogram(JOB_BUCKETS);
  private readonly responses = new Map<string, number>();

  observeStep(seconds: number): void {
    this.steps.observe(seconds);
  }

  observeJob(seconds: number): void {
    this.jobs.observe(seconds);
  }

  /** One response: `route` is the route's template (`/v1/generations/{id}`), so ids do not explode the series. */
  countResponse(method: string, route: string, code: number): void {
    const key = `method="${method}",route="${escapeLabel(route)}",code="${code}"`;
    this.responses.set(key, (this.responses.get(key) ?? 0) + 1);
  }

  /** The exposition text, with the queue's counts of this moment. */
  render(counts: Readonly<Record<JobState, number>>, rssBytes: number): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    metric('cnxs_jobs', 'gauge', 'Jobs known to the queue, by state (finished ones until their results expire).',
      Object.entries(counts).map(([state, n]) => `cnxs_jobs{state="${state}"} ${n}`));
    metric('cnxs_queue_depth', 'gauge', 'Jobs waiting for a worker.', [`cnxs_queue_depth ${counts.queued}`]);
    metric('cnxs_step_seconds', 'histogram', 'Time between denoising steps of the jobs this process ran.', this.steps.lines('cnxs_step_seconds'));
    metric('cnxs_job_seconds', 'histogram', 'Run time of the jobs this process ran, loading excluded.', this.jobs.lines('cnxs_job_seconds'));
    metric('cnxs_http_responses_total', 'counter', 'HTTP responses by method, route and status code.',
      [...this.responses].map(([labels, n]) => `cnxs_http_responses_total{${labels}} ${n}`));
    metric('process_resident_memory_bytes', 'gauge', 'Resident set size of this process.', [`process_resident_memory_bytes ${rssBytes}`]);
    return `${out.join('\n')}\n`;
  }
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/**
 * A runner that reports to `metrics`: each job's run time, and each step's time as the gap between
 * consecutive progress reports (the first step's gap would include prompt encoding, so it is not counted).
 */
export function instrumentRunner(runner: GenerationRunner, metrics: ServerMetrics): GenerationRunner {
  return {
    async run(request, options = {}) {
      const t0 = performance.now();
      let last: number | undefined;
      const output = await runner.run(request, {
        ...options,
        onProgress: (p) => {
          const now = performance.now();
          if (last !== undefined) metrics.observeStep((now - last) / 1000);
          last = now;
          options.onProgress?.(p);
        },
      });
      metrics.observeJob((performance.now() - t0) / 1000);
      return output;
    },
  };
}
