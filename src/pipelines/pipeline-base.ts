/** What both ControlNet-XS pipelines share beyond the loop: diffusers' memory switches. */
import { ModelOffload } from './shared.js';

export abstract class ControlNetXSPipelineBase {
  /** How the VAE decodes (diffusers' enable_vae_slicing / enable_vae_tiling set these). */
  vaeDecode: { sliced: boolean; tiled: boolean } = { sliced: false, tiled: false };
  /** Close each model's session after its stage of a generation (see ModelOffload); off by default. */
  readonly offload = new ModelOffload();

  /** diffusers' `enable_vae_slicing`: decode a batch one image at a time (the same images, less memory). */
  enableVaeSlicing(): void {
    this.vaeDecode.sliced = true;
  }

  disableVaeSlicing(): void {
    this.vaeDecode.sliced = false;
  }

  /** diffusers' `enable_vae_tiling`: decode large images in blended tiles. */
  enableVaeTiling(): void {
    this.vaeDecode.tiled = true;
  }

  disableVaeTiling(): void {
    this.vaeDecode.tiled = false;
  }

  /** diffusers' `enable_model_cpu_offload`, for sessions: `offload.enabled = true`. */
  enableModelCpuOffload(): void {
    this.offload.enabled = true;
  }
}
