/** The diffusers scheduler family in plain TypeScript: see scheduler.ts for the run-state design. */
export * from './config.js';
export { Scheduler, SchedulerRun, type StepOptions, type StepOutput, type TimestepValue } from './scheduler.js';
export { schedulerClass, schedulerFromConfig, SCHEDULER_CLASSES, type SchedulerClass } from './registry.js';
export type { PredictionType } from './prediction.js';
export type { TimestepSpacing } from './timesteps.js';
export type { BetaSchedule } from './betas.js';
export { DDIMScheduler, DDIMRun } from './ddim.js';
