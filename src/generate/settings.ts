/** The settings of one generation in user terms, shared by `cnxs generate` and the server, with their defaults. */

export interface GenerationSettings {
  /** The prompt as written (with any `<lora:…>` tags): what the PNG records. */
  prompt: string;
  /** What the text encoder reads (the prompt without `<lora:…>` tags); default `prompt`. */
  pipelinePrompt?: string;
  negativePrompt?: string | undefined;
  steps: number;
  guidanceScale: number;
  /** LCM UNets: `guidanceScale` as the UNet's guidance embedding instead of CFG (the pipelines' opt-in). */
  embedGuidanceScale?: boolean;
  controlScale: number;
  controlStart: number;
  controlEnd: number;
  /** Image k gets seed + k. */
  seed: bigint;
  numImages: number;
  /** A1111's numbering: 1 = the text encoder's last layer. */
  clipSkip?: number | undefined;
}

/** What `cnxs generate` uses when a setting is not given (the HTTP API fills the same). */
export const DEFAULT_SETTINGS = Object.freeze({
  steps: 30,
  guidanceScale: 7.5,
  controlScale: 1.0,
  controlStart: 0,
  controlEnd: 1,
  numImages: 1,
});

/** The most pixels a generation may have by default (2048 × 2048): past it memory grows beyond most machines. */
export const DEFAULT_MAX_PIXELS = 2048 * 2048;
/** diffusers' schedulers train on 1000 timesteps; more inference steps than that are refused. */
export const MAX_STEPS = 1000;
/** Images per generation: each is a batch row through the UNet, so memory grows with it. */
export const MAX_NUM_IMAGES = 64;
