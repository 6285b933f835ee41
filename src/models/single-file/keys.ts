/**
 * Original (LDM / SGM) single-file checkpoints → diffusers keys, as data: one rule table per key
 * layout (the LDM UNet, the LDM VAE, transformers' CLIP, OpenCLIP), a declared list of keys diffusers
 * leaves behind, and the engine that applies them. Nothing here reads a tensor: a key and its shape
 * are all a rule needs, so the same tables map a real file, a header, or a key → shape listing.
 *
 * A pattern is a dotted key with `{name}` for a block index (digits) and a trailing `*` for the rest
 * of the key; the diffusers side names the same placeholders, computed by the rule's `index`.
 */
import { WeightLoadError } from '../../errors.js';

/** A key layout of one component inside a single file. */
export type KeyLayout = 'ldm-unet' | 'ldm-vae' | 'hf-clip' | 'open-clip';

/** How the diffusers tensor is made from the stored one. */
export type KeyTransform =
  /** the stored tensor as it is */
  | 'copy'
  /** a (C, C, 1, 1) 1×1 conv weight read as the (C, C) linear weight it equals (VAE mid-block attention) */
  | 'squeeze_1x1'
  /** OpenCLIP's fused in_proj (3H, …) split into q/k/v rows [0:H], [H:2H], [2H:3H] */
  | 'split_qkv'
  /** OpenCLIP's `text_projection` (H, P) used as x @ P; the Linear weight is its transpose (P, H) */
  | 'transpose';

/**
 * Index arithmetic from LDM block numbers to diffusers' (b, j), L = layers per block, n = blocks:
 * `input`: input_blocks.i (i ≥ 1) → down block ⌊(i−1)/(L+1)⌋, layer (i−1) mod (L+1) (the slot
 * j = L holds the downsampler); `output`: output_blocks.i → up block ⌊i/(L+1)⌋, layer i mod (L+1);
 * `reversed`: the VAE decoder's up.k → up_blocks.(n−1−k) (LDM counts from the lowest resolution).
 */
export type IndexMap = 'input' | 'output' | 'reversed';

export interface KeyRule {
  /** LDM pattern, relative to the component's prefix. */
  readonly ldm: string;
  /** diffusers pattern; `split_qkv` gives the three keys q, k, v. */
  readonly to: string | readonly [string, string, string];
  readonly transform?: KeyTransform;
  readonly index?: IndexMap;
  /** Renames inside the `*` rest, each a leading-segment prefix (resnet sub-modules). */
  readonly inner?: readonly (readonly [string, string])[];
}

/** A key diffusers ignores, declared by name, with the reason it is not a weight of the model. */
export interface IgnoreRule {
  readonly ldm: string;
  readonly why: string;
  /**
   * Only when: `withoutProjection` — the model has no `text_projection` (SD 2.x's CLIPTextModel);
   * `extraBlock` — `{n}` is the block right after the last one the config uses (SD 2.x's OpenCLIP
   * has 24 blocks and uses the penultimate, so diffusers' encoder has 23 and skips block 23).
   */
  readonly when?: 'withoutProjection' | 'extraBlock';
}

/** LDM ResBlock sub-modules → diffusers ResnetBlock2D. */
const UNET_RESNET: readonly (readonly [string, string])[] = [
  ['in_layers.0', 'norm1'],
  ['in_layers.2', 'conv1'],
  ['emb_layers.1', 'time_emb_proj'],
  ['out_layers.0', 'norm2'],
  ['out_layers.3', 'conv2'],
  ['skip_connection', 'conv_shortcut'],
];

const VAE_RESNET: readonly (readonly [string, string])[] = [['nin_shortcut', 'conv_shortcut']];

/**
 * First match wins, so the more specific pattern of a pair comes first (`.0.op` before `.0`, an
 * upsampler's `.1.conv` before the attention at `.1`: a SpatialTransformer has no `conv` child).
 */
/**
 * The VAE mid block, the same in the encoder and the decoder: two resnets and one attention whose LDM
 * 1×1 convs (q, k, v, proj_out) are diffusers' linears (`squeeze_1x1`).
 */
