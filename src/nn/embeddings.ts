/** Sinusoidal timestep features and the MLP that embeds them (diffusers' Timesteps / TimestepEmbedding). */
import type { GraphBuilder, Value } from '../graph/builder.js';
import { Linear, activation, type Activation } from './layers.js';
import { Module } from './module.js';

const f32 = Math.fround;

/**
 * The frequency table exp(-ln(maxPeriod)·i / (half − shift)), i < half, rounded the way torch
 * computes it in float32 (scalar·arange, then the division, then exp).
 */
export function timestepFrequencies(dim: number, downscaleFreqShift: number, maxPeriod = 10000): Float32Array {
  const half = Math.floor(dim / 2);
  const negLog = f32(-Math.log(maxPeriod));
  const denom = f32(half - downscaleFreqShift);
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = f32(Math.exp(f32(f32(negLog * i) / denom)));
  return out;
}

/**
 * Timesteps [B] (float32) → [B, dim]: sin and cos of t·freq, cos first when `flipSinToCos`. Computed in
 * float32 in every graph and cast to the compute dtype after, as diffusers does (a float16 t·freq would
 * be off by up to 0.5 rad at t ≈ 1000).
 */
export class Timesteps extends Module {
  constructor(
    path: string,
    readonly dim: number,
    readonly opts: { flipSinToCos: boolean; downscaleFreqShift: number },
  ) {
    super(path);
  }

  build(op: GraphBuilder, t: Value): Value {
    const b = op.at(this.path).float32();
    const half = Math.floor(this.dim / 2);
    const freqs = b.constant(timestepFrequencies(this.dim, this.opts.downscaleFreqShift), [1, half], 'freqs');
    const args = b.mul(b.unsqueeze(t, b.ints([1])), freqs); // [B, 1] · [1, half] → [B, half]
    const sin = b.sin(args);
    const cos = b.cos(args);
    const parts = this.opts.flipSinToCos ? [cos, sin] : [sin, cos];
    let emb = b.concat(parts, { axis: -1 }); // [B, 2·half]
    if (this.dim % 2 === 1) emb = b.pad(emb, b.ints([0, 0, 0, 1])); // [B, 2·half] → [B, dim]: one zero column
    return op.at(this.path).toFloatType(emb);
  }
}

/**
 * linear_1 → act → linear_2 (diffusers' TimestepEmbedding without post_act). With `condProjDim`
 * (LCM-distilled UNets' `time_cond_proj_dim`) a bias-free `cond_proj` maps a condition — the
 * guidance-scale embedding — onto the input features before linear_1.
 */
export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly cond_proj: Linear | null;
  readonly linear_2: Linear;
  readonly act: Activation;

  constructor(path: string, inChannels: number, timeEmbedDim: number, opts: { act?: Activation; condProjDim?: number | null } = {}) {
    super(path);
    this.act = opts.act ?? 'silu';
    this.linear_1 = this.child('linear_1', (p) => new Linear(p, inChannels, timeEmbedDim));
    const condDim = opts.condProjDim ?? null;
    this.cond_proj = condDim === null ? null : this.child('cond_proj', (p) => new Linear(p, condDim, inChannels, { bias: false }));
    this.linear_2 = this.child('linear_2', (p) => new Linear(p, timeEmbedDim, timeEmbedDim));
  }

  /** [B, in] (+ condition [B, condProjDim]) → [B, timeEmbedDim] */
  build(op: GraphBuilder, x: Value, condition: Value | null = null): Value {
    let sample = x;
    if (condition !== null) {
      // A tree only passes a condition to an embedding that has cond_proj (diffusers would fail on None).
      if (!this.cond_proj) throw new Error(`${this.path}: a condition was given, but this TimestepEmbedding has no cond_proj`);
      sample = op.at(this.path).add(sample, this.cond_proj.build(op, condition)); // [B, in] + ([B, cond] → [B, in])
    }
    const h = activation(op.at(this.path), this.linear_1.build(op, sample), this.act);
    return this.linear_2.build(op, h);
  }
}

/**
 * SDXL's `text_time` addition embedding: every micro-conditioning id through `timeProj`, flattened
 * per row, after the pooled text embedding, through `embedding`. textEmbeds [B, P], timeIds [B, n] → [B, T].
 */
export function textTimeEmbedding(
  op: GraphBuilder,
  timeProj: Timesteps,
  embedding: TimestepEmbedding,
  added: { textEmbeds: Value; timeIds: Value },
): Value {
  const a = op.at(embedding.path);
  const flat = a.reshape(added.timeIds, a.ints([-1])); // [B, n] → [B·n]
  const batch = a.slice(a.shape(added.textEmbeds), a.ints([0]), a.ints([1])); // [B]
  const timeEmbeds = a.reshape(timeProj.build(op, flat), a.concat([batch, a.ints([-1])], { axis: 0 })); // [B·n, dim] → [B, n·dim]
  const addEmbeds = a.concat([added.textEmbeds, timeEmbeds], { axis: -1 }); // [B, P] ‖ [B, n·dim] → [B, P + n·dim]
  return embedding.build(op, addEmbeds);
}
