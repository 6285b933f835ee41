/**
 * `_class_name` → class, and `schedulerFromConfig`, the equivalent of reading a
 * `scheduler_config.json` with the class it names.
 */
import { ConfigError } from '../errors.js';
import {
  describe,
  isSchedulerClassName,
  SCHEDULER_CLASS_NAMES,
  type SchedulerClassName,
  type SchedulerConfigInput,
} from './config.js';
import { DDIMScheduler } from './ddim.js';
import { DDPMScheduler } from './ddpm.js';
import { DEISMultistepScheduler } from './deis.js';
import { DPMSolverMultistepScheduler } from './dpmsolver-multistep.js';
import { DPMSolverSinglestepScheduler } from './dpmsolver-singlestep.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.js';
import { EulerDiscreteScheduler } from './euler.js';
import { HeunDiscreteScheduler } from './heun.js';
import { KDPM2AncestralDiscreteScheduler } from './kdpm2-ancestral.js';
import { KDPM2DiscreteScheduler } from './kdpm2.js';
import { LCMScheduler } from './lcm.js';
import { LMSDiscreteScheduler } from './lms.js';
import { PNDMScheduler } from './pndm.js';
import { UniPCMultistepScheduler } from './unipc.js';
import type { Scheduler } from './current-run.js';

/** A scheduler class: constructible from a config, with diffusers' `from_config`. */
export interface SchedulerClass {
  new (config?: SchedulerConfigInput): Scheduler;
  fromConfig(config?: SchedulerConfigInput): Scheduler;
}

/** Every implemented class by its diffusers name. */
export const SCHEDULER_CLASSES: Readonly<Partial<Record<SchedulerClassName, SchedulerClass>>> = Object.freeze({
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  LMSDiscreteScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSinglestepScheduler,
  UniPCMultistepScheduler,
  DEISMultistepScheduler,
  DDPMScheduler,
  HeunDiscreteScheduler,
  KDPM2DiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  LCMScheduler,
});

/** The class for a diffusers `_class_name`; `ConfigError` naming it when unknown. */
export function schedulerClass(name: unknown): SchedulerClass {
  const cls = isSchedulerClassName(name) ? SCHEDULER_CLASSES[name] : undefined;
  if (cls === undefined) {
    throw new ConfigError(
      `unknown scheduler _class_name ${describe(name)}; known: ${SCHEDULER_CLASS_NAMES.join(', ')}`,
    );
  }
  return cls;
}

/** Build the scheduler a config names in `_class_name` (a parsed `scheduler_config.json`). */
export function schedulerFromConfig(config: SchedulerConfigInput): Scheduler {
  if (config === null || typeof config !== 'object') {
    throw new ConfigError(`a scheduler config must be an object, got ${describe(config)}`);
  }
  if (!('_class_name' in config)) throw new ConfigError('scheduler config has no _class_name');
  return schedulerClass(config._class_name).fromConfig(config);
}