function vaeMidBlock(side: 'encoder' | 'decoder'): KeyRule[] {
  const attention: [string, string][] = [['q', 'to_q'], ['k', 'to_k'], ['v', 'to_v'], ['proj_out', 'to_out.0']];
  return [
    { ldm: `${side}.mid.block_1.*`, to: `${side}.mid_block.resnets.0.*`, inner: VAE_RESNET },
    { ldm: `${side}.mid.block_2.*`, to: `${side}.mid_block.resnets.1.*`, inner: VAE_RESNET },
    { ldm: `${side}.mid.attn_1.norm.*`, to: `${side}.mid_block.attentions.0.group_norm.*` },
    ...attention.map(([l, d]): KeyRule => ({ ldm: `${side}.mid.attn_1.${l}.weight`, to: `${side}.mid_block.attentions.0.${d}.weight`, transform: 'squeeze_1x1' })),
    ...attention.map(([l, d]): KeyRule => ({ ldm: `${side}.mid.attn_1.${l}.bias`, to: `${side}.mid_block.attentions.0.${d}.bias` })),
  ];
}

export const KEY_RULES: Readonly<Record<KeyLayout, readonly KeyRule[]>> = {
  'ldm-unet': [
    { ldm: 'time_embed.0.*', to: 'time_embedding.linear_1.*' },
    { ldm: 'time_embed.2.*', to: 'time_embedding.linear_2.*' },
    // SDXL's micro-conditioning embedding (addition_embed_type "text_time")
    { ldm: 'label_emb.0.0.*', to: 'add_embedding.linear_1.*' },
    { ldm: 'label_emb.0.2.*', to: 'add_embedding.linear_2.*' },
    { ldm: 'input_blocks.0.0.*', to: 'conv_in.*' },
    { ldm: 'input_blocks.{i}.0.op.*', to: 'down_blocks.{b}.downsamplers.0.conv.*', index: 'input' },
    { ldm: 'input_blocks.{i}.0.*', to: 'down_blocks.{b}.resnets.{j}.*', index: 'input', inner: UNET_RESNET },
    { ldm: 'input_blocks.{i}.1.*', to: 'down_blocks.{b}.attentions.{j}.*', index: 'input' },
    { ldm: 'middle_block.0.*', to: 'mid_block.resnets.0.*', inner: UNET_RESNET },
    { ldm: 'middle_block.1.*', to: 'mid_block.attentions.0.*' },
    { ldm: 'middle_block.2.*', to: 'mid_block.resnets.1.*', inner: UNET_RESNET },
    { ldm: 'output_blocks.{i}.0.*', to: 'up_blocks.{b}.resnets.{j}.*', index: 'output', inner: UNET_RESNET },
    { ldm: 'output_blocks.{i}.1.conv.*', to: 'up_blocks.{b}.upsamplers.0.conv.*', index: 'output' },
    { ldm: 'output_blocks.{i}.1.*', to: 'up_blocks.{b}.attentions.{j}.*', index: 'output' },
    { ldm: 'output_blocks.{i}.2.conv.*', to: 'up_blocks.{b}.upsamplers.0.conv.*', index: 'output' },
    { ldm: 'out.0.*', to: 'conv_norm_out.*' },
    { ldm: 'out.2.*', to: 'conv_out.*' },
  ],
  'ldm-vae': [
    { ldm: 'encoder.conv_in.*', to: 'encoder.conv_in.*' },
    { ldm: 'encoder.conv_out.*', to: 'encoder.conv_out.*' },
    { ldm: 'encoder.norm_out.*', to: 'encoder.conv_norm_out.*' },
    { ldm: 'encoder.down.{i}.block.{j}.*', to: 'encoder.down_blocks.{i}.resnets.{j}.*', inner: VAE_RESNET },
    { ldm: 'encoder.down.{i}.downsample.conv.*', to: 'encoder.down_blocks.{i}.downsamplers.0.conv.*' },
    ...vaeMidBlock('encoder'),
    { ldm: 'decoder.conv_in.*', to: 'decoder.conv_in.*' },
    { ldm: 'decoder.conv_out.*', to: 'decoder.conv_out.*' },
    { ldm: 'decoder.norm_out.*', to: 'decoder.conv_norm_out.*' },
    { ldm: 'decoder.up.{i}.block.{j}.*', to: 'decoder.up_blocks.{b}.resnets.{j}.*', index: 'reversed', inner: VAE_RESNET },
    { ldm: 'decoder.up.{i}.upsample.conv.*', to: 'decoder.up_blocks.{b}.upsamplers.0.conv.*', index: 'reversed' },
    ...vaeMidBlock('decoder'),
    { ldm: 'quant_conv.*', to: 'quant_conv.*' },
    { ldm: 'post_quant_conv.*', to: 'post_quant_conv.*' },
  ],
  // transformers' CLIPTextModel state dict under a prefix: the keys are diffusers' already
  'hf-clip': [{ ldm: 'text_model.*', to: 'text_model.*' }],
  'open-clip': [
    { ldm: 'token_embedding.weight', to: 'text_model.embeddings.token_embedding.weight' },
    { ldm: 'positional_embedding', to: 'text_model.embeddings.position_embedding.weight' },
    { ldm: 'ln_final.*', to: 'text_model.final_layer_norm.*' },
    { ldm: 'text_projection', to: 'text_projection.weight', transform: 'transpose' },
    { ldm: 'transformer.resblocks.{i}.ln_1.*', to: 'text_model.encoder.layers.{i}.layer_norm1.*' },
    { ldm: 'transformer.resblocks.{i}.ln_2.*', to: 'text_model.encoder.layers.{i}.layer_norm2.*' },
    { ldm: 'transformer.resblocks.{i}.attn.out_proj.*', to: 'text_model.encoder.layers.{i}.self_attn.out_proj.*' },
    {
      ldm: 'transformer.resblocks.{i}.attn.in_proj_weight',
      to: ['text_model.encoder.layers.{i}.self_attn.q_proj.weight', 'text_model.encoder.layers.{i}.self_attn.k_proj.weight', 'text_model.encoder.layers.{i}.self_attn.v_proj.weight'],
      transform: 'split_qkv',
    },
    {
      ldm: 'transformer.resblocks.{i}.attn.in_proj_bias',
      to: ['text_model.encoder.layers.{i}.self_attn.q_proj.bias', 'text_model.encoder.layers.{i}.self_attn.k_proj.bias', 'text_model.encoder.layers.{i}.self_attn.v_proj.bias'],
      transform: 'split_qkv',
    },
    { ldm: 'transformer.resblocks.{i}.mlp.c_fc.*', to: 'text_model.encoder.layers.{i}.mlp.fc1.*' },
    { ldm: 'transformer.resblocks.{i}.mlp.c_proj.*', to: 'text_model.encoder.layers.{i}.mlp.fc2.*' },
  ],
};

