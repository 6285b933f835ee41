/** Step 8 of both pipelines: the denoising loop, as an async generator of steps. */
import { NonFiniteOutputError } from '../models/non-finite.js';
import type { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import type { Generator } from '../random/index.js';
import type { SchedulerRun } from '../schedulers/index.js';
import type { Tensor, TensorLike } from '../tensor.js';
import { catBatch, guide } from './batch.js';
import { runStepCallback, type StepCallback } from './callbacks.js';

/** One denoising step, as `steps()` yields it (latents after the scheduler step). */
export interface PipelineStep {
  index: number;
  total: number;
  timestep: number;
  applyControl: boolean;
  latents: Tensor<'float32'>;
}

export interface DenoiseOptions<P> {
  pipe: P;
  unet: UNetControlNetXSModel;
  run: SchedulerRun;
  latents: Tensor<'float32'>;
  encoderHiddenStates: Tensor<'float32'>;
  /** The negative half of `encoderHiddenStates` under CFG (for callbacks), else null. */
  negativePromptEmbeds: Tensor<'float32'> | null;
  controlImage: Tensor<'float32'>;
  addedCondKwargs?: { textEmbeds: TensorLike; timeIds: TensorLike };
  /** CFG: the latents doubled through the UNet, then guided (step 2 of the pipelines decides). */
  doClassifierFreeGuidance: boolean;
  /** An LCM UNet's `timestep_cond` (`embedGuidanceScale`): one row per latent. */
  timestepCond?: Tensor<'float32'>;
  guidanceScale: number;
  conditioningScale: number;
  controlGuidanceStart: number;
  controlGuidanceEnd: number;
  generator: Generator | Generator[];
  eta: number;
  callbackOnStepEnd?: StepCallback<P, string>;
  /** Tensors the callback asked for (checked against the pipeline's list). */
  callbackOnStepEndTensorInputs?: readonly string[];
  /** Further tensors a callback may ask for, read-only (SDXL's added conditioning). */
  callbackExtras?: Readonly<Record<string, Tensor<'float32'> | null>>;
  onProgress?: (p: { step: number; total: number; timestep: number }) => void;
  signal?: AbortSignal;
}

/**
 * diffusers' denoising loop: per timestep, scale the (CFG-doubled) latents, run the fused UNet with
 * control on or off, guide, and step this generation's scheduler run. Yields after every step and
 * returns the final latents.
 */
export async function* denoise<P>(o: DenoiseOptions<P>): AsyncGenerator<PipelineStep, Tensor<'float32'>, void> {
  const doCfg = o.doClassifierFreeGuidance;
  const timesteps = o.run.timesteps;
  let latents = o.latents;
  let promptEmbeds = o.encoderHiddenStates;
  let negativePromptEmbeds = o.negativePromptEmbeds;
  for (let i = 0; i < timesteps.length; i++) {
    throwIfAborted(o.signal);
    const t = timesteps[i]!;
    const latentModelInput = o.run.scaleModelInput(doCfg ? catBatch([latents, latents]) : latents, t);
    const applyControl = controlAppliesAt(i, timesteps.length, o.controlGuidanceStart, o.controlGuidanceEnd);
    const { sample: noisePred } = await o.unet
      .forward({
        sample: latentModelInput,
        timestep: t,
        encoderHiddenStates: promptEmbeds,
        controlnetCond: o.controlImage,
        conditioningScale: o.conditioningScale,
        applyControl,
        ...(o.addedCondKwargs ? { addedCondKwargs: o.addedCondKwargs } : {}),
        ...(o.timestepCond ? { timestepCond: o.timestepCond } : {}),
      })
      .catch((e: unknown) => {
        throw e instanceof NonFiniteOutputError ? e.atStep(i, t) : e; // a float16 overflow, named with its step
      });
    const guided = doCfg ? guide(noisePred, o.guidanceScale) : noisePred;
    latents = o.run.step(guided, t, latents, { generator: o.generator, eta: o.eta }).prevSample;
    if (o.callbackOnStepEnd) {
      const at = { pipe: o.pipe, step: i, timestep: t, names: o.callbackOnStepEndTensorInputs ?? ['latents'] };
      ({ latents, promptEmbeds, negativePromptEmbeds } = await runStepCallback(o.callbackOnStepEnd, at, { latents, promptEmbeds, negativePromptEmbeds }, o.callbackExtras ?? {}));
    }
    o.onProgress?.({ step: i + 1, total: timesteps.length, timestep: t });
    yield { index: i, total: timesteps.length, timestep: t, applyControl, latents };
  }
  throwIfAborted(o.signal);
  return latents;
}

/** The per-call loop settings the pipelines pass straight through to `denoise`. */
export function loopHooks<P>(args: {
  eta?: number;
  callbackOnStepEnd?: DenoiseOptions<P>['callbackOnStepEnd'];
  callbackOnStepEndTensorInputs?: readonly string[];
  onProgress?: DenoiseOptions<P>['onProgress'];
  signal?: AbortSignal;
}): Pick<DenoiseOptions<P>, 'eta' | 'callbackOnStepEnd' | 'callbackOnStepEndTensorInputs' | 'onProgress' | 'signal'> {
  return {
    eta: args.eta ?? 0.0,
    ...(args.callbackOnStepEnd ? { callbackOnStepEnd: args.callbackOnStepEnd } : {}),
    ...(args.callbackOnStepEndTensorInputs ? { callbackOnStepEndTensorInputs: args.callbackOnStepEndTensorInputs } : {}),
    ...(args.onProgress ? { onProgress: args.onProgress } : {}),
    ...(args.signal ? { signal: args.signal } : {}),
  };
}

/** diffusers' per-step switch: control is on for step i of n when i/n ≥ start and (i+1)/n ≤ end. */
export function controlAppliesAt(i: number, n: number, start: number, end: number): boolean {
  return i / n >= start && (i + 1) / n <= end;
}

/** Abort the run if its signal fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    throw reason instanceof Error ? reason : new DOMException('The generation was aborted', 'AbortError');
  }
}
