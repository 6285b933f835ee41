/**
 * LoRA files: which base-model layer each pair of low-rank matrices belongs to, with its rank and alpha.
 *
 * Formats, detected from the keys (one file never mixes them):
 * - diffusers / PEFT: `<component>.<module>.<suffix>`, component `unet` / `text_encoder` / `text_encoder_2`,
 *   suffix `lora_A.weight` / `lora_B.weight` (PEFT), `lora.down.weight` / `lora.up.weight` (UNet, training
 *   scripts), `lora_linear_layer.down.weight` / `.up.weight` (text encoder), or the older processor form
 *   `…attn1.processor.to_q_lora.down.weight` / `…self_attn.to_q_lora.down.weight`. An optional
 *   `<component>.<module>.alpha` gives that module's alpha; without it alpha = rank, as diffusers loads them.
 * - kohya / A1111: `<prefix><module path, '.' → '_'>.lora_down.weight` / `.lora_up.weight` / `.alpha`, prefixes
 *   `lora_unet_`, `lora_te_` (SD text encoder), `lora_te1_` / `lora_te2_` (SDXL's two). Underscores are
 *   ambiguous, so the module paths are recovered by the declarative tables below, not by splitting. SDXL UNet
 *   names may be the original SGM block names (`input_blocks_4_1_…`), mapped with the UNet's layers_per_block.
 *
 * Alpha follows the file: each kohya module keeps its own alpha. diffusers 0.33.1 gives attention projections
 * the file's most common alpha instead (its alpha_pattern keys for them match no module); files with one alpha
 * — nearly all — load the same either way.
 *
 * Every key must land on a layer (or be an alpha next to one): an unknown key is a LoraFormatError naming it,
 * so a LoRA for another architecture never loads half-way. Whether the layer exists in the base model, with
 * shapes that fit, is `checkLoraTargets`' job.
 */
import { ControlNetXSError } from '../errors.js';
import { loadSafetensorsSync, bfloat16ToFloat32, halfToFloat32, type SafetensorsFile } from '../weights/safetensors.js';
import type { WeightRef } from '../weights/source.js';
import { readWeightBytes } from '../weights/view.js';
import { fusedKey } from './controlnet-xs-fusion.js';

/** Any LoRA failure; nothing was loaded when one is thrown. */
export class LoraError extends ControlNetXSError {}

/** A key no table maps, a missing half of a pair, a mixed or unsupported format (LyCORIS, DoRA). */
export class LoraFormatError extends LoraError {}

/** A LoRA layer with no matching base-model layer, or matrices whose shapes do not fit it. */
export class LoraTargetError extends LoraError {}

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';
export type LoraFileFormat = 'diffusers' | 'kohya';

/** One low-rank branch: `up(down(x)) · alpha / rank` added to the output of `module`. */
export interface LoraLayer {
  readonly component: LoraComponent;
  /** The module path in diffusers' model of `component` (UNet2DConditionModel / CLIPTextModel). */
  readonly module: string;
  /** [r, in] (Linear) or [r, in, kh, kw] (Conv2d): lora_A / lora_down. */
  readonly down: WeightRef;
  /** [out, r] (Linear) or [out, r, 1, 1] (Conv2d): lora_B / lora_up. */
  readonly up: WeightRef;
  readonly rank: number;
  readonly alpha: number;
}

export interface LoraFile {
  readonly path: string;
  readonly format: LoraFileFormat;
  readonly layers: readonly LoraLayer[];
}

export interface LoraParseOptions {
  /** The UNet's layers_per_block, needed only for SGM block names (SDXL kohya files). */
  readonly layersPerBlock?: number;
  /**
   * Skip keys that name no layer this library knows (reported here with the reason) instead of failing:
   * the user's explicit choice for files with stray keys. Without it such a key is a LoraFormatError.
   */
  readonly onUnknownKey?: (key: string, reason: string) => void;
}

// ---------------------------------------------------------------------------------------------------------
// kohya names → diffusers module paths (declarative tables; `$n` refers to the n-th group)

