/**
 * The graph switches diffusers has on its UNets (UNet2DConditionModel and UNetControlNetXSModel):
 * `enable_freeu` / `disable_freeu` and `fuse_qkv_projections` / `unfuse_qkv_projections`. Both change the
 * traced graph, so switching one drops the session (`retrace`; a forward already running finishes on the
 * old one, whose release onnxruntime holds until then) and the next forward traces and opens a new one;
 * a graph with both off is, byte for byte, the graph of a model that never had them.
 *
 * FreeU's four factors are graph inputs of the FreeU graph: changing them while FreeU is on needs no new
 * session (only turning it on or off does).
 */
import { OnnxDataType } from '../graph/onnx-proto.js';
import type { GraphBuilder, TraceOptions } from '../graph/builder.js';
import { InputError } from '../errors.js';
import type { FreeUInputs } from '../nn/freeu.js';
import type { BoundWeights } from '../weights/source.js';
import { LoraError } from './lora-file.js';
import { TracedModel, type ModelLoraLayer, type ModelRuntimeOptions } from './traced-model.js';

/** Projections a fused QKV graph computes from concatenated weights, where a LoRA branch has no place. */
const QKV_PROJECTION = /\.(to_q|to_k|to_v)$/;

/** diffusers' `enable_freeu(s1, s2, b1, b2)`: skip factors s (Fourier filter), backbone factors b, for up blocks 0 and 1. */
export interface FreeUSettings {
  s1: number;
  s2: number;
  b1: number;
  b2: number;
}

const FREEU_KEYS = ['s1', 's2', 'b1', 'b2'] as const;

export abstract class UNetWithSwitches extends TracedModel {
  private freeuSettings: Readonly<FreeUSettings> | null = null;
  private qkvFused: boolean;

  protected constructor(weights: BoundWeights, options: ModelRuntimeOptions) {
    super(weights, options);
    this.qkvFused = options.trace?.fuseQkv ?? false;
  }

  /** The FreeU factors set by `enableFreeu`, or null. */
  get freeu(): Readonly<FreeUSettings> | null {
    return this.freeuSettings;
  }

  /**
   * Whether FreeU runs: set, and (as diffusers tests `s1 and s2 and b1 and b2`) no factor 0 — a 0 turns
   * the whole of FreeU off, not just that factor.
   */
  get freeuActive(): boolean {
    const f = this.freeuSettings;
    return f !== null && FREEU_KEYS.every((k) => f[k] !== 0);
  }

  /**
   * diffusers' `enable_freeu(s1, s2, b1, b2)`. Turning FreeU on drops the session (the next forward opens
   * one on the FreeU graph); new factors while it is on need none.
   */
  enableFreeu(settings: FreeUSettings): void {
    for (const k of FREEU_KEYS) {
      const v: unknown = settings[k];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`enableFreeu: ${k} must be a finite number, got ${String(v)}`);
    }
    const before = this.freeuActive;
    this.freeuSettings = Object.freeze({ s1: settings.s1, s2: settings.s2, b1: settings.b1, b2: settings.b2 });
    if (this.freeuActive !== before) this.retrace();
  }

  /** diffusers' `disable_freeu`: back to the graph without FreeU. */
  disableFreeu(): void {
    const before = this.freeuActive;
    this.freeuSettings = null;
    if (before) this.retrace();
  }

  /** Whether attention projections run fused (`fuseQkvProjections`, or the trace option `fuseQkv`). */
  get qkvProjectionsFused(): boolean {
    return this.qkvFused;
  }

  /**
   * diffusers' `fuse_qkv_projections`: every attention (base and control) computes q, k, v (self-attention)
   * or k, v (cross-attention) with one matmul over its concatenated projection weights. onnxruntime folds
   * each concatenation into a new initializer when the session opens (a copy of those weights; the
   * separate ones are then unused and dropped).
   */
  fuseQkvProjections(): void {
    if (this.qkvFused) return;
    const onQkv = this.loraAdapterNames.filter((n) => this.loraModules(n).some((m) => QKV_PROJECTION.test(m)));
    if (onQkv.length > 0) {
      throw new LoraError(`fuseQkvProjections: LoRA adapter(s) ${onQkv.map((n) => `"${n}"`).join(', ')} act on to_q/to_k/to_v, which fused projections would skip; unload them (or fuse later)`);
    }
    this.qkvFused = true;
    this.retrace();
  }

  /** LoRA on to_q/to_k/to_v cannot join fused projections: refused rather than silently skipped. */
  protected override checkLora(name: string, layers: readonly ModelLoraLayer[]): void {
    if (this.qkvFused && layers.some((l) => QKV_PROJECTION.test(l.module))) {
      throw new LoraError(`LoRA adapter "${name}" acts on to_q/to_k/to_v, but this model's QKV projections are fused; unfuseQkvProjections() first`);
    }
  }

  /** diffusers' `unfuse_qkv_projections`: separate projections again. */
  unfuseQkvProjections(): void {
    if (!this.qkvFused) return;
    this.qkvFused = false;
    this.retrace();
  }

  /** The trace options, with `fuseQkv` as this model's switch says (absent when off, so such graphs never change). */
  override traceOptions(executionProviders?: readonly string[]): TraceOptions {
    const o = { ...super.traceOptions(executionProviders) };
    delete o.fuseQkv;
    return this.qkvFused ? { ...o, fuseQkv: true } : o;
  }

  /** FreeU's factors as scalar graph inputs (`freeu_s1`, …) when FreeU runs; null (no inputs) otherwise. */
  protected freeuInputs(op: GraphBuilder): FreeUInputs | null {
    if (!this.freeuActive) return null;
    const F = OnnxDataType.FLOAT;
    return { s1: op.input('freeu_s1', F, []), s2: op.input('freeu_s2', F, []), b1: op.input('freeu_b1', F, []), b2: op.input('freeu_b2', F, []) };
  }

  /** The feeds of `freeuInputs`. */
  protected freeuFeeds(): Record<string, number> {
    const f = this.freeuSettings;
    if (f === null || !this.freeuActive) return {};
    return { freeu_s1: f.s1, freeu_s2: f.s2, freeu_b1: f.b1, freeu_b2: f.b2 };
  }
}
