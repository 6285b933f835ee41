/**
 * CLIPTextModel and CLIPTextModelWithProjection (transformers' CLIP text side) on transformers'
 * folder layout: `config.json` + `model[.variant].safetensors` (or its shard index), keys exactly as
 * transformers saves them (`text_model.*`, and `text_projection.weight` for the projection model).
 */
import type { GraphBuilder } from '../graph/builder.js';
import { OnnxDataType } from '../graph/onnx-proto.js';
import { InputError } from '../errors.js';
import { CLIPTextNet } from '../nn/clip-text-net.js';
import { Tensor, expectFloat32, numel, type TensorLike } from '../tensor.js';
import { WeightSource, type BoundWeights, type WeightRef } from '../weights/source.js';
import { parseCLIPTextConfig, type CLIPTextConfig } from './clip-text-config.js';
import { resolveModelFolder, openWeights, loadConfigJson, type PretrainedOptions } from './loading.js';
import { clipSpec, modelFromSingleFile, type SingleFileComponentOptions } from './single-file/component.js';
import type { SingleFile } from './single-file/open.js';
import { TracedModel, assertFinite, type ModelRuntimeOptions } from './traced-model.js';

/**
 * A buffer (arange of positions) that checkpoints saved before transformers 4.31 carry. It is not a
 * parameter: transformers ignores it on load, and so does this port — that one key only.
 */
export const POSITION_IDS_KEY = 'text_model.embeddings.position_ids';

export interface CLIPTextPretrainedOptions extends PretrainedOptions, ModelRuntimeOptions {}

/** CLIPTextModelWithProjection's default encoder of a file: SDXL's second one when it has it. */
function secondEncoderFirst(file: SingleFile): 'text_encoder' | 'text_encoder_2' {
  return file.inspection.components.some((c) => c.name === 'text_encoder_2') ? 'text_encoder_2' : 'text_encoder';
}

export interface CLIPTextSingleFileOptions extends SingleFileComponentOptions, ModelRuntimeOptions {
  /**
   * Which text encoder of the file: SDXL files hold two (CLIP-L as `text_encoder`, OpenCLIP bigG as
   * `text_encoder_2`). Default: `text_encoder` for CLIPTextModel; for CLIPTextModelWithProjection
   * `text_encoder_2` when the file has one, else `text_encoder`. (diffusers picks by probing keys and,
   * with equal hidden sizes, fills SDXL's second encoder from the first.)
   */
  component?: 'text_encoder' | 'text_encoder_2';
}

export interface CLIPTextForwardOptions {
  /**
   * Padding mask [B, L] (1 = attend, 0 = padding), as transformers' tokenizers return it:
   * BigInt64Array, Int32Array, Uint8Array or Float32Array holding only 0 and 1.
   */
  attentionMask?: TensorLike;
  /** Also return the embeddings output and every layer's output (before the final LayerNorm). */
  outputHiddenStates?: boolean;
}

export interface CLIPTextModelOutput {
  lastHiddenState: Tensor<'float32'>;
  poolerOutput: Tensor<'float32'>;
  /** numHiddenLayers + 1 tensors [B, L, D], when `outputHiddenStates` was set. */
  hiddenStates?: Tensor<'float32'>[];
  /**
   * `hiddenStates` through the final LayerNorm (the last equals lastHiddenState), when
   * `outputHiddenStates` was set: SD pipelines' `clip_skip` takes `normedHiddenStates[-(clipSkip + 1)]`.
   */
  normedHiddenStates?: Tensor<'float32'>[];
}

export interface CLIPTextModelWithProjectionOutput {
  textEmbeds: Tensor<'float32'>;
  lastHiddenState: Tensor<'float32'>;
  /** numHiddenLayers + 1 tensors [B, L, D], when `outputHiddenStates` was set. */
  hiddenStates?: Tensor<'float32'>[];
}

/** The source without the position_ids buffer, if it has one. */
export function dropPositionIds(source: WeightSource): WeightSource {
  if (source.get(POSITION_IDS_KEY) === undefined) return source;
  const kept = new Map<string, WeightRef>();
  for (const k of source.keys()) if (k !== POSITION_IDS_KEY) kept.set(k, source.get(k)!);
  return new WeightSource(kept, source.origin);
}

