/**
 * Schedulers by the names users write: the short aliases, A1111's sampler labels and diffusers class
 * names (`schedulers/aliases.ts`). A named scheduler is a new object built from the model's config, so
 * the model's own scheduler is never changed by it.
 */
import { SCHEDULER_ALIASES, findSchedulerAlias, schedulerAlias, schedulerLabel } from '../schedulers/aliases.js';
import { schedulerClass, type Scheduler } from '../schedulers/index.js';

/** The alias key (`euler-a`) a written sampler name stands for, or undefined when there is none. */
export function schedulerKey(name: string): string | undefined {
  return findSchedulerAlias(name)?.key;
}

/** Every alias key, for messages and menus. */
export function schedulerKeys(): string[] {
  return Object.keys(SCHEDULER_ALIASES);
}

/**
 * The scheduler a name stands for (any spelling `schedulerKey` takes; a ConfigError for others), built on
 * the model's scheduler config (its betas, timestep spacing, …).
 */
export function namedScheduler(modelScheduler: Scheduler, name: string): Scheduler {
  const alias = schedulerAlias(name);
  return schedulerClass(alias.className).fromConfig({ ...modelScheduler.config, ...alias.overrides });
}

/** How A1111 metadata names a scheduler ('Euler a', 'DPM++ 2M Karras', …). */
export function samplerLabel(scheduler: Scheduler): string {
  return schedulerLabel(scheduler.config);
}
