/**
 * LoRA on the ControlNet-XS pipelines: diffusers' LoraLoaderMixin calls (`load_lora_weights`, `set_adapters`,
 * `disable_lora` / `enable_lora`, `delete_adapters`, `unload_lora_weights`, `get_active_adapters`,
 * `get_list_adapters`) with the semantics a user expects from the plain SD/SDXL pipelines — diffusers 0.33.1's
 * own ControlNet-XS pipelines cannot load a LoRA (the fused UNet has no PEFT mixin; reference README 0).
 *
 * A LoRA applies to the base UNet (through the fusion table onto the fused model; the adapter half never gets
 * one) and to the text encoder(s). Each adapter's layers become low-rank branches in the traced graphs whose
 * factor is a graph input: loading or deleting an adapter re-traces the models it touches once; `setAdapters`
 * weights, `disableLora` and the per-run `crossAttentionKwargs.scale` only change what the inputs are fed.
 * The factor of adapter a in a run: set_adapters weight(a) × scale if a is active and LoRA enabled, else 0 —
 * UNet and text encoders alike (diffusers scales the text-encoder layers via encode_prompt(lora_scale) and the
 * UNet's via cross_attention_kwargs; README 2.1).
 *
 * Loading is atomic: the file is parsed and every layer checked against every model first (named LoraErrors);
 * only then does any model change.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, MissingWeightsError } from '../errors.js';
import { hubDownload } from '../hub/index.js';
import { adapterHubOptions, requireRepoId, type AdapterHubSettings } from './adapter-source.js';
import { LoraError, LoraTargetError, loraModelLayers, readLoraFile, type LoraComponent } from '../models/lora-file.js';
import type { ModelLoraLayer, TracedModel } from '../models/traced-model.js';

/** The name diffusers' training scripts save LoRA weights under. */
const DEFAULT_WEIGHT_NAME = 'pytorch_lora_weights.safetensors';
/**
 * UNetControlNetXSModel always has two resnets per down block (diffusers builds it so), so SGM block
 * numbers in a kohya SDXL file map with layers_per_block 2.
 */
const CNXS_LAYERS_PER_BLOCK = 2;

/** With the Hub settings every adapter loader takes (`AdapterHubSettings`). */
export interface LoadLoraWeightsOptions extends AdapterHubSettings {
  /** File name inside a folder or Hub repo (default `pytorch_lora_weights.safetensors`). */
  weightName?: string;
  /** Name to load the adapter under (default `default_<n>`, n = adapters already loaded, as diffusers). */
  adapterName?: string;
  /** Folder inside a folder or Hub repo. */
  subfolder?: string;
  /** Skip keys that map to no layer (one warning lists them) instead of refusing the file: strict by default. */
  ignoreUnknownKeys?: boolean;
}

export interface FuseLoraOptions {
  /** The components to merge into (default all: unet and the text encoders). */
  components?: readonly LoraComponent[];
  /** The LoRA scale merged in (default 1). */
  loraScale?: number;
  /** The adapters to merge (default the active ones). */
  adapterNames?: readonly string[];
}

/** The models a pipeline's LoRA reaches, under diffusers' component names. */
export interface LoraModels {
  readonly unet: TracedModel;
  readonly textEncoders: readonly { readonly name: 'text_encoder' | 'text_encoder_2'; readonly model: TracedModel }[];
}

async function resolveLoraFile(source: string, o: LoadLoraWeightsOptions): Promise<string> {
  if (existsSync(source) && statSync(source).isFile()) return source;
  const name = o.weightName ?? DEFAULT_WEIGHT_NAME;
  if (existsSync(source)) {
    const path = join(o.subfolder ? join(source, o.subfolder) : source, name);
    if (!existsSync(path)) throw new MissingWeightsError(`${source}: no LoRA file ${name}${o.subfolder ? ` in ${o.subfolder}` : ''} (pass weightName)`);
    return path;
  }
  requireRepoId(source);
  const hub = adapterHubOptions(o);
  return hubDownload(source, o.subfolder ? `${o.subfolder}/${name}` : name, hub);
}