async function loadPretrained(dir: string, options: CLIPTextPretrainedOptions): Promise<{ config: CLIPTextConfig; source: WeightSource }> {
  const folder = await resolveModelFolder(dir, options);
  const config = parseCLIPTextConfig(await loadConfigJson(folder), `${folder}/config.json`, options.warn ?? console.warn);
  const source = await openWeights(folder, 'model', options.variant);
  return { config, source };
}

/** The module tree for `config`, bound strictly to `source` (minus the position_ids buffer). */
function bindNet(config: CLIPTextConfig, source: WeightSource, withProjection: boolean): { net: CLIPTextNet; weights: BoundWeights } {
  const net = new CLIPTextNet(config, withProjection, source.origin);
  return { net, weights: dropPositionIds(source).bindStrict(net.parameters()) };
}

/** The graph input of textual inversion's token-embedding rows (ids vocabSize …), present once rows were set. */
export const ADDED_TOKEN_EMBEDDINGS = 'added_token_embeddings';

/** Shared graph and input handling of both CLIP text classes. */
abstract class CLIPTextBase extends TracedModel {
  /** Token-embedding rows past the checkpoint's table, [N, hiddenSize] (textual inversion); null: none. */
  private addedRows: Tensor<'float32'> | null = null;
  /**
   * Whether the graph reads added rows: from the first rows set on, for this model's lifetime. The rows are
   * an input, so loading and unloading more of them needs no new session; a model that never had any keeps
   * the plain graph.
   */
  private readsAddedRows = false;

  protected constructor(
    readonly config: CLIPTextConfig,
    readonly net: CLIPTextNet,
    /** The checkpoint as loaded (the position_ids buffer included, if it had one). */
    readonly source: WeightSource,
    weights: BoundWeights,
    options: ModelRuntimeOptions,
  ) {
    super(weights, options);
  }

  /** Rows of the token embedding table: the checkpoint's vocabSize plus the added ones (transformers' `get_input_embeddings().num_embeddings`). */
  get numTokenEmbeddings(): number {
    return this.config.vocabSize + (this.addedRows?.dims[0] ?? 0);
  }

  /** The token-embedding rows added past the checkpoint's table ([N, hiddenSize], ids vocabSize …), or null. */
  get addedTokenEmbeddings(): Tensor<'float32'> | null {
    return this.addedRows;
  }

  /**
   * Grow the token embedding table by `rows` [N, hiddenSize] (float32, copied): ids vocabSize … vocabSize + N − 1
   * read them (textual inversion). The checkpoint's table is never copied: the graph looks rows up in it and in
   * these, which reach onnxruntime as an input. `null` (or N = 0) removes them. The first rows change the graph
   * (a new input), so the next forward opens a new session; later changes do not.
   */
  setAddedTokenEmbeddings(rows: TensorLike | null): void {
    let copy: Tensor<'float32'> | null = null;
    if (rows !== null) {
      const t = expectFloat32('added token embeddings', rows, [null, this.config.hiddenSize]);
      assertFinite('added token embeddings', t);
      if (t.dims[0]! > 0) copy = new Tensor('float32', Float32Array.from(t.data), t.dims);
    }
    this.addedRows = copy;
    if (copy !== null && !this.readsAddedRows) {
      this.readsAddedRows = true;
      this.retrace();
    }
  }

