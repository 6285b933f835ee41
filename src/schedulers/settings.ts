/**
 * Typed scheduler configs: the model-config idiom (util/config.ts) applied to schedulers.
 *
 * A scheduler has two views of one config:
 * - `scheduler.config`, diffusers' dict exactly as `save_config` writes it (snake_case, hidden
 *   keys of sibling classes, `_class_name`): what is saved, compared, and passed on to another
 *   class's `fromConfig` (config.ts builds it);
 * - `scheduler.settings`, the class's own keys parsed once into validated, camelCased fields
 *   (`settings.numTrainTimesteps`, `settings.timestepSpacing`), typed per class by
 *   {@link SchedulerSettings}. Scheduler code reads these, never string keys.
 *
 * The keys of each class and their defaults stay in one table, `SCHEDULER_DEFAULTS` (config.ts);
 * this file says what each key's value must be: one reader per key for the whole family
 * (`FIELDS`), and `CLASS_FIELDS` where a class accepts fewer values than the family (PNDM's
 * prediction types, Heun's extra beta schedule, …). Every failure is a `ConfigError` naming the
 * class, the key and the value. Keys outside a class's table are not parsed: they only ride
 * along in `config` as diffusers' hidden keys.
 */
import { ConfigError } from '../errors.js';
import { snakeToCamel, type Camelize } from '../util/config.js';
import { COMMON_BETA_SCHEDULES, type BetaSchedule } from './betas.js';
import { ConfigReader, describe, SCHEDULER_DEFAULTS, type SchedulerClassName, type SchedulerConfig } from './config.js';
import { PREDICTION_TYPES } from './prediction.js';
import { TIMESTEP_SPACINGS } from './timesteps.js';

/** Validates one key of a resolved config and returns its typed value. */
type Reader<V> = (r: ConfigReader, key: string) => V;

const bool: Reader<boolean> = (r, key) => r.bool(key);
const finite: Reader<number> = (r, key) => r.finite(key);
/** Any number, ±Infinity included (`lambda_min_clipped` defaults to -Infinity). */
const number: Reader<number> = (r, key) => r.number(key);
const optionalNumber: Reader<number | null> = (r, key) => r.optionalNumber(key);
const int =
  (min?: number): Reader<number> =>
  (r, key) =>
    r.int(key, min);
const oneOf =
  <const T extends string>(allowed: readonly T[]): Reader<T> =>
  (r, key) =>
    r.oneOf(key, allowed);
const optionalOneOf =
  <const T extends string>(allowed: readonly T[]): Reader<T | null> =>
  (r, key) =>
    r.optionalOneOf(key, allowed);

/** `beta_schedule`, with the message of diffusers' NotImplementedError. */
const betaSchedule =
  (allowed: readonly BetaSchedule[]): Reader<BetaSchedule> =>
  (r, key) => {
    const v = r.config[key];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(
        `${r.className}: beta_schedule ${describe(v)} is not implemented; ` +
          `use one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`,
      );
    }
    return v as BetaSchedule;
  };

const DPM_PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample', 'flow_prediction'] as const;
const EPS_OR_V = ['epsilon', 'v_prediction'] as const;

type Defaults = typeof SCHEDULER_DEFAULTS;

/** Every `__init__` key of the family. */
export type SchedulerKey = { [C in SchedulerClassName]: keyof Defaults[C] }[SchedulerClassName];

/** One reader per key; the family's widest domain where classes differ (see `CLASS_FIELDS`). */
const FIELDS = {
  num_train_timesteps: int(1),
  beta_start: finite,
  beta_end: finite,
  beta_schedule: betaSchedule(COMMON_BETA_SCHEDULES),
  trained_betas: (r, key): readonly number[] | null => r.numberList(key),
  prediction_type: oneOf(PREDICTION_TYPES),
  timestep_spacing: oneOf(TIMESTEP_SPACINGS),
  steps_offset: int(),
  rescale_betas_zero_snr: bool,
  // x̂₀ post-processing
  thresholding: bool,
  dynamic_thresholding_ratio: finite,
  sample_max_value: finite,
  clip_sample: bool,
  clip_sample_range: finite,
  // ᾱ-indexed classes
  set_alpha_to_one: bool,
  skip_prk_steps: bool,
  original_inference_steps: int(1),
  timestep_scaling: finite,
  // σ ramps and the Karras-style grid
  use_karras_sigmas: bool,
  use_exponential_sigmas: bool,
  use_beta_sigmas: bool,
  interpolation_type: oneOf(['linear', 'log_linear']),
  sigma_min: optionalNumber,
  sigma_max: optionalNumber,
  timestep_type: oneOf(['discrete', 'continuous']),
  final_sigmas_type: oneOf(['zero', 'sigma_min']),
  // exponential-integrator solvers
  solver_order: int(1),
  algorithm_type: oneOf(['dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++', 'deis']),
  solver_type: oneOf(['midpoint', 'heun', 'logrho', 'bh1', 'bh2']),
  lower_order_final: bool,
  euler_at_final: bool,
  use_lu_lambdas: bool,
  use_flow_sigmas: bool,
  flow_shift: finite,
  lambda_min_clipped: number,
  variance_type: optionalOneOf(['learned', 'learned_range']),
  predict_x0: bool,
  disable_corrector: (r, key): readonly number[] => r.numberList(key) ?? [],
  /** UniPC's external predictor (a scheduler object in diffusers) has no JSON form here. */
  solver_p: (r, key): null => {
    const v = r.config[key];
    if (v !== null && v !== undefined) {
      throw new ConfigError(`${r.className}: solver_p (an external predictor scheduler) is not supported`);
    }
    return null;
  },
} satisfies Record<SchedulerKey, Reader<unknown>>;