/** One pipeline's LoRA state: which adapters are loaded where, which are active with what weight, on/off. */
export class PipelineLora {
  /** Adapter → the components it has layers in, in load order. */
  private readonly adapters = new Map<string, LoraComponent[]>();
  private active: string[] = [];
  private readonly weights = new Map<string, number>();
  private enabled = true;

  constructor(private readonly models: () => LoraModels) {}

  /** diffusers' `load_lora_weights`: returns the adapter's name. The new adapter is active (weight 1), as in diffusers. */
  async load(source: string, o: LoadLoraWeightsOptions = {}): Promise<string> {
    const name = o.adapterName ?? `default_${this.adapters.size}`;
    if (this.adapters.has(name)) throw new LoraError(`LoRA adapter name "${name}" is already in use; pass another adapterName or delete it first`);
    const path = await resolveLoraFile(source, o);
    if (!path.endsWith('.safetensors')) throw new LoraError(`${path}: only .safetensors LoRA files are read (convert a .bin/.ckpt LoRA first)`);
    const skipped: string[] = [];
    const lora = readLoraFile(path, {
      layersPerBlock: CNXS_LAYERS_PER_BLOCK,
      ...(o.ignoreUnknownKeys ? { onUnknownKey: (key: string) => skipped.push(key) } : {}),
    });
    if (skipped.length > 0) {
      (o.warn ?? console.warn)(`${path}: ignored ${skipped.length} key(s) that map to no layer (ignoreUnknownKeys): ${skipped.slice(0, 8).join(', ')}${skipped.length > 8 ? ', …' : ''}`);
    }
    const { unet, textEncoders } = this.models();
    const plan: { component: LoraComponent; model: TracedModel; layers: ModelLoraLayer[] }[] = [];
    const unetLayers = loraModelLayers(lora, 'unet', { fused: true });
    if (unetLayers.length > 0) plan.push({ component: 'unet', model: unet, layers: unetLayers });
    for (const component of ['text_encoder', 'text_encoder_2'] as const) {
      const layers = loraModelLayers(lora, component);
      if (layers.length === 0) continue;
      const target = textEncoders.find((t) => t.name === component);
      if (target === undefined) throw new LoraTargetError(`${path}: has ${component} layers, but this pipeline has no ${component} (an SDXL LoRA on an SD pipeline?)`);
      plan.push({ component, model: target.model, layers });
    }
    // Every check first, so a failure leaves every model as it was.
    for (const p of plan) p.model.checkLoraAdapter(name, p.layers);
    for (const p of plan) p.model.setLoraAdapter(name, p.layers, 0);
    this.adapters.set(name, plan.map((p) => p.component));
    this.active = [...this.active, name];
    this.weights.set(name, 1);
    return name;
  }