/** The 12 schedule buffers LDM's DDPM registers (register_schedule); diffusers' schedulers compute their own. */
const DDPM_BUFFERS = [
  'betas',
  'alphas_cumprod',
  'alphas_cumprod_prev',
  'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod',
  'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod',
  'posterior_variance',
  'posterior_log_variance_clipped',
  'posterior_mean_coef1',
  'posterior_mean_coef2',
] as const;

/** Keys of a whole file that belong to no model (relative to the file's root). */
export const FILE_IGNORES: readonly IgnoreRule[] = [
  ...DDPM_BUFFERS.map((k) => ({ ldm: k, why: "LDM's DDPM schedule buffer (the scheduler config computes its own)" })),
  { ldm: 'model_ema.*', why: 'EMA bookkeeping (decay, num_updates) or EMA copies of the UNet; diffusers loads model.diffusion_model.*' },
];

/** Keys inside a component that are not weights of its diffusers model. */
export const COMPONENT_IGNORES: Readonly<Record<KeyLayout, readonly IgnoreRule[]>> = {
  'ldm-unet': [],
  'ldm-vae': [],
  'hf-clip': [{ ldm: 'text_model.embeddings.position_ids', why: 'a buffer (arange) transformers < 4.31 saved; not a parameter' }],
  'open-clip': [
    { ldm: 'logit_scale', why: "CLIP's contrastive temperature, unused by a text encoder" },
    { ldm: 'text_projection', why: "SD 2.x's text encoder (CLIPTextModel) has no projection", when: 'withoutProjection' },
    { ldm: 'transformer.resblocks.{i}.*', why: 'the OpenCLIP block after the one SD 2.x uses (it takes the penultimate layer)', when: 'extraBlock' },
  ],
};

