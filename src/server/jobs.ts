/**
 * The contract between the HTTP API and whatever runs the generations: a validated request, a job's
 * status, the events a job emits, and the queue both sides share. Two queues implement it — the
 * in-process one (`embedded-queue.ts`, the default: nothing to install) and BullMQ on Redis
 * (`redis-queue.ts`, for API processes and `cnxs worker`s on any machines) — so the routes never know
 * which one they talk to. Everything here is plain JSON-able data: a request crosses Redis as is.
 */

/** A generation request after validation: every field checked, defaults filled, names the library's. */
export interface GenerationRequest {
  prompt: string;
  negativePrompt?: string;
  /** The control image file (PNG or JPEG) as base64, without a data-URL prefix. */
  imageBase64: string;
  /** Run OpenCV-exact Canny on the image first (thresholds as `cnxs canny`); absent: the image is the control image. */
  canny?: { low: number; high: number };
  steps: number;
  guidanceScale: number;
  controlScale: number;
  controlStart: number;
  controlEnd: number;
  /** A name `cnxs generate --scheduler` accepts (class name or A1111 sampler label); absent: the model's own. */
  scheduler?: string;
  /** Decimal string of a u64 (JSON numbers lose exactness above 2^53). Image k uses seed + k, as the CLI does. */
  seed: string;
  /** Absent: chosen from the model's resolution and the control image's aspect, as the CLI does. */
  width?: number;
  height?: number;
  numImages: number;
}

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'canceled']);

/** What `GET /v1/generations/{id}` reports (image URLs are made by the route from `imageCount`). */
export interface JobStatus {
  id: string;
  status: JobState;
  /** Position in the queue (0 = next) while queued. */
  position?: number;
  progress: { step: number; total: number };
  /** Number of result images stored (0 until it succeeded). */
  imageCount: number;
  /** The A1111 `parameters` text of each image (also in its PNG), and what the run resolved. */
  result?: GenerationResultInfo;
  /** One line for the user; never a stack. */
  error?: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
}

export interface GenerationResultInfo {
  parameters: string[];
  seeds: string[];
  width: number;
  height: number;
  sampler: string;
  /** Where the UNet ran ('cpu', 'cuda', …). */
  device: string;
  /** Per image whether the safety checker flagged it; null: no checker ran. */
  nsfwContentDetected: boolean[] | null;
  seconds: number;
}

/** What a job's event stream carries (the SSE route writes one `event:` per item). */
export type JobEvent =
  | { type: 'status'; status: JobStatus }
  | { type: 'progress'; step: number; total: number; /** a PNG of the current latents, base64 */ previewBase64?: string }
  | { type: 'done'; status: JobStatus };

/** `submit` when the queue already holds its cap: the route answers 429 with `Retry-After`. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super('the queue is full; try again later');
  }
}

export interface JobQueue {
  /** Enqueue a validated request; `position` counts the jobs ahead of it. */
  submit(request: GenerationRequest): Promise<{ id: string; position: number }>;
  /** null: no such job (or its results expired). */
  get(id: string): Promise<JobStatus | null>;
  /** PNG bytes (with their `parameters` chunk) of image n, or null. */
  image(id: string, n: number): Promise<Uint8Array | null>;
  /** Cancel a queued job, or stop a running one between steps. Returns the status after, null if unknown. */
  cancel(id: string): Promise<JobStatus | null>;
  /**
   * Follow a job: the current status first, then progress (with previews), ending with `done`. The
   * iterator ends after `done`; breaking out of it unsubscribes.
   */
  events(id: string, options?: { signal?: AbortSignal }): AsyncIterable<JobEvent>;
  /** Jobs by state, for `/metrics` and `/readyz`. */
  counts(): Promise<Record<JobState, number>>;
  /** The queue (and its store) is reachable. */
  ready(): Promise<boolean>;
  /** Stop taking jobs; the running one finishes or is handed back to the queue; then release everything. */
  close(): Promise<void>;
}

/** What a worker's runner produced for one job. */
export interface GenerationOutput {
  /** PNG files, each with its A1111 `parameters` text chunk (the same bytes `cnxs generate` writes). */
  images: Uint8Array[];
  info: GenerationResultInfo;
}

export interface RunOptions {
  /** Fires between steps: the run stops with an AbortError. */
  signal?: AbortSignal;
  onProgress?: (p: { step: number; total: number; previewPng?: Uint8Array }) => void;
}

/** Runs one request on a loaded pipeline (`runner.ts`); queues call it, one job at a time per worker. */
export interface GenerationRunner {
  run(request: GenerationRequest, options?: RunOptions): Promise<GenerationOutput>;
}