  /** diffusers' `set_adapters(names, weights)`: only these adapters run, each with its weight (default 1). */
  setAdapters(names: string | readonly string[], weights?: number | readonly number[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    const missing = list.filter((n) => !this.adapters.has(n));
    if (missing.length > 0) throw new LoraError(`Adapter name(s) ${missing.map((n) => `"${n}"`).join(', ')} not in the list of present adapters: ${[...this.adapters.keys()].join(', ') || '(none)'}`);
    const ws = weights === undefined ? list.map(() => 1) : typeof weights === 'number' ? list.map(() => weights) : [...weights];
    if (ws.length !== list.length) throw new InputError(`setAdapters: ${list.length} adapter names but ${ws.length} weights`);
    ws.forEach((w, i) => {
      if (!Number.isFinite(w)) throw new InputError(`setAdapters: the weight of "${list[i]}" must be finite, got ${w}`);
    });
    this.active = list;
    list.forEach((n, i) => this.weights.set(n, ws[i]!));
  }

  /** The active adapters (as diffusers, also while LoRA is disabled: disabling does not change the list). */
  getActiveAdapters(): string[] {
    return [...this.active];
  }

  /** diffusers' `get_list_adapters`: component → the adapters loaded into it. */
  getListAdapters(): Partial<Record<LoraComponent, string[]>> {
    const out: Partial<Record<LoraComponent, string[]>> = {};
    for (const [name, components] of this.adapters) for (const c of components) (out[c] ??= []).push(name);
    return out;
  }

  disable(): void {
    this.enabled = false;
  }

  enable(): void {
    this.enabled = true;
  }

  /** diffusers' `delete_adapters`: out of every model (each re-traces once) and the active list. Unknown names are an error. */
  delete(names: string | readonly string[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    const missing = list.filter((n) => !this.adapters.has(n));
    if (missing.length > 0) throw new LoraError(`No LoRA adapter(s) ${missing.map((n) => `"${n}"`).join(', ')} to delete`);
    const { unet, textEncoders } = this.models();
    for (const n of list) {
      for (const m of [unet, ...textEncoders.map((t) => t.model)]) m.deleteLoraAdapter(n);
      this.adapters.delete(n);
      this.weights.delete(n);
    }
    this.active = this.active.filter((n) => !list.includes(n));
  }

  /**
   * diffusers' `fuse_lora`: merge the adapters (default the active ones) into the weights of `components`
   * (default all), each with weight × `loraScale`. Their branches stop running there; unloading afterwards
   * keeps the merged weights (diffusers' recipe for a permanently LoRA'd model).
   */
  fuse(o: FuseLoraOptions = {}): void {
    const scale = o.loraScale ?? 1;
    if (!Number.isFinite(scale)) throw new InputError(`fuseLora: loraScale must be finite, got ${scale}`);
    const names = o.adapterNames === undefined ? this.active : [...o.adapterNames];
    const missing = names.filter((n) => !this.adapters.has(n));
    if (missing.length > 0) throw new LoraError(`fuseLora: no LoRA adapter(s) ${missing.map((n) => `"${n}"`).join(', ')}`);
    const factors = new Map(names.map((n) => [n, (this.weights.get(n) ?? 1) * scale]));
    for (const m of this.componentModels(o.components)) m.fuseLoraAdapters(factors);
  }

  /** diffusers' `unfuse_lora`: the original weights of `components` (default all) again. */
  unfuse(o: { components?: readonly LoraComponent[] } = {}): void {
    for (const m of this.componentModels(o.components)) m.unfuseLora();
  }

  private componentModels(components: readonly LoraComponent[] | undefined): TracedModel[] {
    const { unet, textEncoders } = this.models();
    const all: { name: LoraComponent; model: TracedModel }[] = [{ name: 'unet', model: unet }, ...textEncoders];
    const unknown = (components ?? []).filter((c) => !all.some((a) => a.name === c));
    if (unknown.length > 0) throw new InputError(`LoRA components ${unknown.join(', ')}: this pipeline has ${all.map((a) => a.name).join(', ')}`);
    return all.filter((a) => components === undefined || components.includes(a.name)).map((a) => a.model);
  }

  /** diffusers' `unload_lora_weights`: every adapter out; LoRA enabled again for the next load. */
  unload(): void {
    this.delete([...this.adapters.keys()]);
    this.enabled = true;
  }

  /**
   * Feed each model's adapters for a run with LoRA scale `scale` (`crossAttentionKwargs.scale`, default 1):
   * weight × scale for active adapters while enabled, 0 otherwise. No re-trace.
   */
  applyScale(scale = 1): void {
    if (!Number.isFinite(scale)) throw new InputError(`crossAttentionKwargs.scale must be finite, got ${scale}`);
    if (this.adapters.size === 0) return;
    const { unet, textEncoders } = this.models();
    for (const m of [unet, ...textEncoders.map((t) => t.model)]) {
      for (const n of m.loraAdapterNames) m.setLoraScale(n, this.enabled && this.active.includes(n) ? (this.weights.get(n) ?? 1) * scale : 0);
    }
  }
}