  protected trace(op: GraphBuilder): void {
    const c = this.config;
    const F = OnnxDataType.FLOAT;
    const ids = op.input('input_ids', OnnxDataType.INT64, ['batch', 'sequence']);
    const mask = op.input('attention_mask', F, ['batch', 'sequence']);
    const added = this.readsAddedRows ? op.input(ADDED_TOKEN_EMBEDDINGS, F, ['added_tokens', c.hiddenSize]) : null;
    const out = this.net.text_model.build(op, ids, mask, added);
    op.output(out.lastHiddenState, 'last_hidden_state', F, ['batch', 'sequence', c.hiddenSize]);
    if (this.net.text_projection) {
      op.output(this.net.text_projection.build(op, out.pooled), 'text_embeds', F, ['batch', c.projectionDim]);
    } else {
      op.output(out.pooled, 'pooler_output', F, ['batch', c.hiddenSize]);
    }
    out.hiddenStates.forEach((h, i) => op.output(h, `hidden_states.${i}`, F, ['batch', 'sequence', c.hiddenSize]));
    // What SD pipelines use for clip_skip: an earlier layer's output through the final LayerNorm.
    out.hiddenStates.slice(0, -1).forEach((h, i) =>
      op.output(this.net.text_model.final_layer_norm.build(op, h), `normed_hidden_states.${i}`, F, ['batch', 'sequence', c.hiddenSize]),
    );
  }

  /** Validate inputs, run, and collect the hidden states if asked. */
  protected async encode(
    inputIds: TensorLike,
    options: CLIPTextForwardOptions,
  ): Promise<{ out: Record<string, Tensor>; hiddenStates?: Tensor<'float32'>[]; normedHiddenStates?: Tensor<'float32'>[] }> {
    const ids = checkInputIds(inputIds, this.config, this.numTokenEmbeddings);
    const mask = options.attentionMask === undefined ? onesMask(ids.dims) : checkAttentionMask(options.attentionMask, ids.dims);
    const feeds: Record<string, Tensor> = { input_ids: ids, attention_mask: mask };
    // Without added rows the graph still needs one to gather from; no id reaches it (checked above).
    if (this.readsAddedRows) feeds[ADDED_TOKEN_EMBEDDINGS] = this.addedRows ?? Tensor.zeros([1, this.config.hiddenSize]);
    const out = await this.run(feeds);
    if (!options.outputHiddenStates) return { out };
    const n = this.config.numHiddenLayers;
    const hiddenStates = Array.from({ length: n + 1 }, (_, i) => out[`hidden_states.${i}`] as Tensor<'float32'>);
    const normed = Array.from({ length: n }, (_, i) => out[`normed_hidden_states.${i}`] as Tensor<'float32'>);
    return { out, hiddenStates, normedHiddenStates: [...normed, out['last_hidden_state'] as Tensor<'float32'>] };
  }
}

export class CLIPTextModel extends CLIPTextBase {
  protected readonly graphName = 'CLIPTextModel';

  static async fromPretrained(dir: string, options: CLIPTextPretrainedOptions = {}): Promise<CLIPTextModel> {
    const { config, source } = await loadPretrained(dir, options);
    return CLIPTextModel.fromSource(config, source, options);
  }

  /** The text encoder of an original single file (SD 1.x CLIP, SD 2.x OpenCLIP, or SDXL's first encoder by default). */
  static async fromSingleFile(path: string, options: CLIPTextSingleFileOptions = {}): Promise<CLIPTextModel> {
    const name = options.component ?? 'text_encoder';
    return modelFromSingleFile(path, name, clipSpec(false), options, (config, source) => CLIPTextModel.fromSource(config, source, options));
  }

  static fromSource(config: CLIPTextConfig, source: WeightSource, options: ModelRuntimeOptions = {}): CLIPTextModel {
    const { net, weights } = bindNet(config, source, false);
    return new CLIPTextModel(config, net, source, weights, options);
  }

  /** inputIds int64 [B, L] (L ≤ max_position_embeddings) → last_hidden_state [B, L, D], pooler_output [B, D]. */
  async forward(inputIds: TensorLike, options: CLIPTextForwardOptions = {}): Promise<CLIPTextModelOutput> {
    const { out, hiddenStates, normedHiddenStates } = await this.encode(inputIds, options);
    return {
      lastHiddenState: out['last_hidden_state'] as Tensor<'float32'>,
      poolerOutput: out['pooler_output'] as Tensor<'float32'>,
      ...(hiddenStates ? { hiddenStates, normedHiddenStates } : {}),
    };
  }
}

export class CLIPTextModelWithProjection extends CLIPTextBase {
  protected readonly graphName = 'CLIPTextModelWithProjection';

