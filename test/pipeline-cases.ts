/** Reading the pipeline reference cases: diffusers' `__call__` arguments → ours. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { snakeToCamel } from '../src/util/config.js';
import { Generator } from '../src/random/index.js';
import type { Tensor } from '../src/tensor.js';
import { parsePythonJson } from '../src/util/json.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';

export interface PipelineCase {
  name: string;
  load: { variant: string | null };
  scheduler: { class: string; config: Record<string, unknown> };
  call: Record<string, unknown>;
  tensors: Record<string, string>;
  apply_control_per_step: boolean[];
  max_abs_diff_fp32_vs_fp64: Record<string, number>;
}

export function readCases(pipelineDir: string): { cases: PipelineCase[]; read: (key: string) => Tensor } {
  const cases = parsePythonJson(readFileSync(join(pipelineDir, 'cases.json'), 'utf8')) as PipelineCase[];
  const file = loadSafetensorsSync(join(pipelineDir, 'tensors.safetensors'));
  return { cases, read: (key) => file.read(key) };
}

const TENSOR_ARGS = new Set(['latents', 'prompt_embeds', 'negative_prompt_embeds', 'pooled_prompt_embeds', 'negative_pooled_prompt_embeds']);

/** Every non-null argument, camelCased; tensors by key, the generator by seed, the image as a path. */
export function callArgs<A>(c: PipelineCase, pipelineDir: string, read: (key: string) => Tensor): A {
  const args: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(c.call)) {
    if (v === null || v === undefined) continue;
    let value: unknown = v;
    if (key === 'image') value = join(pipelineDir, v as string);
    else if (key === 'generator') value = new Generator().manualSeed((v as { seed: number }).seed);
    else if (TENSOR_ARGS.has(key)) value = read(v as string);
    args[snakeToCamel(key)] = value;
  }
  return args as A;
}

/** Tolerance from a case's fp32-vs-fp64 hint: max(floor, 20 × hint). */
export function tolerance(c: PipelineCase, what: string, floor: number): number {
  return Math.max(floor, 20 * (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));
}