interface NameRule {
  readonly re: RegExp;
  /** The diffusers path, `$1`… the groups (a function where indices need arithmetic: SGM). */
  readonly to: string | ((m: RegExpExecArray, layersPerBlock: number) => string);
}

/** Inside a transformer model (`attentions.j` in diffusers, `…_1` in SGM): the same names in both. */
const ATTENTION_INNER = String.raw`(proj_in|proj_out|transformer_blocks_\d+_(?:attn[12]_(?:to_q|to_k|to_v|to_out_0)|ff_net_0_proj|ff_net_2))`;
const RESNET_INNER = String.raw`(conv1|conv2|time_emb_proj|conv_shortcut)`;

/** '_' → '.' inside an attention's inner name, whose only underscores inside a segment are the fixed ones. */
function attentionInner(s: string): string {
  return s
    .replace(/^transformer_blocks_(\d+)_/, 'transformer_blocks.$1.')
    .replace(/attn([12])_/, 'attn$1.')
    .replace(/to_out_0$/, 'to_out.0')
    .replace(/ff_net_0_proj$/, 'ff.net.0.proj')
    .replace(/ff_net_2$/, 'ff.net.2');
}

/** SGM resnet layer names → diffusers. */
const SGM_RESNET: Readonly<Record<string, string>> = {
  in_layers_2: 'conv1',
  out_layers_3: 'conv2',
  emb_layers_1: 'time_emb_proj',
  skip_connection: 'conv_shortcut',
};
const SGM_RESNET_INNER = '(in_layers_2|out_layers_3|emb_layers_1|skip_connection)';

/** `lora_unet_` names. */
const UNET_RULES: readonly NameRule[] = [
  { re: new RegExp(String.raw`^(down|up)_blocks_(\d+)_attentions_(\d+)_${ATTENTION_INNER}$`), to: (m) => `${m[1]}_blocks.${m[2]}.attentions.${m[3]}.${attentionInner(m[4]!)}` },
  { re: new RegExp(String.raw`^(down|up)_blocks_(\d+)_resnets_(\d+)_${RESNET_INNER}$`), to: '$1_blocks.$2.resnets.$3.$4' },
  { re: /^down_blocks_(\d+)_downsamplers_0_conv$/, to: 'down_blocks.$1.downsamplers.0.conv' },
  { re: /^up_blocks_(\d+)_upsamplers_0_conv$/, to: 'up_blocks.$1.upsamplers.0.conv' },
  { re: new RegExp(String.raw`^mid_block_attentions_0_${ATTENTION_INNER}$`), to: (m) => `mid_block.attentions.0.${attentionInner(m[1]!)}` },
  { re: new RegExp(String.raw`^mid_block_resnets_(\d+)_${RESNET_INNER}$`), to: 'mid_block.resnets.$1.$2' },
  { re: /^(conv_in|conv_out)$/, to: '$1' },
  { re: /^(time_embedding|add_embedding)_linear_([12])$/, to: '$1.linear_$2' },
  // SGM block names (kohya's SDXL files): index arithmetic of the table in the reference README 2.2.
  {
    re: new RegExp(String.raw`^input_blocks_(\d+)_([01])_(${SGM_RESNET_INNER.slice(1, -1)}|${ATTENTION_INNER.slice(1, -1)})$`),
    to: (m, L) => {
      const n = Number(m[1]);
      const [b, j] = [Math.floor((n - 1) / (L + 1)), (n - 1) % (L + 1)];
      if (n === 0 || j === L) return '';
      return m[2] === '0' ? `down_blocks.${b}.resnets.${j}.${SGM_RESNET[m[3]!] ?? ''}` : `down_blocks.${b}.attentions.${j}.${attentionInner(m[3]!)}`;
    },
  },
  {
    re: /^input_blocks_(\d+)_0_op$/,
    to: (m, L) => {
      const n = Number(m[1]);
      return n > 0 && n % (L + 1) === 0 ? `down_blocks.${n / (L + 1) - 1}.downsamplers.0.conv` : '';
    },
  },
  {
    re: new RegExp(String.raw`^middle_block_([012])_(${SGM_RESNET_INNER.slice(1, -1)}|${ATTENTION_INNER.slice(1, -1)})$`),
    to: (m) => (m[1] === '1' ? `mid_block.attentions.0.${attentionInner(m[2]!)}` : `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${SGM_RESNET[m[2]!] ?? ''}`),
  },
  {
    re: new RegExp(String.raw`^output_blocks_(\d+)_([01])_(${SGM_RESNET_INNER.slice(1, -1)}|${ATTENTION_INNER.slice(1, -1)})$`),
    to: (m, L) => {
      const n = Number(m[1]);
      const [b, j] = [Math.floor(n / (L + 1)), n % (L + 1)];
      return m[2] === '0' ? `up_blocks.${b}.resnets.${j}.${SGM_RESNET[m[3]!] ?? ''}` : `up_blocks.${b}.attentions.${j}.${attentionInner(m[3]!)}`;
    },
  },
  {
    // The upsampler is the block's last entry: index 2 after an attention, 1 without one (diffusers' mapper
    // assumes 2 — both are the upsampler here, since `…_1_conv` is no attention name).
    re: /^output_blocks_(\d+)_[12]_conv$/,
    to: (m, L) => {
      const n = Number(m[1]);
      return n % (L + 1) === L ? `up_blocks.${Math.floor(n / (L + 1))}.upsamplers.0.conv` : '';
    },
  },
];