  static async fromPretrained(dir: string, options: CLIPTextPretrainedOptions = {}): Promise<CLIPTextModelWithProjection> {
    const { config, source } = await loadPretrained(dir, options);
    return CLIPTextModelWithProjection.fromSource(config, source, options);
  }

  /** SDXL's second text encoder (OpenCLIP bigG with its projection) of an original single file, by default. */
  static async fromSingleFile(path: string, options: CLIPTextSingleFileOptions = {}): Promise<CLIPTextModelWithProjection> {
    const name = options.component ?? secondEncoderFirst;
    return modelFromSingleFile(path, name, clipSpec(true), options, (config, source) => CLIPTextModelWithProjection.fromSource(config, source, options));
  }

  static fromSource(config: CLIPTextConfig, source: WeightSource, options: ModelRuntimeOptions = {}): CLIPTextModelWithProjection {
    const { net, weights } = bindNet(config, source, true);
    return new CLIPTextModelWithProjection(config, net, source, weights, options);
  }

  /** inputIds int64 [B, L] → text_embeds [B, projection_dim], last_hidden_state [B, L, D]. */
  async forward(inputIds: TensorLike, options: CLIPTextForwardOptions = {}): Promise<CLIPTextModelWithProjectionOutput> {
    const { out, hiddenStates } = await this.encode(inputIds, options);
    return {
      textEmbeds: out['text_embeds'] as Tensor<'float32'>,
      lastHiddenState: out['last_hidden_state'] as Tensor<'float32'>,
      ...(hiddenStates ? { hiddenStates } : {}),
    };
  }
}

/** int64 [B, L] with 1 ≤ L ≤ max_position_embeddings and every id below `rows` (the table with any added rows). */
function checkInputIds(t: TensorLike, c: CLIPTextConfig, rows: number): Tensor<'int64'> {
  if (!(t.data instanceof BigInt64Array)) {
    throw new InputError(`inputIds must hold a BigInt64Array (int64 token ids), got ${t.data.constructor.name}`);
  }
  const dims = t.dims;
  if (dims.length !== 2 || dims[0]! < 1 || dims[1]! < 1) {
    throw new InputError(`inputIds must have shape [batch, sequence] with both ≥ 1, got [${dims.join(', ')}]`);
  }
  if (dims[1]! > c.maxPositionEmbeddings) {
    throw new InputError(`inputIds has sequence length ${dims[1]}, more than max_position_embeddings ${c.maxPositionEmbeddings}`);
  }
  if (t.data.length !== numel(dims)) {
    throw new InputError(`inputIds holds ${t.data.length} values but dims [${dims.join(', ')}] need ${numel(dims)}`);
  }
  const vocab = BigInt(rows);
  for (let i = 0; i < t.data.length; i++) {
    const id = t.data[i]!;
    if (id < 0n || id >= vocab) {
      throw new InputError(`inputIds[${Math.floor(i / dims[1]!)}][${i % dims[1]!}] = ${id} is outside the vocabulary [0, ${rows})`);
    }
  }
  return new Tensor('int64', t.data, dims);
}

function onesMask(dims: readonly number[]): Tensor<'float32'> {
  return new Tensor('float32', new Float32Array(numel(dims)).fill(1), dims);
}

/** A 0/1 padding mask of the ids' shape, as float32. */
function checkAttentionMask(t: TensorLike, idsDims: readonly number[]): Tensor<'float32'> {
  const d = t.data;
  if (d instanceof Float64Array || d instanceof Uint16Array) {
    throw new InputError(`attentionMask must hold a BigInt64Array, Int32Array, Uint8Array or Float32Array of 0/1, got ${d.constructor.name}`);
  }
  if (t.dims.length !== 2 || t.dims[0] !== idsDims[0] || t.dims[1] !== idsDims[1] || d.length !== numel(idsDims)) {
    throw new InputError(`attentionMask must have the shape of inputIds [${idsDims.join(', ')}], got [${t.dims.join(', ')}]`);
  }
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const v = Number(d[i]!);
    if (v !== 0 && v !== 1) throw new InputError(`attentionMask must hold only 0 and 1, got ${v} at flat index ${i}`);
    out[i] = v;
  }
  return new Tensor('float32', out, idsDims);
}