/** Keys whose accepted values depend on the class, as in diffusers' per-class checks. */
const CLASS_FIELDS = {
  PNDMScheduler: { prediction_type: oneOf(EPS_OR_V) },
  DDPMScheduler: {
    beta_schedule: betaSchedule([...COMMON_BETA_SCHEDULES, 'sigmoid']),
    variance_type: oneOf(['fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', 'learned', 'learned_range']),
  },
  HeunDiscreteScheduler: { beta_schedule: betaSchedule([...COMMON_BETA_SCHEDULES, 'exp']) },
  EulerAncestralDiscreteScheduler: { prediction_type: oneOf(EPS_OR_V) },
  KDPM2DiscreteScheduler: { prediction_type: oneOf(EPS_OR_V) },
  KDPM2AncestralDiscreteScheduler: { prediction_type: oneOf(EPS_OR_V) },
  DPMSolverMultistepScheduler: { prediction_type: oneOf(DPM_PREDICTION_TYPES) },
  DPMSolverSinglestepScheduler: {
    prediction_type: oneOf(DPM_PREDICTION_TYPES),
    algorithm_type: oneOf(['dpmsolver', 'dpmsolver++', 'sde-dpmsolver++', 'deis']),
  },
  UniPCMultistepScheduler: {
    prediction_type: oneOf(DPM_PREDICTION_TYPES),
    solver_type: oneOf(['bh1', 'bh2', 'midpoint', 'heun', 'logrho']),
  },
  DEISMultistepScheduler: {
    prediction_type: oneOf(DPM_PREDICTION_TYPES),
    algorithm_type: oneOf(['deis', 'dpmsolver', 'dpmsolver++']),
    solver_type: oneOf(['logrho', 'midpoint', 'heun', 'bh1', 'bh2']),
  },
} satisfies { readonly [C in SchedulerClassName]?: { readonly [K in keyof Defaults[C]]?: Reader<unknown> } };

type ClassFields = typeof CLASS_FIELDS;
type ReaderOf<C extends SchedulerClassName, K extends SchedulerKey> = C extends keyof ClassFields
  ? K extends keyof ClassFields[C]
    ? ClassFields[C][K]
    : (typeof FIELDS)[K]
  : (typeof FIELDS)[K];
type ValueOf<R> = R extends Reader<infer V> ? V : never;

/**
 * The typed config of one class: its `__init__` keys, camelCased, with the types its readers
 * return (`SchedulerSettings<'DDIMScheduler'>['timestepSpacing']` is `TimestepSpacing`). Without
 * a class, the union over the family.
 */
export type SchedulerSettings<C extends SchedulerClassName = SchedulerClassName> = C extends SchedulerClassName
  ? Camelize<{ [K in keyof Defaults[C] & SchedulerKey]: ValueOf<ReaderOf<C, K>> }>
  : never;

const fields: Readonly<Record<SchedulerKey, Reader<unknown>>> = FIELDS;
const classFields: { readonly [C in SchedulerClassName]?: Readonly<Partial<Record<SchedulerKey, Reader<unknown>>>> } =
  CLASS_FIELDS;

/** Parse the class's own keys of a resolved config (see `resolveConfig`) into its typed settings. */
export function parseSchedulerSettings<C extends SchedulerClassName>(
  className: C,
  config: SchedulerConfig,
): SchedulerSettings<C> {
  const reader = new ConfigReader(className, config);
  const own: Readonly<Partial<Record<SchedulerKey, Reader<unknown>>>> = classFields[className] ?? {};
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(SCHEDULER_DEFAULTS[className]) as SchedulerKey[]) {
    out[snakeToCamel(key)] = (own[key] ?? fields[key])(reader, key);
  }
  return Object.freeze(out) as SchedulerSettings<C>;
}
