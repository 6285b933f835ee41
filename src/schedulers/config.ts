/**
 * Scheduler configs as diffusers reads and writes them (`scheduler_config.json`).
 *
 * `Cls.from_config(cfg)` in diffusers 0.33.1:
 * 1. The class's `__init__` keys are taken from `cfg`; missing ones get the class default.
 * 2. Every other key of `cfg` is registered as a "hidden" config entry, so that swapping back to
 *    a compatible class keeps it (e.g. `skip_prk_steps` survives PNDM → Euler → PNDM).
 * 3. `save_config` writes all of it, sorted, with `_class_name` and `_diffusers_version`.
 *
 * Here hidden keys are kept when some scheduler of this family knows them, and dropped
 * otherwise, so a typo never leaks into the written config.
 *
 * This dict is `scheduler.config`. Scheduler code reads the class's own keys through
 * `scheduler.settings`, their typed, camelCased parse (settings.ts).
 */
import { ConfigError } from '../errors.js';

/** A JSON value; `-Infinity` is allowed for `lambda_min_clipped` (Python writes it). */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** A scheduler config as written by `save_config`. */
export type SchedulerConfig = Readonly<Record<string, JsonValue>>;

/** What users may pass to `fromConfig`: a parsed `scheduler_config.json` or a `config` object. */
export type SchedulerConfigInput = Readonly<Record<string, unknown>>;

/** The diffusers version whose semantics (and `_diffusers_version`) these schedulers follow. */
export const DIFFUSERS_VERSION = '0.33.1';

const BETAS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
} as const;

const K_BETAS = { ...BETAS, beta_start: 0.00085, beta_end: 0.012 } as const;

const THRESHOLDING = {
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
} as const;

const SIGMA_KINDS = {
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
} as const;

/** The `__init__` defaults of every class, copied from diffusers 0.33.1 signatures. */
export const SCHEDULER_DEFAULTS = {
  DDIMScheduler: {
    ...BETAS,
    clip_sample: true,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    clip_sample_range: 1.0,
    timestep_spacing: 'leading',
    rescale_betas_zero_snr: false,
  },
  PNDMScheduler: {
    ...BETAS,
    skip_prk_steps: false,
    set_alpha_to_one: false,
    prediction_type: 'epsilon',
    timestep_spacing: 'leading',
    steps_offset: 0,
  },
  EulerDiscreteScheduler: {
    ...BETAS,
    prediction_type: 'epsilon',
    interpolation_type: 'linear',
    ...SIGMA_KINDS,
    sigma_min: null,
    sigma_max: null,
    timestep_spacing: 'linspace',
    timestep_type: 'discrete',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
    final_sigmas_type: 'zero',
  },
  EulerAncestralDiscreteScheduler: {
    ...BETAS,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  LMSDiscreteScheduler: {
    ...BETAS,
    ...SIGMA_KINDS,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  DPMSolverMultistepScheduler: {
    ...BETAS,
    solver_order: 2,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    algorithm_type: 'dpmsolver++',
    solver_type: 'midpoint',
    lower_order_final: true,
    euler_at_final: false,
    ...SIGMA_KINDS,
    use_lu_lambdas: false,
    use_flow_sigmas: false,
    flow_shift: 1.0,
    final_sigmas_type: 'zero',
    lambda_min_clipped: -Infinity,
    variance_type: null,
    timestep_spacing: 'linspace',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  DPMSolverSinglestepScheduler: {
    ...BETAS,
    solver_order: 2,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    algorithm_type: 'dpmsolver++',
    solver_type: 'midpoint',
    lower_order_final: false,
    ...SIGMA_KINDS,
    use_flow_sigmas: false,
    flow_shift: 1.0,
    final_sigmas_type: 'zero',
    lambda_min_clipped: -Infinity,
    variance_type: null,
  },
  UniPCMultistepScheduler: {
    ...BETAS,
    solver_order: 2,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    predict_x0: true,
    solver_type: 'bh2',
    lower_order_final: true,
    disable_corrector: [],
    solver_p: null,
    ...SIGMA_KINDS,
    use_flow_sigmas: false,
    flow_shift: 1.0,
    timestep_spacing: 'linspace',
    steps_offset: 0,
    final_sigmas_type: 'zero',
    rescale_betas_zero_snr: false,
  },
  DDPMScheduler: {
    ...BETAS,
    variance_type: 'fixed_small',
    clip_sample: true,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    clip_sample_range: 1.0,
    timestep_spacing: 'leading',
    steps_offset: 0,
    rescale_betas_zero_snr: false,
  },
  HeunDiscreteScheduler: {
    ...K_BETAS,
    prediction_type: 'epsilon',
    ...SIGMA_KINDS,
    clip_sample: false,
    clip_sample_range: 1.0,
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  KDPM2DiscreteScheduler: {
    ...K_BETAS,
    ...SIGMA_KINDS,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  KDPM2AncestralDiscreteScheduler: {
    ...K_BETAS,
    ...SIGMA_KINDS,
    prediction_type: 'epsilon',
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  DEISMultistepScheduler: {
    ...BETAS,
    solver_order: 2,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    algorithm_type: 'deis',
    solver_type: 'logrho',
    lower_order_final: true,
    ...SIGMA_KINDS,
    use_flow_sigmas: false,
    flow_shift: 1.0,
    timestep_spacing: 'linspace',
    steps_offset: 0,
  },
  LCMScheduler: {
    ...K_BETAS,
    beta_schedule: 'scaled_linear',
    original_inference_steps: 50,
    clip_sample: false,
    clip_sample_range: 1.0,
    set_alpha_to_one: true,
    steps_offset: 0,
    prediction_type: 'epsilon',
    ...THRESHOLDING,
    timestep_spacing: 'leading',
    timestep_scaling: 10.0,
    rescale_betas_zero_snr: false,
  },
} as const satisfies Record<string, SchedulerConfig>;

/** The diffusers class names this package implements. */
export type SchedulerClassName = keyof typeof SCHEDULER_DEFAULTS;

export const SCHEDULER_CLASS_NAMES = Object.keys(SCHEDULER_DEFAULTS) as readonly SchedulerClassName[];

/** Every `__init__` key of every class in the family: the hidden keys worth keeping. */
const FAMILY_KEYS: ReadonlySet<string> = new Set(SCHEDULER_CLASS_NAMES.flatMap((c) => Object.keys(SCHEDULER_DEFAULTS[c])));

export function isSchedulerClassName(name: unknown): name is SchedulerClassName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(SCHEDULER_DEFAULTS, name);
}

/** Check that a config value is plain JSON data (numbers may be ±Infinity). */
function toJsonValue(className: string, key: string, value: unknown): JsonValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') {
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => toJsonValue(className, `${key}[${i}]`, v));
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, (v) => Number(v));
  }
  if (typeof value === 'object' && value !== undefined) {
    const out: Record<string, JsonValue> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJsonValue(className, `${key}.${k}`, v);
    return out;
  }
  throw new ConfigError(`${className}: config key "${key}" holds a ${typeof value}, which is not JSON data`);
}

/**
 * The full config `save_config` would write for `className` built from `given`: class defaults,
 * overridden by the class's own keys from `given`, plus the family's keys `given` carries for
 * other classes, plus `_class_name` and `_diffusers_version`. Keys come out sorted.
 */
export function resolveConfig(className: SchedulerClassName, given: SchedulerConfigInput): SchedulerConfig {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new ConfigError(`${className}: a scheduler config must be an object, got ${describe(given)}`);
  }
  const defaults: SchedulerConfig = SCHEDULER_DEFAULTS[className];
  const merged: Record<string, JsonValue> = { ...defaults };
  for (const [key, value] of Object.entries(given)) {
    if (key.startsWith('_') || value === undefined) continue;
    if (key in defaults || FAMILY_KEYS.has(key)) merged[key] = toJsonValue(className, key, value);
  }
  merged._class_name = className;
  merged._diffusers_version = DIFFUSERS_VERSION;
  const sorted: Record<string, JsonValue> = {};
  // Keys sorted like save_config (by UTF-16 code units, the default sort); keys are unique.
  const byKey = ([a]: [string, JsonValue], [b]: [string, JsonValue]): number => (a < b ? -1 : 1);
  for (const [key, value] of Object.entries(merged).sort(byKey)) sorted[key] = value;
  return Object.freeze(sorted);
}

