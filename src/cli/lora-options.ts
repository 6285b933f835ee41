/**
 * LoRAs on the command line: `--lora FILE[:SCALE]` (repeatable) and A1111's prompt syntax
 * `<lora:NAME:SCALE>`, resolved against `--lora-dir`. Both are checked before anything loads: a
 * missing file or a bad scale is a UsageError.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError, float } from './usage.js';

export interface LoraOption {
  /** A `.safetensors` file (or a Hub id `org/name` for `--lora`). */
  source: string;
  /** The adapter's weight (A1111's multiplier). */
  scale: number;
  /** Where it came from, for messages and metadata: `--lora` or `<lora:NAME:SCALE>`. */
  from: string;
}

/** `FILE[:SCALE]`: the last `:` starts a scale when a number follows it (so `C:\…` and `org/name` stay paths). */
export function parseLoraOption(text: string): LoraOption {
  const at = text.lastIndexOf(':');
  const tail = at < 0 ? '' : text.slice(at + 1);
  const hasScale = at > 0 && /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(tail);
  const source = hasScale ? text.slice(0, at) : text;
  const scale = hasScale ? float('lora', tail) : 1;
  if (source === '') throw new UsageError(`--lora needs a file, got "${text}"`);
  if (!existsSync(source) && !/^[\w.-]+\/[\w.-]+$/.test(source)) throw new UsageError(`--lora ${source}: no such file (give a .safetensors file or a Hub id org/name)`);
  return { source, scale, from: `--lora ${text}` };
}

const TAG = /<lora:([^:>]+)(?::([^:>]*))?(?::([^>]*))?>/g;

/**
 * A1111's `<lora:NAME:SCALE>` tags: removed from the prompt (A1111 does not encode them) and resolved to
 * `DIR/NAME.safetensors`. `<lora:NAME>` means scale 1; A1111's separate text-encoder/UNet multipliers
 * (`<lora:NAME:TE:UNET>`) are refused, since a LoRA here has one weight.
 */
export function extractPromptLoras(prompt: string, loraDir: string | undefined): { prompt: string; loras: LoraOption[] } {
  const loras: LoraOption[] = [];
  const rest = prompt.replace(TAG, (tag: string, name: string, scaleText: string | undefined, third: string | undefined) => {
    if (third !== undefined) throw new UsageError(`${tag}: separate text-encoder and UNet multipliers are not supported; use <lora:${name}:SCALE>`);
    if (loraDir === undefined) throw new UsageError(`${tag} in --prompt needs --lora-dir (the folder holding ${name}.safetensors)`);
    const file = /\.safetensors$/i.test(name) ? join(loraDir, name) : join(loraDir, `${name}.safetensors`);
    if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`${tag}: no file ${file}`);
    const scale = scaleText === undefined || scaleText === '' ? 1 : float(`lora ${name}`, scaleText);
    loras.push({ source: file, scale, from: tag });
    return '';
  });
  // A1111 leaves the text around a tag as it is; only the spaces the tag leaves behind are tidied
  return { prompt: loras.length ? rest.replace(/\s{2,}/g, ' ').replace(/\s+([,.])/g, '$1').trim() : prompt, loras };
}
