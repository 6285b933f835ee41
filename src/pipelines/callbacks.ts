/**
 * diffusers' `callback_on_step_end`: after every scheduler step the callback receives the latents and
 * whichever other loop tensors `callbackOnStepEndTensorInputs` names (diffusers'
 * `_callback_tensor_inputs`, camelCased), and may hand back latents or prompt embeddings for the
 * steps that follow.
 */
import { InputError } from '../errors.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';

/** What the SD pipeline's callback may ask for. `promptEmbeds` is the embedding batch the UNet sees (negatives first under CFG). */
export const SD_CALLBACK_TENSOR_INPUTS = ['latents', 'promptEmbeds', 'negativePromptEmbeds'] as const;
/** The SDXL pipeline's: also the added conditioning as the UNet sees it, and the negative parts it was built from. */
export const SDXL_CALLBACK_TENSOR_INPUTS = [
  ...SD_CALLBACK_TENSOR_INPUTS,
  'addTextEmbeds',
  'addTimeIds',
  'negativePooledPromptEmbeds',
  'negativeAddTimeIds',
] as const;
export type SDCallbackTensorName = (typeof SD_CALLBACK_TENSOR_INPUTS)[number];
export type SDXLCallbackTensorName = (typeof SDXL_CALLBACK_TENSOR_INPUTS)[number];

/**
 * What a callback receives: always the latents, and each other tensor it named — absent where the
 * loop has none (the negatives when guidance is off), as diffusers passes `None`.
 */
export type CallbackTensors<K extends string> = { latents: Tensor<'float32'> } & Partial<Record<K, Tensor<'float32'>>>;

/**
 * What a callback may hand back. As in diffusers, `latents` and `promptEmbeds` replace what the next
 * steps use; `negativePromptEmbeds` only reaches later callbacks (the UNet's batch already holds them).
 */
export interface StepCallbackResult {
  latents?: TensorLike;
  promptEmbeds?: TensorLike;
  negativePromptEmbeds?: TensorLike;
}

export type StepCallback<P, K extends string> = (
  pipe: P,
  step: number,
  timestep: number,
  tensors: CallbackTensors<K>,
) => StepCallbackResult | void | Promise<StepCallbackResult | void>;

/** diffusers' check_inputs rule for `callback_on_step_end_tensor_inputs`. */
export function checkCallbackTensorInputs(names: readonly string[] | undefined, allowed: readonly string[]): void {
  if (names === undefined) return;
  if (!Array.isArray(names)) throw new InputError('`callbackOnStepEndTensorInputs` must be an array of tensor names');
  const unknown = names.filter((n) => !allowed.includes(n));
  if (unknown.length > 0) {
    throw new InputError(`\`callbackOnStepEndTensorInputs\` has to be in [${allowed.join(', ')}], but found [${unknown.join(', ')}]`);
  }
}

/** The loop state a callback reads and may replace. */
export interface CallbackState {
  latents: Tensor<'float32'>;
  promptEmbeds: Tensor<'float32'>;
  negativePromptEmbeds: Tensor<'float32'> | null;
}

/** Call the callback with the tensors it asked for and return the state the next step uses. */
export async function runStepCallback<P>(
  callback: StepCallback<P, string>,
  at: { pipe: P; step: number; timestep: number; names: readonly string[] },
  state: CallbackState,
  readOnly: Readonly<Record<string, Tensor<'float32'> | null>>,
): Promise<CallbackState> {
  const available: Record<string, Tensor<'float32'> | null> = { ...readOnly, ...state };
  const tensors: CallbackTensors<string> = { latents: state.latents };
  for (const name of at.names) {
    const t = available[name];
    if (t) tensors[name] = t;
  }
  const out = await callback(at.pipe, at.step, at.timestep, tensors);
  if (!out) return state;
  const [rows, , width] = state.promptEmbeds.dims;
  return {
    latents: out.latents ? expectFloat32('callbackOnStepEnd latents', out.latents, [...state.latents.dims]) : state.latents,
    promptEmbeds: out.promptEmbeds ? expectFloat32('callbackOnStepEnd promptEmbeds', out.promptEmbeds, [rows!, null, width!]) : state.promptEmbeds,
    negativePromptEmbeds: out.negativePromptEmbeds
      ? expectFloat32('callbackOnStepEnd negativePromptEmbeds', out.negativePromptEmbeds, [null, null, width!])
      : state.negativePromptEmbeds,
  };
}
