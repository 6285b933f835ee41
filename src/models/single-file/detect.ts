/**
 * What a single file is, from its keys and shapes alone: where each component sits (the prefix and
 * key layout of the UNet, VAE and text encoders) and the model type diffusers'
 * `infer_diffusers_model_type` (0.33.1) would name, which picks the default configs.
 */
import type { KeyLayout } from './keys.js';
import { fileIgnore } from './keys.js';

export type ComponentName = 'unet' | 'vae' | 'text_encoder' | 'text_encoder_2';

/** Where one component's keys sit in a single file. */
export interface ComponentPlace {
  readonly name: ComponentName;
  /** The key prefix, dot included ('' for a VAE file without one). */
  readonly prefix: string;
  readonly layout: KeyLayout;
  /** What the file calls it, for messages. */
  readonly label: string;
  /** SD 2.x's OpenCLIP carries one block more than the text encoder uses. */
  readonly extraBlock?: boolean;
}

/** Every place a component of a Stable Diffusion single file can sit, first match per name wins. */
export const COMPONENT_PLACES: readonly ComponentPlace[] = [
  { name: 'unet', prefix: 'model.diffusion_model.', layout: 'ldm-unet', label: 'UNet (LDM)' },
  { name: 'vae', prefix: 'first_stage_model.', layout: 'ldm-vae', label: 'VAE (LDM)' },
  { name: 'vae', prefix: 'vae.', layout: 'ldm-vae', label: 'VAE (LDM, vae. prefix)' },
  { name: 'text_encoder', prefix: 'cond_stage_model.transformer.', layout: 'hf-clip', label: 'CLIP text encoder (SD 1.x)' },
  { name: 'text_encoder', prefix: 'cond_stage_model.model.', layout: 'open-clip', label: 'OpenCLIP text encoder (SD 2.x)', extraBlock: true },
  { name: 'text_encoder', prefix: 'conditioner.embedders.0.transformer.', layout: 'hf-clip', label: 'CLIP text encoder (SDXL)' },
  { name: 'text_encoder_2', prefix: 'conditioner.embedders.1.model.', layout: 'open-clip', label: 'OpenCLIP text encoder (SDXL)' },
  { name: 'text_encoder_2', prefix: 'conditioner.embedders.0.model.', layout: 'open-clip', label: 'OpenCLIP text encoder (SDXL refiner)' },
];

/** A VAE saved on its own (vae-ft-mse-840000-ema-pruned and the like) has no prefix: these roots. */
const BARE_VAE_ROOTS = ['encoder.', 'decoder.', 'quant_conv.', 'post_quant_conv.'];
const BARE_VAE: ComponentPlace = { name: 'vae', prefix: '', layout: 'ldm-vae', label: 'VAE (LDM, no prefix)' };

/** diffusers' key probes (CHECKPOINT_KEY_NAMES), the ones its Stable Diffusion branch tests. */
const PROBE = {
  inpainting: 'model.diffusion_model.input_blocks.0.0.weight',
  v2: 'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight',
  playground: 'edm_mean',
  xlBase: 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias',
  xlRefiner: 'conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias',
  upscale: 'model.diffusion_model.input_blocks.10.0.skip_connection.bias',
} as const;

/** Keys that identify the other model families diffusers knows (tested after the SD family, as it does). */
const OTHER_FAMILIES: readonly { readonly type: string; readonly keys: readonly string[] }[] = [
  { type: 'controlnet', keys: ['control_model.time_embed.0.weight', 'controlnet_cond_embedding.conv_in.weight'] },
  { type: 'stable_cascade', keys: ['clip_txt_mapper.weight', 'down_blocks.1.0.channelwise.0.weight'] },
  { type: 'sd3', keys: ['joint_blocks.0.context_block.adaLN_modulation.1.bias', 'model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias'] },
  { type: 'animatediff', keys: ['down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe'] },
  { type: 'auraflow', keys: ['double_layers.0.attn.w2q.weight'] },
  { type: 'flux', keys: ['double_blocks.0.img_attn.norm.key_norm.scale', 'model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale'] },
  { type: 'ltx-video', keys: ['model.diffusion_model.patchify_proj.weight', 'patchify_proj.weight'] },
  { type: 'autoencoder-dc', keys: ['decoder.stages.1.op_list.0.main.conv.conv.bias'] },
  { type: 'mochi-1-preview', keys: ['model.diffusion_model.blocks.0.attn.qkv_x.weight', 'blocks.0.attn.qkv_x.weight'] },
  { type: 'hunyuan-video', keys: ['txt_in.individual_token_refiner.blocks.0.adaLN_modulation.1.bias'] },
  { type: 'lumina2', keys: ['model.diffusion_model.cap_embedder.0.weight', 'cap_embedder.0.weight'] },
  { type: 'sana', keys: ['blocks.0.cross_attn.q_linear.weight'] },
  { type: 'wan', keys: ['model.diffusion_model.head.modulation', 'head.modulation', 'decoder.middle.0.residual.0.gamma'] },
];

