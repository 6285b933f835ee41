/**
 * `controlnet-xs/server`: the service behind `cnxs serve` and `cnxs worker`, for programs that embed
 * it. A subpath of its own so that importing the library does not load BullMQ and ioredis.
 */
export * from './jobs.js';
export { parseGenerationRequest, GENERATION_FIELDS, BadRequestError, DEFAULT_LIMITS, type ServerLimits, parseA1111Txt2Img, a1111Response } from './request.js';
export { createPipelineRunner, RunnerBusyError, type PipelineRunner, type PipelineRunnerOptions, type RunnerDescription } from './runner.js';
export { EmbeddedQueue, QueueClosedError, type EmbeddedQueueOptions } from './embedded-queue.js';
export { startServer, routeTable, type StartServerOptions, type RunningServer } from './http.js';
export { openApiDocument } from './openapi.js';
export { ServerMetrics, instrumentRunner } from './metrics.js';
export { RedisQueue, type RedisQueueOptions } from './redis-queue.js';
export { startRedisWorker, type RedisWorker, type RedisWorkerOptions } from './redis-worker.js';
export { RedisConnectionError } from './redis-connection.js';
