/**
 * Shared plumbing of every model: its bound weights, the graph traced from its module tree (whose
 * `build` emits the nodes), and a lazily created onnxruntime session (through the runtime seam)
 * that the subclass's `forward(args)` runs.
 */
import { GraphBuilder, loraScaleInput, traceDefaultsFor, type AttentionUpcast, type LoraBranch, type LoraMerge, type LoraTrace, type TraceOptions } from '../graph/builder.js';
import type { ModelProto } from '../graph/onnx-proto.js';
import { InputError } from '../errors.js';
import { ModelSession, type Feed, type RuntimeOptions } from '../runtime/session.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { weightShape, type BoundWeights, type WeightRef } from '../weights/source.js';
import { checkComputeDtype, type ComputeDtype } from './compute-dtype.js';
import { LoraTargetError, loraFits } from './lora-file.js';
import { checkFiniteOutputs } from './non-finite.js';

export interface ModelRuntimeOptions {
  /** onnxruntime session settings (execution providers, threads, optimisation level). */
  runtime?: RuntimeOptions;
  /** Graph choices (attention implementation). */
  trace?: Partial<TraceOptions>;
  /**
   * Compute dtype (diffusers' `torch_dtype`), default 'float32'. 'float16' needs a GPU provider
   * ('webgpu', 'cuda'; a ConfigError on the CPU): weights are cast once when the session opens (none
   * for float16 checkpoints, e.g. `variant: 'fp16'`), inputs and outputs stay float32, and an output
   * holding NaN/Infinity (a float16 overflow) is a NonFiniteOutputError. If the provider cannot start,
   * the CPU fallback runs the float32 graph.
   */
  dtype?: ComputeDtype;
}

/** One LoRA layer on a model: the module path in this model's tree, the matrices, alpha / rank. */
export interface ModelLoraLayer {
  readonly module: string;
  readonly down: WeightRef;
  readonly up: WeightRef;
  readonly scaling: number;
}

export abstract class TracedModel {
  private session: Promise<ModelSession> | null = null;
  /** LoRA adapters in load order (the order of their scale inputs), with the scale each is fed. */
  private readonly loras = new Map<string, { layers: readonly ModelLoraLayer[]; scale: number }>();
  /** Adapters merged into the weights (fuseLora): their branches no longer run. */
  private readonly fusedAdapters = new Set<string>();
  /** LoRA merged into weights, by weight key; kept when the adapter is deleted, as diffusers keeps fused weights. */
  private readonly merges = new Map<string, LoraMerge[]>();

  /** The compute dtype this model was created with (checked against its execution provider). */
  readonly dtype: ComputeDtype;

  protected constructor(
    readonly weights: BoundWeights,
    protected readonly runtimeOptions: ModelRuntimeOptions,
  ) {
    this.dtype = checkComputeDtype(new.target.name, runtimeOptions.dtype, runtimeOptions.runtime?.executionProviders ?? ['cpu']);
  }

  /** The runtime and trace options this model was created with (a fused model inherits its UNet's). */
  get runtimeSettings(): ModelRuntimeOptions {
    return this.runtimeOptions;
  }

  /** Name of the traced graph (errors and profiles use it). */
  protected abstract readonly graphName: string;

  /** Declare inputs, build the module tree's nodes and declare outputs. */
  protected abstract trace(op: GraphBuilder): void;

  /**
   * The graph choices for `executionProviders` (default: this model's): the caller's, over that provider's
   * defaults and this model's dtype (float32 on the CPU, which a float16 model only reaches by falling back).
   */
  traceOptions(executionProviders: readonly string[] = this.runtimeOptions.runtime?.executionProviders ?? ['cpu']): TraceOptions {
    const upcast = this.attentionUpcast();
    const half: Partial<TraceOptions> =
      this.dtype === 'float16' && executionProviders[0] !== 'cpu' ? { dtype: 'float16', ...(upcast ? { attentionUpcast: upcast } : {}) } : {};
    return { ...traceDefaultsFor(executionProviders), ...half, ...this.runtimeOptions.trace };
  }

