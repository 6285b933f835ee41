/** Short scheduler names (CLI, UIs) → the diffusers class and config overrides they stand for. */
import { ConfigError } from '../errors.js';
import type { SchedulerClassName } from './config.js';

export interface SchedulerAlias {
  className: SchedulerClassName;
  overrides: Record<string, unknown>;
  /** How A1111-style metadata names the sampler. */
  label: string;
}

export const SCHEDULER_ALIASES: Readonly<Record<string, SchedulerAlias>> = Object.freeze({
  ddim: { className: 'DDIMScheduler', overrides: {}, label: 'DDIM' },
  pndm: { className: 'PNDMScheduler', overrides: {}, label: 'PLMS' },
  euler: { className: 'EulerDiscreteScheduler', overrides: {}, label: 'Euler' },
  'euler-a': { className: 'EulerAncestralDiscreteScheduler', overrides: {}, label: 'Euler a' },
  lms: { className: 'LMSDiscreteScheduler', overrides: {}, label: 'LMS' },
  heun: { className: 'HeunDiscreteScheduler', overrides: {}, label: 'Heun' },
  dpm2: { className: 'KDPM2DiscreteScheduler', overrides: {}, label: 'DPM2' },
  'dpm2-a': { className: 'KDPM2AncestralDiscreteScheduler', overrides: {}, label: 'DPM2 a' },
  'dpm++2m': { className: 'DPMSolverMultistepScheduler', overrides: {}, label: 'DPM++ 2M' },
  'dpm++2m-karras': { className: 'DPMSolverMultistepScheduler', overrides: { use_karras_sigmas: true }, label: 'DPM++ 2M Karras' },
  'dpm++2s': { className: 'DPMSolverSinglestepScheduler', overrides: {}, label: 'DPM++ 2S' },
  unipc: { className: 'UniPCMultistepScheduler', overrides: {}, label: 'UniPC' },
  deis: { className: 'DEISMultistepScheduler', overrides: {}, label: 'DEIS' },
  ddpm: { className: 'DDPMScheduler', overrides: {}, label: 'DDPM' },
  lcm: { className: 'LCMScheduler', overrides: {}, label: 'LCM' },
});

export function schedulerAlias(name: string): SchedulerAlias {
  const a = SCHEDULER_ALIASES[name.toLowerCase()];
  if (!a) throw new ConfigError(`unknown scheduler "${name}"; choose one of ${Object.keys(SCHEDULER_ALIASES).join(', ')}`);
  return a;
}