/**
 * diffusers' model type of a single file. For the Stable Diffusion family this is exactly its
 * decision list (inpainting by 9 input channels, v2 by a 1024-wide cross-attention key, SDXL by a
 * 10th OpenCLIP block, …, else "v1"); other families are named by one identifying key. Like
 * diffusers it trusts real-size shapes: tiny test models of any layout come out "v1".
 */
export function inferModelType(shapes: ReadonlyMap<string, readonly number[]>): string {
  const last = (k: string): number | undefined => shapes.get(k)?.at(-1);
  const v2 = last(PROBE.v2) === 1024;
  const inChannels = shapes.get(PROBE.inpainting)?.[1];
  if (inChannels === 9) return v2 ? 'inpainting_v2' : shapes.has(PROBE.xlBase) ? 'xl_inpaint' : 'inpainting';
  if (v2) return 'v2';
  if (shapes.has(PROBE.playground)) return 'playground-v2-5';
  if (shapes.has(PROBE.xlBase)) return 'xl_base';
  if (shapes.has(PROBE.xlRefiner)) return 'xl_refiner';
  if (shapes.has(PROBE.upscale)) return 'upscale';
  for (const f of OTHER_FAMILIES) if (f.keys.some((k) => shapes.has(k))) return f.type;
  if (inChannels === 8) return 'instruct-pix2pix';
  return 'v1';
}

export interface SingleFileInspection {
  /** diffusers' model type (see inferModelType). */
  readonly modelType: string;
  /** The components found, at most one per name. */
  readonly components: readonly ComponentPlace[];
  /** Keys that belong to no component and are not a declared ignore. */
  readonly stray: readonly string[];
}

/** The component a key belongs to, if any. */
export function placeOf(key: string, components: readonly ComponentPlace[]): ComponentPlace | undefined {
  let best: ComponentPlace | undefined;
  for (const c of components) {
    const hit = c.prefix === '' ? BARE_VAE_ROOTS.some((r) => key.startsWith(r)) : key.startsWith(c.prefix);
    if (hit && (best === undefined || c.prefix.length > best.prefix.length)) best = c;
  }
  return best;
}

/** Where the components are, which keys are left over, and diffusers' model type. */
export function inspectSingleFile(shapes: ReadonlyMap<string, readonly number[]>): SingleFileInspection {
  const keys = [...shapes.keys()];
  const found: ComponentPlace[] = [];
  for (const place of COMPONENT_PLACES) {
    if (found.some((c) => c.name === place.name)) continue;
    if (keys.some((k) => k.startsWith(place.prefix))) found.push(place);
  }
  // A prefix-less VAE only when nothing else claims the file: its roots would be ambiguous otherwise.
  if (found.length === 0 && shapes.has('encoder.conv_in.weight') && shapes.has('decoder.conv_in.weight')) found.push(BARE_VAE);
  const stray = keys.filter((k) => placeOf(k, found) === undefined && fileIgnore(k) === null);
  return { modelType: inferModelType(shapes), components: found, stray };
}

/** One line naming what was recognised, for errors. */
export function describeInspection(i: SingleFileInspection): string {
  const parts = i.components.map((c) => `${c.name}: ${c.label}${c.prefix ? ` (${c.prefix}*)` : ''}`);
  return `diffusers model type "${i.modelType}"; components: ${parts.length ? parts.join(', ') : 'none'}`;
}