  /** Where diffusers computes this model's attention scores or softmax in float32 under float16 (its config's upcast flags). */
  protected attentionUpcast(): AttentionUpcast | undefined {
    return undefined;
  }

  /** The ONNX model this class runs, built from the module tree (no weights read). */
  toOnnx(options: TraceOptions = this.traceOptions()): ModelProto {
    const op = GraphBuilder.create(this.weights, options, this.loraTrace());
    this.trace(op);
    return op.toModel(this.graphName);
  }

  /** Create the onnxruntime session now instead of on the first forward. */
  async prepare(): Promise<void> {
    await this.ensureSession();
  }

  /** Where this model runs: the first execution provider that started ('cpu' after a fallback). Opens the session. */
  async executionProvider(): Promise<string> {
    return (await this.ensureSession()).executionProvider;
  }

  protected async run(feeds: Record<string, Feed>): Promise<Record<string, Tensor>> {
    const scales: Record<string, Feed> = {};
    [...this.loras.values()].forEach((a, i) => (scales[loraScaleInput(i)] = a.scale));
    const out = await (await this.ensureSession()).run({ ...feeds, ...scales });
    if (this.dtype === 'float16') checkFiniteOutputs(this.graphName, out);
    return out;
  }

  // ---- LoRA ------------------------------------------------------------------------------

  /** The loaded LoRA adapters, in load order. */
  get loraAdapterNames(): string[] {
    return [...this.loras.keys()];
  }

  /** The modules adapter `name` runs branches on (empty if it is not loaded, or fused into the weights). */
  loraModules(name: string): string[] {
    if (this.fusedAdapters.has(name)) return [];
    return (this.loras.get(name)?.layers ?? []).map((l) => l.module);
  }

  /**
   * Add (or replace) LoRA adapter `name`: its branches join the graph, so the session is dropped and the
   * next forward traces once. Every layer must sit on a Linear or Conv2d of this model whose weight its
   * matrices fit (LoraTargetError otherwise, and nothing changes). Its scale starts at `scale`.
   */
  setLoraAdapter(name: string, layers: readonly ModelLoraLayer[], scale = 1): void {
    this.checkLoraAdapter(name, layers);
    if (!Number.isFinite(scale)) throw new InputError(`LoRA scale of "${name}" must be finite, got ${scale}`);
    this.loras.delete(name);
    this.loras.set(name, { layers, scale });
    this.retrace();
  }

  /** The checks of `setLoraAdapter`, changing nothing (a pipeline checks every model before loading into any). */
  checkLoraAdapter(name: string, layers: readonly ModelLoraLayer[]): void {
    for (const l of layers) {
      const key = `${l.module}.weight`;
      if (!this.weights.has(key)) throw new LoraTargetError(`${this.graphName}: LoRA adapter "${name}": no layer ${l.module}`);
      const w = weightShape(this.weights.get(key)), d = l.down.info.shape, u = l.up.info.shape;
      if (!loraFits(w, d, u)) throw new LoraTargetError(`${this.graphName}: LoRA adapter "${name}": ${l.module}: down [${d.join(', ')}] / up [${u.join(', ')}] do not fit its weight [${w.join(', ')}]`);
    }
    this.checkLora(name, layers);
  }

  /** A subclass's veto on LoRA layers it would not apply (fused QKV projections); throws a LoraError. */
  protected checkLora(_name: string, _layers: readonly ModelLoraLayer[]): void {}

  /** Remove LoRA adapter `name` (no-op if absent); the next forward traces without it. Weights it was fused into stay fused. */
  deleteLoraAdapter(name: string): void {
    this.fusedAdapters.delete(name);
    if (this.loras.delete(name)) this.retrace();
  }

  /**
   * diffusers' `fuse_lora` on this model: merge each named adapter into the weights with `factors[name]`
   * (adapter weight × LoRA scale; its alpha / rank is added here). Its branches stop running; the merged
   * weights are folded by onnxruntime when the session opens. Adapters not loaded here are skipped.
   */
  fuseLoraAdapters(factors: ReadonlyMap<string, number>): void {
    let changed = false;
    for (const [name, f] of factors) {
      const a = this.loras.get(name);
      if (a === undefined || this.fusedAdapters.has(name)) continue;
      if (!Number.isFinite(f)) throw new InputError(`fuseLora: the factor of "${name}" must be finite, got ${f}`);
      for (const l of a.layers) {
        const key = `${l.module}.weight`;
        this.merges.set(key, [...(this.merges.get(key) ?? []), { down: l.down, up: l.up, factor: l.scaling * f }]);
      }
      this.fusedAdapters.add(name);
      changed = true;
    }
    if (changed) this.retrace();
  }

