/** The A1111 `parameters` text written into every PNG: each field one that A1111 and `cnxs generate` read back. */
import { basename } from 'node:path';
import { checkPngText } from '../image/png-text.js';

/** What the text records of the settings (front ends pass their own settings object; extra fields are ignored). */
export interface ParameterSettings {
  /** As written: `<lora:…>` tags stay in it, as A1111 writes them. */
  prompt: string;
  negativePrompt?: string | undefined;
  steps: number;
  guidanceScale: number;
  /** The base model as the user named it (Hub id, folder or file). */
  model: string;
  controlScale: number;
  controlStart: number;
  controlEnd: number;
  clipSkip?: number | undefined;
  /** LoRA files loaded from outside the prompt (`--lora`), named in a `LoRA:` field. */
  loraFiles?: readonly { source: string; scale: number }[];
  embedGuidanceScale?: boolean;
}

/** What only the run knows: the sampler's label, this image's seed, the size, the adapter's name. */
export interface ParameterInfo {
  sampler: string;
  seed: bigint;
  width: number;
  height: number;
  controlnet: string;
}

export function a1111Parameters(s: ParameterSettings, info: ParameterInfo): string {
  const lines = [s.prompt];
  if (s.negativePrompt) lines.push(`Negative prompt: ${s.negativePrompt}`);
  const fields = [
    `Steps: ${s.steps}`,
    `Sampler: ${info.sampler}`,
    `CFG scale: ${s.guidanceScale}`,
    `Seed: ${info.seed}`,
    `Size: ${info.width}x${info.height}`,
    `Model: ${s.model}`,
    `ControlNet-XS: ${info.controlnet}`,
    `Control scale: ${s.controlScale}`,
  ];
  if (s.controlStart !== 0 || s.controlEnd !== 1) fields.push(`Control window: ${s.controlStart}-${s.controlEnd}`);
  if (s.clipSkip !== undefined) fields.push(`Clip skip: ${s.clipSkip}`);
  if (s.loraFiles?.length) fields.push(`LoRA: ${s.loraFiles.map((l) => `${basename(l.source)}:${l.scale}`).join(' ')}`);
  // Not an A1111 field: without it the CFG scale above would read as classifier-free guidance.
  if (s.embedGuidanceScale) fields.push('Guidance embedding: on');
  lines.push(fields.join(', '));
  return lines.join('\n');
}

/**
 * Fail in milliseconds, not after a generation, when the text cannot go into a PNG (a NUL, an unpaired
 * surrogate): the InputError that writing it would throw.
 */
export function checkParameters(s: ParameterSettings): void {
  checkPngText({ parameters: a1111Parameters(s, { sampler: 'x', seed: 0n, width: 0, height: 0, controlnet: '' }) });
}
