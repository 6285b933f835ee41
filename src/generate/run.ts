/**
 * One generation on a loaded pipeline from user-level settings: the call `cnxs generate` makes and the
 * server's runner makes, so both produce the same pixels for the same settings.
 */
import type { ImageSize } from '../pipelines/image-size.js';
import type { PipelineStep } from '../pipelines/denoise.js';
import { StableDiffusionXLControlNetXSPipeline } from '../pipelines/stable-diffusion-xl-controlnet-xs.js';
import type { RGBImage } from '../image/rgb-image.js';
import type { GenerationPipelineInstance } from './checks.js';
import { seedGenerators } from './seeds.js';
import type { GenerationSettings } from './settings.js';

export interface GenerateImagesOptions {
  /** The control image, already decoded (and through Canny where asked). */
  control: RGBImage;
  /** From `chooseSize`. */
  size: ImageSize;
  /** One per image (`imageSeeds`). */
  seeds: readonly bigint[];
  /** Stops the run between steps (an AbortError, or the signal's reason). */
  signal?: AbortSignal | undefined;
  /** After every step, awaited before the next one starts: its latents [B, 4, h, w] (for previews). */
  onStep?: ((step: PipelineStep) => void | Promise<void>) | undefined;
}

export interface GeneratedImages {
  images: RGBImage[];
  /** Per image whether the safety checker flagged it (it is then black); null: no checker ran. */
  nsfwContentDetected: boolean[] | null;
}

export async function generateImages(pipe: GenerationPipelineInstance, s: GenerationSettings, o: GenerateImagesOptions): Promise<GeneratedImages> {
  const args = {
    prompt: s.pipelinePrompt ?? s.prompt,
    image: o.control,
    numInferenceSteps: s.steps,
    guidanceScale: s.guidanceScale,
    ...(s.embedGuidanceScale ? { embedGuidanceScale: true } : {}),
    numImagesPerPrompt: s.numImages,
    generator: seedGenerators(o.seeds),
    controlnetConditioningScale: s.controlScale,
    controlGuidanceStart: s.controlStart,
    controlGuidanceEnd: s.controlEnd,
    width: o.size.width,
    height: o.size.height,
    outputType: 'pil' as const,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(s.negativePrompt !== undefined ? { negativePrompt: s.negativePrompt } : {}),
    // A1111 counts the last layer as 1; the pipelines count layers skipped
    ...(s.clipSkip !== undefined && s.clipSkip > 1 ? { clipSkip: s.clipSkip - 1 } : {}),
  };
  const steps = pipe instanceof StableDiffusionXLControlNetXSPipeline ? pipe.steps(args) : pipe.steps(args);
  for (;;) {
    const r = await steps.next();
    if (r.done) return { images: r.value.images, nsfwContentDetected: r.value.nsfwContentDetected };
    await o.onStep?.(r.value);
  }
}