/** `lora_te_` / `lora_te1_` / `lora_te2_` names. */
const TEXT_ENCODER_RULES: readonly NameRule[] = [
  { re: /^text_model_encoder_layers_(\d+)_self_attn_(q|k|v|out)_proj$/, to: 'text_model.encoder.layers.$1.self_attn.$2_proj' },
  { re: /^text_model_encoder_layers_(\d+)_mlp_fc([12])$/, to: 'text_model.encoder.layers.$1.mlp.fc$2' },
];

const KOHYA_PREFIXES: readonly { prefix: string; component: LoraComponent; rules: readonly NameRule[] }[] = [
  { prefix: 'lora_unet_', component: 'unet', rules: UNET_RULES },
  { prefix: 'lora_te1_', component: 'text_encoder', rules: TEXT_ENCODER_RULES },
  { prefix: 'lora_te2_', component: 'text_encoder_2', rules: TEXT_ENCODER_RULES },
  { prefix: 'lora_te_', component: 'text_encoder', rules: TEXT_ENCODER_RULES },
];

/** A kohya module name (the key before `.lora_down.weight`) → component and diffusers module path. */
export function kohyaModule(name: string, options: LoraParseOptions = {}): { component: LoraComponent; module: string } {
  const p = KOHYA_PREFIXES.find((k) => name.startsWith(k.prefix));
  if (p === undefined) throw new LoraFormatError(`LoRA key "${name}" has no known kohya prefix (lora_unet_, lora_te_, lora_te1_, lora_te2_)`);
  const rest = name.slice(p.prefix.length);
  for (const rule of p.rules) {
    const m = rule.re.exec(rest);
    if (m === null) continue;
    let module: string;
    if (typeof rule.to === 'string') {
      module = rule.to.replace(/\$(\d)/g, (_, i: string) => m[Number(i)] ?? '');
    } else {
      if (/^(input|output)_blocks_/.test(rest) && options.layersPerBlock === undefined) {
        throw new LoraFormatError(`LoRA key "${name}" uses SGM block names; mapping them needs the UNet's layers_per_block`);
      }
      module = rule.to(m, options.layersPerBlock ?? 0);
    }
    if (module === '' || module.endsWith('.')) break;
    return { component: p.component, module };
  }
  throw new LoraFormatError(`LoRA key "${name}" names no layer this library knows how to place (LoRA for another architecture?)`);
}

// ---------------------------------------------------------------------------------------------------------
// diffusers / PEFT keys

