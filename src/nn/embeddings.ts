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

/** Timesteps [B] (float32) → [B, dim]: sin and cos of t·freq, cos first when `flipSinToCos`. */
export class Timesteps extends Module {
  constructor(
    path: string,
    readonly dim: number,
    readonly opts: { flipSinToCos: boolean; downscaleFreqShift: number },
  ) {
    super(path);
  }

  forward(op: GraphBuilder, t: Value): Value {
    const b = op.at(this.path);
    const half = Math.floor(this.dim / 2);
    const freqs = b.constant(timestepFrequencies(this.dim, this.opts.downscaleFreqShift), [1, half], 'freqs');
    const args = b.op('Mul', [b.op('Unsqueeze', [t, b.ints([1])]), freqs]); // [B, half]
    const sin = b.op('Sin', [args]);
    const cos = b.op('Cos', [args]);
    const parts = this.opts.flipSinToCos ? [cos, sin] : [sin, cos];
    let emb = b.op('Concat', parts, { attrs: { axis: -1 } }); // [B, 2·half]
    if (this.dim % 2 === 1) emb = b.op('Pad', [emb, b.ints([0, 0, 0, 1])]);
    return emb;
  }
}

/** linear_1 → act → linear_2 (diffusers' TimestepEmbedding without cond_proj / post_act). */
export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;

  constructor(
    path: string,
    inChannels: number,
    timeEmbedDim: number,
    readonly act: Activation = 'silu',
  ) {
    super(path);
    this.linear_1 = this.child('linear_1', (p) => new Linear(p, inChannels, timeEmbedDim));
    this.linear_2 = this.child('linear_2', (p) => new Linear(p, timeEmbedDim, timeEmbedDim));
  }

  /** [B, in] → [B, timeEmbedDim] */
  forward(op: GraphBuilder, x: Value): Value {
    const h = activation(op.at(this.path), this.linear_1.forward(op, x), this.act);
    return this.linear_2.forward(op, h);
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
  const flat = a.op('Reshape', [added.timeIds, a.ints([-1])]); // [B·n]
  const batch = a.op('Slice', [a.op('Shape', [added.textEmbeds]), a.ints([0]), a.ints([1])]);
  const timeEmbeds = a.op('Reshape', [timeProj.forward(op, flat), a.op('Concat', [batch, a.ints([-1])], { attrs: { axis: 0 } })]); // [B, n·dim]
  const addEmbeds = a.op('Concat', [added.textEmbeds, timeEmbeds], { attrs: { axis: -1 } }); // [B, P + n·dim]
  return embedding.forward(op, addEmbeds);
}