/** What the index arithmetic and the conditional ignores need from the component's config. */
export interface KeyContext {
  /** UNet `layers_per_block` (L). */
  readonly layersPerBlock?: number;
  /** VAE: number of blocks (n). */
  readonly blocks?: number;
  /** Text encoder: layers of the model and whether it has `text_projection`. */
  readonly numHiddenLayers?: number;
  readonly withProjection?: boolean;
  /** OpenCLIP of SD 2.x: the file carries one more block than the model uses. */
  readonly extraBlock?: boolean;
}

/** One diffusers tensor made from a stored key. */
export interface KeyTarget {
  readonly key: string;
  readonly transform: KeyTransform;
  /** `split_qkv`: which third (0 = q, 1 = k, 2 = v). */
  readonly part?: 0 | 1 | 2;
}

export type KeyMapping =
  | { readonly kind: 'mapped'; readonly targets: readonly KeyTarget[] }
  | { readonly kind: 'ignored'; readonly why: string }
  | { readonly kind: 'unmapped' };

interface Compiled {
  readonly re: RegExp;
  readonly names: readonly string[];
  readonly rest: boolean;
}

function compile(pattern: string): Compiled {
  const names: string[] = [];
  const rest = pattern.endsWith('.*');
  const body = rest ? pattern.slice(0, -2) : pattern;
  const src = body
    .split('.')
    .map((seg) => {
      const m = /^\{(\w+)\}$/.exec(seg);
      if (m) {
        names.push(m[1]!); // bounds: the group always matches
        return '(\\d+)';
      }
      return seg.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
    })
    .join('\\.');
  return { re: new RegExp(`^${src}${rest ? '\\.(.+)' : ''}$`), names, rest };
}

/** Every table entry compiled once, when this module loads (a constant: never changed afterwards). */
const COMPILED: ReadonlyMap<KeyRule | IgnoreRule, Compiled> = new Map(
  [...Object.values(KEY_RULES).flat(), ...Object.values(COMPONENT_IGNORES).flat(), ...FILE_IGNORES].map((r) => [r, compile(r.ldm)]),
);

function match(rule: KeyRule | IgnoreRule, key: string): { vars: Record<string, number>; rest: string | null } | null {
  const c = COMPILED.get(rule);
  if (c === undefined) throw new Error(`key rule ${rule.ldm} is not in the tables`);
  const m = c.re.exec(key);
  if (!m) return null;
  const vars: Record<string, number> = {};
  c.names.forEach((n, k) => (vars[n] = Number(m[k + 1])));
  return { vars, rest: c.rest ? m[c.names.length + 1]! : null }; // bounds: the rest group exists when c.rest
}

/** The diffusers placeholders of a rule's match. */
function indexVars(rule: KeyRule, vars: Record<string, number>, ctx: KeyContext, where: string): Record<string, number> {
  if (rule.index === undefined) return vars;
  const i = vars['i'];
  if (i === undefined) throw new Error(`key rule ${rule.ldm} has an index map but no {i}`);
  if (rule.index === 'reversed') {
    const n = need(ctx.blocks, 'the VAE block count', where);
    return { ...vars, b: n - 1 - i };
  }
  const L = need(ctx.layersPerBlock, 'layers_per_block', where);
  const k = rule.index === 'input' ? i - 1 : i;
  return { ...vars, b: Math.floor(k / (L + 1)), j: k % (L + 1) };
}

function need(v: number | undefined, what: string, where: string): number {
  if (v === undefined) throw new WeightLoadError(`${where}: mapping this key needs ${what} from the config`);
  return v;
}