/** Suffix → which matrix; the old processor forms are rewritten first (below). */
const DIFFUSERS_SUFFIXES: readonly { suffix: string; role: 'down' | 'up' }[] = [
  { suffix: '.lora_A.weight', role: 'down' },
  { suffix: '.lora_B.weight', role: 'up' },
  { suffix: '.lora.down.weight', role: 'down' },
  { suffix: '.lora.up.weight', role: 'up' },
  { suffix: '.lora_linear_layer.down.weight', role: 'down' },
  { suffix: '.lora_linear_layer.up.weight', role: 'up' },
];

/** Older diffusers layouts (what diffusers' own kohya conversion writes): rewritten to `<module>.lora.down.weight`. */
const DIFFUSERS_OLD_FORMS: readonly { re: RegExp; to: string }[] = [
  { re: /^(.*)\.processor\.(to_q|to_k|to_v)_lora\.(down|up)\.weight$/, to: '$1.$2.lora.$3.weight' },
  { re: /^(.*)\.processor\.to_out_lora\.(down|up)\.weight$/, to: '$1.to_out.0.lora.$2.weight' },
  { re: /^(.*\.self_attn)\.to_(q|k|v)_lora\.(down|up)\.weight$/, to: '$1.$2_proj.lora.$3.weight' },
  { re: /^(.*\.self_attn)\.to_out_lora\.(down|up)\.weight$/, to: '$1.out_proj.lora.$2.weight' },
];

const COMPONENTS: readonly LoraComponent[] = ['text_encoder_2', 'text_encoder', 'unet'];

/** A diffusers/PEFT key → component, module path and role (`alpha` for `<module>.alpha`). */
export function diffusersKey(key: string): { component: LoraComponent; module: string; role: 'down' | 'up' | 'alpha' } {
  const component = COMPONENTS.find((c) => key.startsWith(`${c}.`));
  if (component === undefined) throw new LoraFormatError(`LoRA key "${key}" starts with no component (unet., text_encoder., text_encoder_2.)`);
  let rest = key.slice(component.length + 1);
  for (const f of DIFFUSERS_OLD_FORMS) {
    if (f.re.test(rest)) {
      rest = rest.replace(f.re, f.to);
      break;
    }
  }
  for (const s of DIFFUSERS_SUFFIXES) {
    if (rest.endsWith(s.suffix) && rest.length > s.suffix.length) return { component, module: rest.slice(0, -s.suffix.length), role: s.role };
  }
  if (rest.endsWith('.alpha')) return { component, module: rest.slice(0, -'.alpha'.length), role: 'alpha' };
  throw new LoraFormatError(`LoRA key "${key}" is no LoRA matrix this library reads (lora_A/lora_B, lora.down/up, lora_linear_layer.down/up)`);
}

// ---------------------------------------------------------------------------------------------------------
// files

/** Keys of formats that are not plain LoRA: refused by name rather than loaded wrongly. */
const UNSUPPORTED = [
  { re: /(hada_w[12]_[ab]|hada_t[12])$/, what: 'LyCORIS LoHa' },
  { re: /(lokr_w[12](_[ab])?|lokr_t2)$/, what: 'LyCORIS LoKr' },
  { re: /dora_scale$/, what: 'DoRA (dora_scale)' },
] as const;

function scalarValue(ref: WeightRef): number {
  const bytes = readWeightBytes(ref);
  const copy = bytes.slice().buffer;
  const { dtype, shape } = ref.info;
  if (shape.reduce((a, b) => a * b, 1) !== 1) throw new LoraFormatError(`LoRA alpha "${ref.info.name}" has shape [${shape.join(', ')}], not one value`);
  if (dtype === 'F32') return new Float32Array(copy)[0]!;
  if (dtype === 'F64') return new Float64Array(copy)[0]!;
  if (dtype === 'F16') return halfToFloat32(new Uint16Array(copy))[0]!;
  if (dtype === 'BF16') return bfloat16ToFloat32(new Uint16Array(copy))[0]!;
  throw new LoraFormatError(`LoRA alpha "${ref.info.name}" has dtype ${dtype}, not a float`);
}

/** Read a LoRA safetensors file's layers (refs into the file; only alphas are read). */
export function readLoraFile(path: string, options: LoraParseOptions = {}): LoraFile {
  return parseLoraFile(loadSafetensorsSync(path), options);
}

