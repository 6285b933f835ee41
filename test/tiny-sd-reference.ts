/**
 * The tiny SD checkpoint's model reference (test/fixtures/tiny-sd-cnxs/reference: diffusers 0.33.1
 * forward cases) as the UNet tests read it: its cases, their tensors, and a case's inputs as the
 * arguments of our UNets' `forward`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UNetForwardArgs } from '../src/models/unet-2d-condition.js';
import type { UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';
import type { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture } from './helpers.js';

export interface TinySdCase {
  readonly name: string;
  /** `unet_cnxs_forward`, `unet_base_forward`, `vae_decode`, … */
  readonly kind: string;
  readonly model_folders: string[];
  /** Forward argument → a tensor name in `tensors.safetensors`, or the value itself (a number, a flag). */
  readonly inputs: Readonly<Record<string, string | number | boolean>>;
  readonly outputs: Readonly<Record<string, string>>;
  /** How far float32 is from float64 on this case (a tolerance hint). */
  readonly max_abs_diff_fp32_vs_fp64?: number | null;
  readonly groupnorm_num_groups_that_differ?: Readonly<Record<string, { from_unet: number; from_config: number }>>;
}

export interface TinySdReference {
  /** The checkpoint folder (test/fixtures/tiny-sd-cnxs). */
  readonly dir: string;
  readonly cases: readonly TinySdCase[];
  /** A tensor of `tensors.safetensors` by name. */
  read(name: string): Tensor;
  /** Case `c`'s input tensor `key`. */
  input(c: TinySdCase, key: string): Tensor;
  /** Case `c`'s timestep: a number, or a tensor (one per batch row). */
  timestep(c: TinySdCase): number | Tensor;
  /** A UNet case's inputs as `UNet2DConditionModel.forward` arguments. */
  unetArgs(c: TinySdCase): UNetForwardArgs;
  /** A fused-model case's inputs as `UNetControlNetXSModel.forward` arguments (scale and control flag as the case gives them). */
  cnxsArgs(c: TinySdCase): UNetControlNetXSForwardArgs;
}

/** Reads the reference's cases.json and opens its tensors (read lazily, by name). */
export function tinySdReference(): TinySdReference {
  const dir = fixture('tiny-sd-cnxs');
  const file = loadSafetensorsSync(join(dir, 'reference', 'tensors.safetensors'));
  const cases = JSON.parse(readFileSync(join(dir, 'reference', 'cases.json'), 'utf8')) as TinySdCase[];
  const read = (name: string) => file.read(name);
  const input = (c: TinySdCase, key: string) => {
    const name = c.inputs[key];
    if (typeof name !== 'string') throw new Error(`tiny-sd-cnxs/reference/cases.json: case ${c.name}'s input "${key}" is not a tensor name`);
    return read(name);
  };
  const timestep = (c: TinySdCase) => (typeof c.inputs['timestep'] === 'string' ? input(c, 'timestep') : (c.inputs['timestep'] as number));
  const unetArgs = (c: TinySdCase): UNetForwardArgs => ({ sample: input(c, 'sample'), timestep: timestep(c), encoderHiddenStates: input(c, 'encoder_hidden_states') });
  const cnxsArgs = (c: TinySdCase): UNetControlNetXSForwardArgs => {
    const scale = c.inputs['conditioning_scale'];
    const apply = c.inputs['apply_control'];
    return {
      ...unetArgs(c),
      controlnetCond: input(c, 'controlnet_cond'),
      ...(typeof scale === 'number' ? { conditioningScale: scale } : {}),
      ...(typeof apply === 'boolean' ? { applyControl: apply } : {}),
    };
  };
  return { dir, cases, read, input, timestep, unetArgs, cnxsArgs };
}