/** A short, readable rendering of a config value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  try {
    const s = JSON.stringify(value);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * diffusers' `getattr(self.config, key, None)` for a number: the value whether the key is the
 * class's own or a hidden one another class registered (`sigma_min` / `sigma_max` reach Heun or
 * DPM-Solver that way), else null.
 */
export function configNumber(config: SchedulerConfig, key: string): number | null {
  const v = config[key];
  return typeof v === 'number' ? v : null;
}

/** Typed, validated reads from a resolved config (what settings.ts builds on); every failure is a `ConfigError` naming key and value. */
export class ConfigReader {
  constructor(
    readonly className: string,
    readonly config: SchedulerConfig,
  ) {}

  private fail(key: string, want: string): never {
    throw new ConfigError(`${this.className}: config "${key}" must be ${want}, got ${describe(this.config[key])}`);
  }

  number(key: string): number {
    const v = this.config[key];
    if (typeof v !== 'number' || Number.isNaN(v)) this.fail(key, 'a number');
    return v;
  }

  finite(key: string): number {
    const v = this.number(key);
    if (!Number.isFinite(v)) this.fail(key, 'a finite number');
    return v;
  }

  int(key: string, min = -Infinity): number {
    const v = this.config[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      this.fail(key, min === -Infinity ? 'an integer' : `an integer >= ${min}`);
    }
    return v;
  }

  bool(key: string): boolean {
    const v = this.config[key];
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  optionalNumber(key: string): number | null {
    const v = this.config[key];
    if (v === null || v === undefined) return null;
    return this.finite(key);
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T {
    const v = this.config[key];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    }
    return v as T;
  }

  optionalOneOf<T extends string>(key: string, allowed: readonly T[]): T | null {
    const v = this.config[key];
    if (v === null || v === undefined) return null;
    return this.oneOf(key, allowed);
  }

  numberList(key: string): number[] | null {
    const v = this.config[key];
    if (v === null || v === undefined) return null;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      this.fail(key, 'null or a list of finite numbers');
    }
    return v as number[];
  }
}