export function parseLoraFile(file: SafetensorsFile, options: LoraParseOptions = {}): LoraFile {
  const keys = file.keys();
  if (keys.length === 0) throw new LoraFormatError(`${file.path}: no tensors, not a LoRA file`);
  for (const key of keys) {
    const bad = UNSUPPORTED.find((u) => u.re.test(key));
    if (bad !== undefined) throw new LoraFormatError(`${file.path}: "${key}" is ${bad.what}, which this library does not load (diffusers 0.33.1 does not either)`);
  }
  const kohya = keys.filter((k) => k.startsWith('lora_unet_') || k.startsWith('lora_te'));
  if (kohya.length > 0 && kohya.length !== keys.length) {
    const other = keys.find((k) => !kohya.includes(k))!;
    throw new LoraFormatError(`${file.path}: kohya keys ("${kohya[0]}") mixed with others ("${other}")`);
  }
  const format: LoraFileFormat = kohya.length > 0 ? 'kohya' : 'diffusers';

  // component + module → its parts, in file order
  const parts = new Map<string, { component: LoraComponent; module: string; down?: WeightRef; up?: WeightRef; alpha?: number; keys: string[] }>();
  const ref = (key: string): WeightRef => ({ file, info: file.info(key) });
  const place = (key: string): { component: LoraComponent; module: string; role: 'down' | 'up' | 'alpha' } => {
    if (format === 'kohya') {
      const m = /^(.*)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(key);
      if (m === null) throw new LoraFormatError(`${file.path}: kohya key "${key}" ends in none of .lora_down.weight, .lora_up.weight, .alpha`);
      const role = m[2] === 'alpha' ? 'alpha' : m[2] === 'lora_down.weight' ? 'down' : 'up';
      return { ...kohyaModule(m[1]!, options), role };
    }
    return diffusersKey(key);
  };
  for (const key of keys) {
    let placed: ReturnType<typeof place>;
    try {
      placed = place(key);
    } catch (e) {
      if (!(e instanceof LoraFormatError) || options.onUnknownKey === undefined) throw e;
      options.onUnknownKey(key, e.message);
      continue;
    }
    const { component, module, role } = placed;
    const id = `${component}.${module}`;
    const entry = parts.get(id) ?? { component, module, keys: [] };
    parts.set(id, entry);
    if (role === 'alpha' ? entry.alpha !== undefined : entry[role] !== undefined) {
      throw new LoraFormatError(`${file.path}: "${key}" gives the ${role} of ${id} a second time (after "${entry.keys.join('", "')}")`);
    }
    entry.keys.push(key);
    if (role === 'alpha') entry.alpha = scalarValue(ref(key));
    else entry[role] = ref(key);
  }

  const layers: LoraLayer[] = [];
  for (const [id, e] of parts) {
    if (e.down === undefined || e.up === undefined) {
      throw new LoraFormatError(`${file.path}: ${id} has ${e.down === undefined ? 'no down (lora_A)' : 'no up (lora_B)'} matrix (keys: "${e.keys.join('", "')}")`);
    }
    const d = e.down.info.shape, u = e.up.info.shape;
    const rank = d[0];
    const convUp = u.length === 4 && u[2] === 1 && u[3] === 1;
    if (rank === undefined || rank < 1 || !(d.length === 2 || d.length === 4) || u.length !== d.length || u[1] !== rank || (u.length === 4 && !convUp)) {
      throw new LoraFormatError(`${file.path}: ${id}: down [${d.join(', ')}] and up [${u.join(', ')}] are no LoRA pair (down [r, in] or [r, in, kh, kw], up [out, r] or [out, r, 1, 1])`);
    }
    const alpha = e.alpha ?? rank;
    if (!Number.isFinite(alpha)) throw new LoraFormatError(`${file.path}: ${id}: alpha ${alpha} is not finite`);
    layers.push({ component: e.component, module: e.module, down: e.down, up: e.up, rank, alpha });
  }
  return { path: file.path, format, layers };
}