function fill(template: string, vars: Record<string, number>, rest: string | null): string {
  const out = template.replace(/\{(\w+)\}/g, (_, n: string) => {
    const v = vars[n];
    if (v === undefined) throw new Error(`key template ${template} names {${n}}, which its rule does not define`);
    return String(v);
  });
  return rest === null ? out : out.replace(/\*$/, rest);
}

function renameInner(rest: string | null, inner: KeyRule['inner']): string | null {
  if (rest === null || inner === undefined) return rest;
  for (const [from, to] of inner) {
    if (rest === from || rest.startsWith(`${from}.`)) return to + rest.slice(from.length);
  }
  return rest;
}

/** Is `key` (relative to the file root) one of the file-level ignores? Then why. */
export function fileIgnore(key: string): string | null {
  for (const r of FILE_IGNORES) if (match(r, key)) return r.why;
  return null;
}

/**
 * Where one key of a component (relative to its prefix) goes. `shape` decides the squeeze (a VAE
 * attention weight stored already as (C, C) is copied, as diffusers only squeezes rank > 2).
 */
export function mapKey(layout: KeyLayout, key: string, shape: readonly number[], ctx: KeyContext, where = key): KeyMapping {
  for (const r of COMPONENT_IGNORES[layout]) {
    const m = match(r, key);
    if (!m) continue;
    if (r.when === 'withoutProjection' && ctx.withProjection !== false) continue;
    if (r.when === 'extraBlock' && !(ctx.extraBlock === true && m.vars['i'] === ctx.numHiddenLayers)) continue;
    return { kind: 'ignored', why: r.why };
  }
  for (const r of KEY_RULES[layout]) {
    const m = match(r, key);
    if (!m) continue;
    const vars = indexVars(r, m.vars, ctx, where);
    const rest = renameInner(m.rest, r.inner);
    const transform = r.transform === 'squeeze_1x1' && shape.length !== 4 ? 'copy' : (r.transform ?? 'copy');
    if (typeof r.to === 'string') return { kind: 'mapped', targets: [{ key: fill(r.to, vars, rest), transform }] };
    const parts = r.to.map((t, p) => ({ key: fill(t, vars, rest), transform, part: p as 0 | 1 | 2 }));
    return { kind: 'mapped', targets: parts };
  }
  return { kind: 'unmapped' };
}

/** The diffusers shape of a target made from a stored tensor of `shape`; a named error when it cannot be. */
export function targetShape(shape: readonly number[], t: KeyTarget, where: string): number[] {
  switch (t.transform) {
    case 'copy':
      return [...shape];
    case 'squeeze_1x1':
      if (shape.length !== 4 || shape[2] !== 1 || shape[3] !== 1) {
        throw new WeightLoadError(`${where}: expected a 1×1 conv weight (C, C, 1, 1) to squeeze, got [${shape.join(', ')}]`);
      }
      return shape.slice(0, 2);
    case 'split_qkv': {
      const rows = shape[0];
      if (rows === undefined || rows % 3 !== 0) {
        throw new WeightLoadError(`${where}: a fused in_proj needs 3·H rows, got [${shape.join(', ')}]`);
      }
      return [rows / 3, ...shape.slice(1)];
    }
    case 'transpose':
      if (shape.length !== 2) throw new WeightLoadError(`${where}: text_projection must be 2-D, got [${shape.join(', ')}]`);
      return [shape[1]!, shape[0]!]; // bounds: rank 2 checked
  }
}

/** The reference tables' spelling of a target's transform (diffusers' own operation). */
export function describeTransform(t: KeyTarget, shape: readonly number[]): string {
  switch (t.transform) {
    case 'copy':
      return 'copy';
    case 'squeeze_1x1':
      return 'squeeze_1x1 ([:, :, 0, 0])';
    case 'transpose':
      return 'transpose';
    case 'split_qkv': {
      const h = (shape[0] ?? 0) / 3;
      const p = t.part ?? 0;
      return `rows [${p * h}:${(p + 1) * h}]`;
    }
  }
}
