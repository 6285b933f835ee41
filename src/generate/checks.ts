/** Settings only a loaded model can judge, checked before any generation work. */
import { StableDiffusionControlNetXSPipeline } from '../pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../pipelines/stable-diffusion-xl-controlnet-xs.js';
import { SettingError } from './errors.js';

export type GenerationPipelineInstance = StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline;

/**
 * SettingErrors for: more steps than the scheduler was trained on, a clip skip deeper than the text
 * encoder, the guidance embedding on a UNet without one. `model` names the model in the message.
 */
export function checkModelSettings(
  pipe: GenerationPipelineInstance,
  s: { steps: number; clipSkip?: number | undefined; embedGuidanceScale?: boolean },
  model: string,
): void {
  const trainSteps = pipe.scheduler.numTrainTimesteps;
  if (s.steps > trainSteps) throw new SettingError('steps', (n) => `${n('steps')} ${s.steps} is more than this model's scheduler was trained on (${trainSteps})`);
  // Leading spacing with steps_offset (SD's DDIM/PNDM configs) puts the first timestep at `trainSteps`
  // when steps = trainSteps: diffusers then fails mid-loop indexing its alphas; here it fails up front.
  const last = Math.max(...pipe.scheduler.createRun(s.steps).timesteps);
  if (last >= trainSteps) {
    throw new SettingError(
      'steps',
      (n) => `${n('steps')} ${s.steps} makes ${pipe.scheduler.constructor.name} start at timestep ${last}, past its ${trainSteps}-entry table (its steps_offset); ask for fewer steps`,
    );
  }
  // SD reads hidden_states[-clip_skip−1] of layers+1 states; SDXL's penultimate-layer default is one deeper already
  const layers = pipe.textEncoder.config.numHiddenLayers;
  const maxClipSkip = pipe instanceof StableDiffusionXLControlNetXSPipeline ? layers : layers + 1;
  const clipSkip = s.clipSkip;
  if (clipSkip !== undefined && clipSkip > maxClipSkip) {
    throw new SettingError('clipSkip', (n) => `${n('clipSkip')} ${clipSkip} is too deep: this text encoder has ${layers} layers, so at most ${maxClipSkip}`);
  }
  if (s.embedGuidanceScale && pipe.unet.config.timeCondProjDim === null) {
    throw new SettingError('embedGuidanceScale', (n) => `${n('embedGuidanceScale')} needs an LCM-distilled UNet (time_cond_proj_dim in its config); ${model} has none`);
  }
}
