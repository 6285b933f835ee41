/** Model offload for sessions, shared by both pipelines through their base class. */

/**
 * diffusers' `enable_model_cpu_offload`, for onnxruntime sessions: when on, every model releases its
 * session right after its stage of a generation (text encoders, then the UNet, then the VAE), so a
 * generation's peak memory is its largest model's rather than the sum of all; sessions are re-created
 * on next use (in seconds with `runtime.graphCacheDir`, whose weights onnxruntime maps from disk).
 * Nothing is released while another generation is in flight.
 */
export class ModelOffload {
  enabled = false;
  private active = 0;

  /** Count a generation in for the duration of `body`. */
  async *track<S, R>(body: AsyncGenerator<S, R, void>): AsyncGenerator<S, R, void> {
    this.active++;
    try {
      return yield* body;
    } finally {
      this.active--;
    }
  }

  /** Release `models` if offloading is on and this is the only generation running. */
  async afterUse(...models: { release(): Promise<void> }[]): Promise<void> {
    if (this.enabled && this.active === 1) await Promise.all(models.map((m) => m.release()));
  }
}
