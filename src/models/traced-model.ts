/**
 * Shared plumbing of every model: its bound weights, the graph traced from its module tree (whose
 * `build` emits the nodes), and a lazily created onnxruntime session (through the runtime seam)
 * that the subclass's `forward(args)` runs.
 */
import { GraphBuilder, traceDefaultsFor, type TraceOptions } from '../graph/builder.js';
import type { ModelProto } from '../graph/onnx-proto.js';
import { InputError } from '../errors.js';
import { ModelSession, type Feed, type RuntimeOptions } from '../runtime/session.js';
import { Tensor, type TensorLike } from '../tensor.js';
import type { BoundWeights } from '../weights/source.js';

export interface ModelRuntimeOptions {
  /** onnxruntime session settings (execution providers, threads, optimisation level). */
  runtime?: RuntimeOptions;
  /** Graph choices (attention implementation). */
  trace?: Partial<TraceOptions>;
}

export abstract class TracedModel {
  private session: Promise<ModelSession> | null = null;

  protected constructor(
    readonly weights: BoundWeights,
    protected readonly runtimeOptions: ModelRuntimeOptions,
  ) {}

  /** The runtime and trace options this model was created with (a fused model inherits its UNet's). */
  get runtimeSettings(): ModelRuntimeOptions {
    return this.runtimeOptions;
  }

  /** Name of the traced graph (errors and profiles use it). */
  protected abstract readonly graphName: string;

  /** Declare inputs, build the module tree's nodes and declare outputs. */
  protected abstract trace(op: GraphBuilder): void;

  /** The graph choices for `executionProviders` (default: this model's): the caller's, over that provider's defaults. */
  traceOptions(executionProviders: readonly string[] = this.runtimeOptions.runtime?.executionProviders ?? ['cpu']): TraceOptions {
    return { ...traceDefaultsFor(executionProviders), ...this.runtimeOptions.trace };
  }

  /** The ONNX model this class runs, built from the module tree (no weights read). */
  toOnnx(options: TraceOptions = this.traceOptions()): ModelProto {
    const op = GraphBuilder.create(this.weights, options);
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
    return (await this.ensureSession()).run(feeds);
  }

  private ensureSession(): Promise<ModelSession> {
    if (this.session === null) {
      const [own, cpu] = [this.traceOptions(), this.traceOptions(['cpu'])];
      const sameOnCpu = own.attention === cpu.attention && own.linear === cpu.linear;
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
