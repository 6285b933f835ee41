/**
 * The guidance-scale embedding of LCM-distilled UNets (Luo et al. 2023, after Meng et al.'s guided
 * distillation): the UNet was distilled to take the guidance weight w as a sinusoidal `timestep_cond`
 * instead of running classifier-free guidance. diffusers' plain SD / LCM pipelines pass it whenever the
 * UNet has `time_cond_proj_dim`; its ControlNet-XS pipelines never do, so here it is the opt-in
 * `embedGuidanceScale`.
 */
import { InputError } from '../errors.js';
import type { UNetControlNetXSModel } from '../models/unet-controlnet-xs.js';
import { torchExp32, torchLog32 } from '../schedulers/float32.js';
import { Tensor } from '../tensor.js';

const f32 = Math.fround;

/**
 * diffusers' `get_guidance_scale_embedding(w, embedding_dim)`: w [B] → [B, dim], each row
 * sin(1000·w·fᵢ) then cos(1000·w·fᵢ), fᵢ = exp(−i·ln(10⁴)/(half − 1)), i < half = ⌊dim/2⌋, a zero
 * column last when dim is odd, in float32 as torch computes it (w is a float32 tensor). The
 * frequencies use torch's own float32 log and exp: sin/cos arguments reach 1000·w, where one ulp of
 * a frequency moves the result by ~1e-4 (correctly rounded exp is an ulp off torch's here). sin and cos
 * themselves are correctly rounded; torch's are within an ulp of that.
 */
export function guidanceScaleEmbedding(w: ArrayLike<number>, dim: number): Tensor<'float32'> {
  if (!Number.isInteger(dim) || dim < 1) throw new InputError(`guidance-scale embedding: dim must be a positive integer, got ${dim}`);
  const half = Math.floor(dim / 2);
  // diffusers' formula divides by half − 1: dim 2 or 3 gives NaN there, so it is refused here.
  if (half === 1) throw new InputError(`guidance-scale embedding: dim ${dim} is too small (the frequencies divide by ⌊dim/2⌋ − 1 = 0)`);
  const step = f32(torchLog32(10000) / (half - 1));
  const freqs = Float32Array.from({ length: half }, (_, i) => torchExp32(f32(i * -step)));
  const rows = w.length;
  const out = new Float32Array(rows * dim); // the odd dim's last column stays zero
  for (let r = 0; r < rows; r++) {
    const scaled = f32(f32(w[r]!) * 1000);
    for (let i = 0; i < half; i++) {
      const arg = f32(scaled * freqs[i]!);
      out[r * dim + i] = Math.sin(arg);
      out[r * dim + half + i] = Math.cos(arg);
    }
  }
  return new Tensor('float32', out, [rows, dim]);
}

/**
 * `timestep_cond` for `embedGuidanceScale`: the embedding of w = guidanceScale − 1 (w = 0 means no
 * guidance, as CFG's scale 1 does), one row per latent. Refused for a UNet without time_cond_proj_dim,
 * which has nothing to read it with (diffusers' plain pipelines then silently do CFG instead).
 */
export function guidanceTimestepCond(unet: UNetControlNetXSModel, guidanceScale: number, rows: number): Tensor<'float32'> {
  const dim = unet.config.timeCondProjDim;
  if (dim === null) {
    throw new InputError(
      'embedGuidanceScale needs an LCM-distilled UNet (time_cond_proj_dim in its config.json); this one has none: ' +
        'leave embedGuidanceScale off and guidanceScale runs classifier-free guidance',
    );
  }
  return guidanceScaleEmbedding(new Array<number>(rows).fill(guidanceScale - 1), dim);
}
