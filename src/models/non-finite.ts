/**
 * float16 overflow made visible: a float16 graph's output that holds NaN or ±Infinity (an activation
 * beyond ±65504 somewhere inside) fails with the model, the output and, from the pipelines, the step
 * — instead of decoding to a black image. One linear scan per output, cheap next to the graph.
 */
import { RuntimeError } from '../errors.js';

/** The index of the first NaN or ±Infinity in `data`, or −1. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v !== 0) return i; // NaN − NaN and ∞ − ∞ are NaN; every finite v gives 0
  }
  return -1;
}

export interface NonFiniteOutput {
  /** The model (its graph name, e.g. UNetControlNetXSModel). */
  readonly model: string;
  /** The graph output that holds it. */
  readonly output: string;
  readonly index: number;
  readonly value: number;
  /** The denoising step (0-based) and its timestep, when a pipeline ran the model. */
  readonly step?: { readonly index: number; readonly timestep: number };
}

export class NonFiniteOutputError extends RuntimeError {
  constructor(readonly detail: NonFiniteOutput) {
    const d = detail;
    const at = d.step ? ` at denoising step ${d.step.index} (timestep ${d.step.timestep})` : '';
    super(
      `${d.model}: output "${d.output}" holds ${d.value} (flat index ${d.index})${at}: a float16 overflow. ` +
        `Run this model with dtype "float32" (or an fp16-safe checkpoint, e.g. an fp16-fixed VAE)`,
    );
  }

  /** The same error, naming the denoising step it happened in. */
  atStep(index: number, timestep: number): NonFiniteOutputError {
    return new NonFiniteOutputError({ ...this.detail, step: { index, timestep } });
  }
}

/** Throw NonFiniteOutputError for the first float32 output of `model` holding NaN or ±Infinity. */
export function checkFiniteOutputs(model: string, outputs: Readonly<Record<string, { readonly data: unknown }>>): void {
  for (const [output, t] of Object.entries(outputs)) {
    if (!(t.data instanceof Float32Array)) continue;
    const index = firstNonFinite(t.data);
    if (index >= 0) throw new NonFiniteOutputError({ model, output, index, value: t.data[index]! });
  }
}