// ---------------------------------------------------------------------------------------------------------
// targets

/** The fused ControlNet-XS model's path of a base-UNet module (the fusion table's rename); null if it has none. */
export function fusedLoraModule(module: string): string | null {
  const k = fusedKey('unet', `${module}.weight`);
  return k === null ? null : k.slice(0, -'.weight'.length);
}

/**
 * Check every layer of `component` against the base model's weight shapes (its checkpoint keys): the module's
 * `.weight` must exist and be a Linear [out, in] or Conv2d [out, in, kh, kw] the matrices fit. Throws
 * LoraTargetError naming the first misfit.
 */
export function checkLoraTargets(lora: LoraFile, component: LoraComponent, weightShapes: (key: string) => readonly number[] | undefined): void {
  for (const l of lora.layers) {
    if (l.component !== component) continue;
    const w = weightShapes(`${l.module}.weight`);
    const where = `${lora.path}: ${component}.${l.module}`;
    if (w === undefined) throw new LoraTargetError(`${where} is no layer of this ${component} (a LoRA for another model?)`);
    const d = l.down.info.shape, u = l.up.info.shape;
    if (!loraFits(w, d, u)) throw new LoraTargetError(`${where}: down [${d.join(', ')}] / up [${u.join(', ')}] do not fit its weight [${w.join(', ')}]`);
  }
}

/** Whether down / up matrices fit a Linear [out, in] or Conv2d [out, in, kh, kw] weight. */
export function loraFits(w: readonly number[], down: readonly number[], up: readonly number[]): boolean {
  return w.length === 2
    ? down.length === 2 && down[1] === w[1] && up.length === 2 && up[0] === w[0]
    : w.length === 4 && down.length === 4 && down[1] === w[1] && down[2] === w[2] && down[3] === w[3] && up.length === 4 && up[0] === w[0];
}

/** The layer's full-size delta `up · down · alpha / rank` in float64 ([out, in] or [out, in, kh, kw], row-major). */
export function loraDelta(layer: LoraLayer): Float64Array {
  const down = floats(layer.down), up = floats(layer.up);
  const r = layer.rank;
  const out = layer.up.info.shape[0]!;
  const inner = down.length / r; // in (Linear) or in·kh·kw (Conv2d: the kernel positions ride along)
  const scaling = layer.alpha / r;
  const delta = new Float64Array(out * inner);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < r; k++) {
      const a = up[o * r + k]! * scaling;
      for (let i = 0; i < inner; i++) delta[o * inner + i] = delta[o * inner + i]! + a * down[k * inner + i]!;
    }
  }
  return delta;
}

function floats(ref: WeightRef): Float64Array {
  const copy = readWeightBytes(ref).slice().buffer;
  switch (ref.info.dtype) {
    case 'F32': return Float64Array.from(new Float32Array(copy));
    case 'F64': return new Float64Array(copy);
    case 'F16': return Float64Array.from(halfToFloat32(new Uint16Array(copy)));
    case 'BF16': return Float64Array.from(bfloat16ToFloat32(new Uint16Array(copy)));
    default: throw new LoraFormatError(`LoRA matrix "${ref.info.name}" has dtype ${ref.info.dtype}, not a float`);
  }
}

/**
 * The layers of `component` as a model takes them (module path, matrices, alpha / rank); `fused`: UNet
 * modules renamed to the fused ControlNet-XS model's paths (a module with no place there is a LoraTargetError).
 */
export function loraModelLayers(
  lora: LoraFile,
  component: LoraComponent,
  options: { fused?: boolean } = {},
): { module: string; down: WeightRef; up: WeightRef; scaling: number }[] {
  return lora.layers
    .filter((l) => l.component === component)
    .map((l) => {
      const module = options.fused ? fusedLoraModule(l.module) : l.module;
      if (module === null) throw new LoraTargetError(`${lora.path}: ${component}.${l.module} has no place in a ControlNet-XS model`);
      return { module, down: l.down, up: l.up, scaling: l.alpha / l.rank };
    });
}
