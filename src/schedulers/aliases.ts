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

/**
 * Every way a sampler is written → its alias: the short names above, A1111's labels as the CLI writes
 * them into PNGs ('Euler a', 'DPM++ 2M Karras', 'PLMS'), and diffusers class names with or without
 * the `Scheduler` suffix (a class stands for its plain alias). Case, spaces, `_` and `-` are ignored.
 */
function spellings(): Map<string, { key: string; alias: SchedulerAlias }> {
  const m = new Map<string, { key: string; alias: SchedulerAlias }>();
  const add = (spelling: string, key: string, alias: SchedulerAlias) => {
    const k = normalize(spelling);
    if (!m.has(k)) m.set(k, { key, alias });
  };
  for (const [key, a] of Object.entries(SCHEDULER_ALIASES)) {
    add(key, key, a);
    add(a.label, key, a);
  }
  for (const [key, a] of Object.entries(SCHEDULER_ALIASES)) {
    if (Object.keys(a.overrides).length > 0) continue;
    add(a.className, key, a);
    add(a.className.replace(/Scheduler$/, ''), key, a);
  }
  return m;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/[\s_-]+/g, '');
}

/** The alias a sampler name stands for (see `spellings`), or undefined. */
export function findSchedulerAlias(name: string): { key: string; alias: SchedulerAlias } | undefined {
  return spellings().get(normalize(name));
}

export function schedulerAlias(name: string): SchedulerAlias {
  const found = findSchedulerAlias(name);
  if (!found) throw new ConfigError(`unknown scheduler "${name}"; choose one of ${Object.keys(SCHEDULER_ALIASES).join(', ')}`);
  return found.alias;
}

/**
 * The A1111 label of a scheduler config: the alias whose class and overrides it matches ('DPM++ 2M
 * Karras' for DPMSolverMultistep with Karras sigmas), else the class name without `Scheduler`.
 */
export function schedulerLabel(config: Readonly<Record<string, unknown>>): string {
  const className = String(config['_class_name'] ?? '');
  const matches = Object.values(SCHEDULER_ALIASES).filter(
    (a) => a.className === className && Object.entries(a.overrides).every(([k, v]) => config[k] === v),
  );
  // the most specific match: Karras sigmas on beats the plain alias
  matches.sort((a, b) => Object.keys(b.overrides).length - Object.keys(a.overrides).length);
  return matches[0]?.label ?? className.replace(/Scheduler$/, '');
}