  /** diffusers' `unfuse_lora`: the original weights again; adapters still loaded run as branches again. */
  unfuseLora(): void {
    if (this.merges.size === 0 && this.fusedAdapters.size === 0) return;
    this.merges.clear();
    this.fusedAdapters.clear();
    this.retrace();
  }

  /** Whether LoRA is merged into this model's weights. */
  get loraFused(): boolean {
    return this.merges.size > 0;
  }

  /** The factor adapter `name`'s branches are fed (set_adapters weight × LoRA scale; 0 disables it): no new trace. */
  setLoraScale(name: string, scale: number): void {
    const a = this.loras.get(name);
    if (a === undefined) throw new LoraTargetError(`${this.graphName}: no LoRA adapter "${name}"`);
    if (!Number.isFinite(scale)) throw new InputError(`LoRA scale of "${name}" must be finite, got ${scale}`);
    a.scale = scale;
  }

  private loraTrace(): LoraTrace | null {
    if (this.loras.size === 0 && this.merges.size === 0) return null;
    const branches = new Map<string, LoraBranch[]>();
    [...this.loras].forEach(([name, a], adapter) => {
      if (this.fusedAdapters.has(name)) return; // merged into the weights instead
      for (const l of a.layers) {
        const list = branches.get(l.module) ?? [];
        list.push({ adapter, down: l.down, up: l.up, scaling: l.scaling });
        branches.set(l.module, list);
      }
    });
    return { adapters: this.loras.size, branches, merges: this.merges };
  }

  private ensureSession(): Promise<ModelSession> {
    if (this.session === null) {
      const [own, cpu] = [this.traceOptions(), this.traceOptions(['cpu'])];
      const sameOnCpu = own.attention === cpu.attention && own.linear === cpu.linear && own.dtype === cpu.dtype;
      const pending = ModelSession.create(this.toOnnx(own), this.runtimeOptions.runtime ?? {}, sameOnCpu ? {} : { cpuModel: () => this.toOnnx(cpu) });
      this.session = pending;
      pending.catch(() => {
        if (this.session === pending) this.session = null;
      });
    }
    return this.session;
  }

  /**
   * The traced graph has changed (a new input, as a text encoder's textual-inversion rows): forget the
   * session synchronously, so the next forward opens one on the new trace, and free the old one.
   */
  protected retrace(): void {
    void this.release().catch(() => {
      // The old session failed to open or to close: either way the next forward starts afresh.
    });
  }

  /** Free the onnxruntime session; the next forward creates a new one. */
  async release(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await (await s).release();
  }
}

/** A timestep given as a number, a 0-d/1-element tensor or one per batch item → float32 [batch]. */
export function timestepFeed(t: number | TensorLike, batch: number): Tensor<'float32'> {
  if (typeof t === 'number') {
    if (!Number.isFinite(t)) throw new InputError(`timestep must be finite, got ${t}`);
    return new Tensor('float32', new Float32Array(batch).fill(t), [batch]);
  }
  const values = Array.from(t.data as ArrayLike<number | bigint>, Number);
  if (values.length === 1) return timestepFeed(values[0]!, batch);
  if (values.length !== batch || t.dims.length !== 1) {
    throw new InputError(`timestep must be a number or have shape [${batch}], got [${t.dims.join(', ')}]`);
  }
  return new Tensor('float32', Float32Array.from(values), [batch]);
}

/** Refuse NaN/Infinity in an input, naming it. */
export function assertFinite(name: string, t: TensorLike): void {
  const d = t.data;
  if (!(d instanceof Float32Array)) return;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i]!)) throw new InputError(`${name} contains ${d[i]} at flat index ${i}`);
  }
}
