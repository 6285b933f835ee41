/**
 * Textual inversion (diffusers' TextualInversionLoaderMixin) for both ControlNet-XS pipelines: learned
 * token embeddings added to a tokenizer and its text encoder, and the prompt rewrite that spells out
 * multi-vector tokens.
 *
 * Loading, as diffusers 0.33.1 does it:
 * 1. Each source is read into a state dict: a diffusers `learned_embeds.safetensors` / `.bin` (one key: the
 *    token), an A1111 `.pt` (`string_to_param['*']` under the token in `name`; read by the non-executing
 *    pickle reader), a bare tensor, or tensors passed in. `token` overrides the file's token.
 *    Pitfall kept from diffusers: an A1111 embedding saved as safetensors, `{'emb_params': [n, dim]}`, is a
 *    one-key dict, so without `token` it is registered under the literal token `emb_params` (a warning says so).
 * 2. An `[n, dim]` embedding with n > 1 becomes tokens `T`, `T_1`, …, `T_{n−1}`, one row each.
 * 3. Every check runs before anything changes — a token already in the vocabulary (diffusers' message),
 *    `T_1` already there, duplicates, an embedding whose width is not the text encoder's — each a named
 *    error; then the tokenizer gets the tokens (ids after its vocabulary) and the text encoder the rows
 *    (`CLIPTextModel.setAddedTokenEmbeddings`: the checkpoint's table is never copied).
 * 4. SDXL: `{clip_l, clip_g}` files go to both encoders in one call (clip_l → text_encoder/tokenizer, clip_g →
 *    text_encoder_2/tokenizer_2, one token), or one half per call with `textEncoder`/`tokenizer`, as diffusers
 *    documents.
 *
 * At encode time `maybeConvertPrompt` replaces every added token T that has vectors T_1 … in the prompt by
 * "T T_1 … T_{n−1}" with a plain substring replace, as diffusers does — so a user's literal `T_1` becomes
 * `T T_1 T_2_1` (the second pitfall, kept because the token ids must match diffusers').
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ControlNetXSError, MissingWeightsError } from '../errors.js';
import { HubEntryNotFoundError, HubNotCachedError, hubDownload } from '../hub/index.js';
import { adapterHubOptions, requireRepoId, type AdapterHubSettings } from './adapter-source.js';
import type { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text-model.js';
import { Tensor, numel, type TensorLike } from '../tensor.js';
import type { CLIPTokenizer } from '../tokenizer/index.js';
import { PyDict, TorchTensor, describe, type PyValue } from '../weights/pickle.js';
import { bfloat16ToFloat32, halfToFloat32, loadSafetensorsSync, type SafetensorsDType } from '../weights/safetensors.js';
import { loadTorchObjectSync } from '../weights/torch-archive.js';
import { readWeightBytes } from '../weights/view.js';

/** Any textual-inversion failure; nothing was loaded or unloaded when one is thrown. */
export class TextualInversionError extends ControlNetXSError {}

/** The file or tensors are not a textual-inversion embedding diffusers can read (or lack the token they need). */
export class TextualInversionFormatError extends TextualInversionError {}

/** A token clash: already in the vocabulary, given twice, or (unloading) not loaded. */
export class TextualInversionTokenError extends TextualInversionError {}

/** An embedding whose width is not the text encoder's hidden size. */
export class TextualInversionDimensionError extends TextualInversionError {}

/** One tokenizer and the text encoder its ids feed, under diffusers' component name. */
export interface TextEncoderPair {
  readonly name: 'text_encoder' | 'text_encoder_2';
  readonly tokenizer: CLIPTokenizer;
  readonly textEncoder: CLIPTextModel | CLIPTextModelWithProjection;
}

/** Embeddings given directly: a tensor ([dim] or [n, dim]; needs `token`), or a state dict of them (diffusers' `Dict[str, Tensor]`). */
export type TextualInversionTensors = TensorLike | Readonly<Record<string, TensorLike>>;

/** A file, a folder holding `learned_embeds.safetensors` / `.bin` (or `weightName`), a Hub repo id, or tensors. */
export type TextualInversionSource = string | TextualInversionTensors;

/** With the Hub settings every adapter loader takes (`AdapterHubSettings`; `warn` also hears the `emb_params` notice). */
export interface LoadTextualInversionOptions extends AdapterHubSettings {
  /** The token(s) to register, one per source; overrides a file's own token. Needed for bare tensors and `{clip_l, clip_g}` files. */
  token?: string | readonly string[];
  /** File name inside a folder or Hub repo (default `learned_embeds.safetensors`, then `learned_embeds.bin`). */
  weightName?: string;
  /** Folder inside a folder or Hub repo. */
  subfolder?: string;
  /** The text encoder to load into (default the pipeline's first; with `tokenizer`, diffusers' SDXL recipe). */
  textEncoder?: CLIPTextModel | CLIPTextModelWithProjection;
  /** The tokenizer to add the tokens to (default the one paired with `textEncoder`, else the pipeline's first). */
  tokenizer?: CLIPTokenizer;
}

export interface UnloadTextualInversionOptions {
  /** Only this tokenizer / text encoder (default: every pair of the pipeline that holds the tokens). */
  textEncoder?: CLIPTextModel | CLIPTextModelWithProjection;
  tokenizer?: CLIPTokenizer;
}

/** What one load added to one text encoder: its tokens in id order. */
export interface LoadedTextualInversion {
  readonly textEncoder: TextEncoderPair['name'] | 'custom';
  readonly tokens: readonly string[];
  readonly ids: readonly number[];
}

// ---- state dicts --------------------------------------------------------------------------

/** A tensor of a state dict, read into JS only when it is the embedding used (a file may hold more). */
interface LazyTensor {
  readonly kind: 'tensor';
  readonly shape: readonly number[];
  readonly dtype: string;
  read(): Float32Array;
}

type StateValue = LazyTensor | string | number | StateDict | null;
type StateDict = ReadonlyMap<string, StateValue>;
/** What a source holds: a dict (file or tensors passed in), or a bare tensor. */
type StateSource = { readonly where: string; readonly value: StateDict | LazyTensor };

/** Float dtypes as safetensors / torch files name them, and as tensors passed in do. */
const FLOAT_DTYPES = new Set(['F32', 'F64', 'F16', 'BF16', 'float32', 'float64', 'float16', 'bfloat16']);

function floatsOf(bytes: Uint8Array, dtype: SafetensorsDType, n: number): Float32Array {
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (dtype === 'F32') return new Float32Array(buf, 0, n);
  if (dtype === 'F64') return Float32Array.from(new Float64Array(buf, 0, n));
  if (dtype === 'F16') return halfToFloat32(new Uint16Array(buf, 0, n));
  return bfloat16ToFloat32(new Uint16Array(buf, 0, n));
}

function readSafetensorsSource(path: string): StateSource {
  const file = loadSafetensorsSync(path);
  const dict = new Map<string, StateValue>();
  for (const name of file.keys()) {
    const info = file.info(name);
    dict.set(name, { kind: 'tensor', shape: info.shape, dtype: info.dtype, read: () => floatsOf(file.readBytes(name), info.dtype, numel(info.shape)) });
  }
  return { where: path, value: dict };
}

function readTorchSource(path: string): StateSource {
  const obj = loadTorchObjectSync(path);
  const convert = (v: PyValue, key: string): StateValue => {
    if (v instanceof TorchTensor) {
      const dtype = v.storage.dtype;
      return { kind: 'tensor', shape: v.shape, dtype, read: () => floatsOf(readWeightBytes(obj.ref(v, key || 'tensor')), dtype, numel(v.shape)) };
    }
    if (v instanceof PyDict) {
      const dict = new Map<string, StateValue>();
      for (const [k, x] of v.entries) if (typeof k === 'string') dict.set(k, convert(x, key ? `${key}.${k}` : k));
      return dict;
    }
    if (typeof v === 'string' || typeof v === 'number') return v;
    return null; // lists, tuples, big ints, …: nothing diffusers reads from a textual inversion file
  };
  const value = convert(obj.value, '');
  if (value instanceof Map || isLazyTensor(value)) return { where: path, value };
  throw new TextualInversionFormatError(`${path}: holds ${describe(obj.value)}, not a tensor or a dict of embeddings`);
}

/** The first bytes say whether a file is a torch pickle / zip archive or (otherwise) safetensors. */
function isTorchFile(path: string): boolean {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  try {
    const n = readSync(fd, head, 0, 4, 0);
    return (n >= 4 && head.readUInt32LE(0) === 0x04034b50) || (n >= 1 && head[0] === 0x80);
  } finally {
    closeSync(fd);
  }
}

function readFileSource(path: string): StateSource {
  return isTorchFile(path) ? readTorchSource(path) : readSafetensorsSource(path);
}

/** Tensors passed in, as a state source; float32/float64 arrays (float16/bfloat16 as Tensors of that dtype). */
function tensorsSource(t: TextualInversionTensors, index: number): StateSource {
  const where = `tensors passed in (source ${index})`;
  const lazy = (x: TensorLike, what: string): LazyTensor => {
    const d = x.data;
    const dtype = x instanceof Tensor ? x.dtype : d instanceof Float32Array ? 'float32' : d instanceof Float64Array ? 'float64' : d.constructor.name;
    const read = (): Float32Array => {
      if (d instanceof Float32Array) return Float32Array.from(d);
      if (d instanceof Float64Array) return Float32Array.from(d);
      if (d instanceof Uint16Array && dtype === 'float16') return halfToFloat32(d);
      if (d instanceof Uint16Array && dtype === 'bfloat16') return bfloat16ToFloat32(d);
      throw new TextualInversionFormatError(`${where}: ${what} holds ${dtype}, not floats`);
    };
    if (d.length !== numel(x.dims)) throw new TextualInversionFormatError(`${where}: ${what} holds ${d.length} values for dims [${x.dims.join(', ')}]`);
    return { kind: 'tensor', shape: x.dims, dtype, read };
  };
  if (isTensorLike(t)) return { where, value: lazy(t, 'the tensor') };
  const dict = new Map<string, StateValue>();
  for (const [k, v] of Object.entries(t)) {
    if (!isTensorLike(v)) throw new TextualInversionFormatError(`${where}: "${k}" is not a tensor ({ data, dims })`);
    dict.set(k, lazy(v, `"${k}"`));
  }
  return { where, value: dict };
}

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === 'object' && x !== null && ArrayBuffer.isView((x as { data?: unknown }).data) && Array.isArray((x as { dims?: unknown }).dims);
}

function isLazyTensor(v: StateValue | StateDict | LazyTensor | undefined): v is LazyTensor {
  return typeof v === 'object' && v !== null && 'kind' in v && v.kind === 'tensor';
}

// ---- where sources are ----------------------------------------------------------------------

const DEFAULT_WEIGHT_NAMES = ['learned_embeds.safetensors', 'learned_embeds.bin'];

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** A local file, a file in a local folder, or a file downloaded from a Hub repo (diffusers' lookup order). */
async function resolveFile(source: string, o: LoadTextualInversionOptions): Promise<string> {
  if (isFile(source)) return source;
  const names = o.weightName !== undefined ? [o.weightName] : DEFAULT_WEIGHT_NAMES;
  if (existsSync(source)) {
    const folder = o.subfolder ? join(source, o.subfolder) : source;
    const found = names.map((n) => join(folder, n)).find(isFile);
    if (found === undefined) throw new MissingWeightsError(`${folder}: no textual-inversion file ${names.join(' or ')} in this folder (pass weightName)`);
    return found;
  }
  requireRepoId(source);
  const hub = adapterHubOptions(o);
  let first: unknown;
  for (const name of names) {
    try {
      return await hubDownload(source, o.subfolder ? `${o.subfolder}/${name}` : name, hub);
    } catch (e) {
      // The .bin fallback only when the safetensors file is absent (or not cached offline), as diffusers.
      if (!(e instanceof HubEntryNotFoundError || e instanceof HubNotCachedError)) throw e;
      first ??= e;
    }
  }
  throw first;
}

// ---- what goes where ------------------------------------------------------------------------

/** One embedding bound for one text encoder: its token and its vectors [n, dim] (n ≥ 1). */
interface Assignment {
  readonly token: string;
  readonly tensor: LazyTensor;
  readonly where: string;
  /** The token came from an `emb_params` key (A1111 safetensors) and no `token` was passed. */
  readonly embParams: boolean;
}

const SDXL_KEYS = { clip_l: 'text_encoder', clip_g: 'text_encoder_2' } as const;

/**
 * diffusers' `_retrieve_tokens_and_embeddings` for one source: the token and embedding of each target
 * text encoder (by name; `null`: the caller's single target).
 */
function assign(source: StateSource, token: string | undefined, single: TextEncoderPair['name'] | 'custom' | null): Map<string, Assignment> {
  const { where, value } = source;
  const out = new Map<string, Assignment>();
  const target = single ?? 'text_encoder';
  if (isLazyTensor(value)) {
    if (token === undefined) {
      throw new TextualInversionFormatError(
        `${where}: a bare tensor carries no token; pass the token of this textual inversion embedding (token: "<name>")`,
      );
    }
    out.set(target, { token, tensor: value, where, embParams: false });
    return out;
  }
  const keys = [...value.keys()];
  if (keys.length === 1) {
    // diffusers format: the one key is the token (an A1111 safetensors file's "emb_params" too)
    const [key, tensor] = [keys[0]!, value.get(keys[0]!)];
    if (!isLazyTensor(tensor)) throw new TextualInversionFormatError(`${where}: the one entry "${key}" is not a tensor`);
    out.set(target, { token: token ?? key, tensor, where, embParams: token === undefined && key === 'emb_params' });
    return out;
  }
  const params = value.get('string_to_param');
  if (params !== undefined) {
    // A1111: the token is the embedding's name, the vectors string_to_param['*']
    const tensor = params instanceof Map ? params.get('*') : undefined;
    if (!isLazyTensor(tensor)) throw new TextualInversionFormatError(`${where}: an A1111 embedding without a tensor under string_to_param['*']`);
    const name = value.get('name');
    const resolved = token ?? (typeof name === 'string' ? name : undefined);
    if (resolved === undefined) throw new TextualInversionFormatError(`${where}: an A1111 embedding without a "name"; pass its token`);
    out.set(target, { token: resolved, tensor, where, embParams: false });
    return out;
  }
  const l = value.get('clip_l');
  const g = value.get('clip_g');
  if (keys.length === 2 && isLazyTensor(l) && isLazyTensor(g)) {
    if (token === undefined) {
      throw new TextualInversionFormatError(`${where}: an SDXL embedding ({clip_l, clip_g}) carries no token; pass the token to register it under`);
    }
    for (const [key, tensor] of [['clip_l', l], ['clip_g', g]] as const) {
      if (single === null || single === SDXL_KEYS[key]) out.set(SDXL_KEYS[key], { token, tensor, where: `${where} [${key}]`, embParams: false });
    }
    if (out.size === 0) {
      throw new TextualInversionFormatError(
        `${where}: an SDXL embedding ({clip_l, clip_g}) for a text encoder that is not one of this pipeline's; pass its clip_l or clip_g tensor`,
      );
    }
    return out;
  }
  throw new TextualInversionFormatError(
    `${where}: not a textual inversion embedding: a state dict needs a single key (diffusers: token → embedding), a "string_to_param" entry (A1111), ` +
      `or clip_l and clip_g (SDXL); it has ${keys.length ? keys.map((k) => JSON.stringify(k)).join(', ') : 'no keys'}`,
  );
}

/** Everything that will change in one tokenizer / text encoder, computed before anything does. */
interface Plan {
  readonly pair: TextEncoderPair | { readonly name: 'custom'; readonly tokenizer: CLIPTokenizer; readonly textEncoder: CLIPTextModel | CLIPTextModelWithProjection };
  /** The tokens to add, in id order (multi-vector ones expanded). */
  readonly tokens: readonly string[];
  /** The text encoder's added rows afterwards, [N, dim]. */
  readonly table: Tensor<'float32'>;
}

/** The vectors of an embedding [dim] / [1, dim] / [n, dim] as n rows, checked against the encoder's width. */
function vectorsOf(a: Assignment, dim: number): Float32Array[] {
  const s = a.tensor.shape;
  if (s.length !== 1 && s.length !== 2) throw new TextualInversionFormatError(`${a.where}: the embedding of "${a.token}" has shape [${s.join(', ')}]; expected [dim] or [n, dim]`);
  if (!FLOAT_DTYPES.has(a.tensor.dtype)) {
    throw new TextualInversionFormatError(`${a.where}: the embedding of "${a.token}" is ${a.tensor.dtype}, not floats`);
  }
  const n = s.length === 2 ? s[0]! : 1;
  const width = s[s.length - 1]!;
  if (n === 0) throw new TextualInversionFormatError(`${a.where}: the embedding of "${a.token}" holds no vectors (shape [${s.join(', ')}])`);
  if (width !== dim) {
    throw new TextualInversionDimensionError(
      `${a.where}: the embedding of "${a.token}" is ${width} wide, but this text encoder's token embeddings are ${dim} wide ` +
        `(an embedding trained for another model: SD 1.x is 768, SD 2.x 1024, SDXL 768 + 1280)`,
    );
  }
  const flat = a.tensor.read();
  for (const v of flat) {
    if (!Number.isFinite(v)) throw new TextualInversionFormatError(`${a.where}: the embedding of "${a.token}" holds ${v}`);
  }
  return Array.from({ length: n }, (_, i) => flat.subarray(i * dim, (i + 1) * dim));
}

/** diffusers' token checks and multi-vector expansion for one target; throws before anything changes. */
function plan(pair: Plan['pair'], assignments: readonly Assignment[]): Plan {
  const { tokenizer, textEncoder } = pair;
  const inVocab = (t: string) => tokenizer.tokenId(t) !== undefined;
  for (const a of assignments) {
    if (inVocab(a.token)) {
      throw new TextualInversionTokenError(
        `Token ${a.token} already in tokenizer vocabulary. Please choose a different token name or remove ${a.token} and embedding from the tokenizer and text encoder.`,
      );
    }
  }
  const seen = new Set<string>();
  for (const a of assignments) {
    if (seen.has(a.token)) throw new TextualInversionTokenError(`You have passed a list of tokens that contains duplicates: ${assignments.map((x) => x.token).join(', ')}`);
    seen.add(a.token);
  }
  const tokens: string[] = [];
  for (const a of assignments) {
    if (inVocab(`${a.token}_1`)) {
      const existing = [a.token];
      for (let i = 1; inVocab(`${a.token}_${i}`); i++) existing.push(`${a.token}_${i}`);
      throw new TextualInversionTokenError(
        `Multi-vector Token ${JSON.stringify(existing)} already in tokenizer vocabulary. Please choose a different token name or remove the ${JSON.stringify(existing)} and embedding from the tokenizer and text encoder.`,
      );
    }
    const n = a.tensor.shape.length === 2 ? a.tensor.shape[0]! : 1;
    const names = [a.token, ...Array.from({ length: Math.max(0, n - 1) }, (_, i) => `${a.token}_${i + 1}`)];
    for (const t of names) {
      // diffusers would silently reuse such a token's id and overwrite its row; refuse it instead
      if (t !== a.token && (inVocab(t) || seen.has(t) || tokens.includes(t))) {
        throw new TextualInversionTokenError(`Token ${t} (vector ${names.indexOf(t)} of "${a.token}") is already in the tokenizer vocabulary or loaded in this call`);
      }
    }
    tokens.push(...names);
  }
  const dim = textEncoder.config.hiddenSize;
  const rows = assignments.flatMap((a) => vectorsOf(a, dim));
  const firstId = tokenizer.length;
  const vocab = textEncoder.config.vocabSize;
  if (firstId < vocab) {
    throw new TextualInversionTokenError(
      `the tokenizer knows ${firstId} tokens but the text encoder's table has ${vocab} rows, so new ids would land inside the table; use the tokenizer that belongs to this text encoder`,
    );
  }
  // diffusers' resize_token_embeddings(len(tokenizer) + n): the table ends right after the new tokens; rows the
  // text encoder had past len(tokenizer) go, rows between its table and len(tokenizer) are (never used) zeros.
  const old = textEncoder.addedTokenEmbeddings;
  const count = firstId + rows.length - vocab;
  const table = new Float32Array(count * dim);
  if (old !== null) table.set(old.data.subarray(0, Math.min(old.data.length, (firstId - vocab) * dim)));
  rows.forEach((r, k) => table.set(r, (firstId - vocab + k) * dim));
  return { pair, tokens, table: new Tensor('float32', table, [count, dim]) };
}

/** The pair `options` name (one of the pipeline's, or a custom tokenizer / encoder), or null for the pipeline's defaults. */
function explicitPair(pairs: readonly TextEncoderPair[], o: { textEncoder?: TextEncoderPair['textEncoder']; tokenizer?: CLIPTokenizer }): Plan['pair'] | null {
  if (o.textEncoder === undefined && o.tokenizer === undefined) return null;
  const byEncoder = o.textEncoder === undefined ? undefined : pairs.find((p) => p.textEncoder === o.textEncoder);
  const byTokenizer = o.tokenizer === undefined ? undefined : pairs.find((p) => p.tokenizer === o.tokenizer);
  const base = byEncoder ?? byTokenizer ?? pairs[0]!;
  const textEncoder = o.textEncoder ?? base.textEncoder;
  const tokenizer = o.tokenizer ?? base.tokenizer;
  const known = pairs.find((p) => p.textEncoder === textEncoder && p.tokenizer === tokenizer);
  return known ?? { name: 'custom', textEncoder, tokenizer };
}

/**
 * diffusers' `load_textual_inversion` on `pairs` (the pipeline's tokenizer / text encoder pairs, first the
 * default target). Every source is read and every check made before the first tokenizer or text encoder
 * changes, so a failure leaves the pipeline as it was.
 */
export async function loadTextualInversion(
  pairs: readonly TextEncoderPair[],
  source: TextualInversionSource | readonly TextualInversionSource[],
  options: LoadTextualInversionOptions = {},
): Promise<LoadedTextualInversion[]> {
  const sources = Array.isArray(source) ? (source as readonly TextualInversionSource[]) : [source as TextualInversionSource];
  const tokens: (string | undefined)[] = typeof options.token === 'string' || options.token === undefined ? [options.token] : [...options.token];
  if (sources.length === 0) throw new TextualInversionFormatError('no textual inversion source given');
  if (tokens.length === 1 && sources.length > 1 && tokens[0] === undefined) tokens.length = 0;
  if (tokens.length > 0 && tokens.length !== sources.length) {
    throw new TextualInversionTokenError(
      `You have passed a list of models of length ${sources.length}, and list of tokens of length ${tokens.length} Make sure both lists have the same length.`,
    );
  }
  const given = tokens.filter((t): t is string => t !== undefined);
  if (new Set(given).size < given.length) throw new TextualInversionTokenError(`You have passed a list of tokens that contains duplicates: ${given.join(', ')}`);
  for (const t of given) if (typeof t !== 'string' || t.length === 0) throw new TextualInversionTokenError(`a token must be a non-empty string, got ${JSON.stringify(t)}`);

  const explicit = explicitPair(pairs, options);
  const targets: Plan['pair'][] = explicit ? [explicit] : [...pairs];
  const byName = new Map<string, Assignment[]>(targets.map((p) => [p.name, []]));
  for (const [i, s] of sources.entries()) {
    const state = typeof s === 'string' ? readFileSource(await resolveFile(s, options)) : tensorsSource(s, i);
    for (const [name, a] of assign(state, tokens[i], explicit ? explicit.name : null)) {
      const list = byName.get(name);
      if (list === undefined) {
        throw new TextualInversionFormatError(`${a.where}: holds an embedding for ${name}, which this pipeline does not have`);
      }
      list.push(a);
    }
  }
  const active = targets.filter((p) => byName.get(p.name)!.length > 0);
  const tokenizers = new Set(active.map((p) => p.tokenizer));
  if (tokenizers.size < active.length) throw new TextualInversionTokenError('two text encoders share one tokenizer object; load each with its own tokenizer');
  const plans = active.map((p) => plan(p, byName.get(p.name)!));

  // Nothing has changed so far; from here on only infallible steps, one target after the other.
  const warn = options.warn ?? console.warn;
  for (const a of [...byName.values()].flat()) {
    if (a.embParams) {
      warn(
        `${a.where}: registered under the literal token "emb_params", as diffusers does with a one-key file; ` +
          `this is an A1111 embedding saved as safetensors — pass token to name it`,
      );
    }
  }
  return plans.map((p) => {
    p.pair.tokenizer.addTokens(p.tokens);
    p.pair.textEncoder.setAddedTokenEmbeddings(p.table);
    return { textEncoder: p.pair.name, tokens: p.tokens, ids: p.tokens.map((t) => p.pair.tokenizer.tokenId(t)!) };
  });
}

/**
 * diffusers' `unload_textual_inversion`: remove loaded tokens (all of them without `tokens`) from the
 * tokenizer(s) and their rows from the text encoder(s); the remaining tokens keep their order and get
 * dense ids again. Beyond diffusers, naming a multi-vector token T removes its vectors T_1 … too (diffusers
 * leaves them behind, half-loaded). Tokens not loaded anywhere are a TextualInversionTokenError, and
 * nothing changes then.
 */
export function unloadTextualInversion(
  pairs: readonly TextEncoderPair[],
  tokens?: string | readonly string[],
  options: UnloadTextualInversionOptions = {},
): void {
  const explicit = explicitPair(pairs, options);
  const targets: Plan['pair'][] = explicit ? [explicit] : [...pairs];
  const asked = tokens === undefined ? undefined : typeof tokens === 'string' ? [tokens] : [...tokens];
  const work = targets.map((pair) => {
    const runtime = pair.tokenizer.runtimeTokens;
    const loaded = new Set(runtime);
    const drop = new Set<string>();
    for (const t of asked ?? runtime) {
      if (!loaded.has(t)) continue;
      drop.add(t);
      for (let i = 1; loaded.has(`${t}_${i}`); i++) drop.add(`${t}_${i}`);
    }
    return { pair, drop: [...drop], kept: runtime.filter((t) => !drop.has(t)) };
  });
  if (asked !== undefined && work.every((w) => w.drop.length === 0)) {
    throw new TextualInversionTokenError(`No tokens to remove found: ${asked.map((t) => JSON.stringify(t)).join(', ')} ${asked.length === 1 ? 'is' : 'are'} not loaded`);
  }
  for (const { pair, drop, kept } of work) {
    if (drop.length === 0) continue;
    const { tokenizer, textEncoder } = pair;
    const vocab = textEncoder.config.vocabSize;
    const dim = textEncoder.config.hiddenSize;
    const oldRows = textEncoder.addedTokenEmbeddings;
    const oldIds = new Map(kept.map((t) => [t, tokenizer.tokenId(t)!]));
    tokenizer.removeTokens(drop);
    const count = Math.max(0, tokenizer.length - vocab);
    const table = new Float32Array(count * dim);
    for (const t of kept) {
      const from = oldIds.get(t)! - vocab;
      const to = tokenizer.tokenId(t)! - vocab;
      if (from >= 0 && to >= 0 && oldRows !== null && (from + 1) * dim <= oldRows.data.length) table.set(oldRows.data.subarray(from * dim, (from + 1) * dim), to * dim);
    }
    textEncoder.setAddedTokenEmbeddings(count > 0 ? new Tensor('float32', table, [count, dim]) : null);
  }
}

/**
 * diffusers' `maybe_convert_prompt`: every added token T of `tokenizer` found in the prompt that has vectors
 * T_1, T_2, … is replaced — a plain substring replace over the whole prompt — by "T T_1 … T_{n−1}". The
 * plain replace is diffusers' own, pitfall included: a user's literal "T_1" becomes "T T_1 T_2_1". Tokens
 * are taken in order of first appearance (diffusers iterates a Python set, whose order only matters in
 * contrived cases).
 */
export function maybeConvertPrompt<P extends string | readonly string[]>(prompt: P, tokenizer: CLIPTokenizer): P extends string ? string : string[];
export function maybeConvertPrompt(prompt: string | readonly string[], tokenizer: CLIPTokenizer): string | string[] {
  if (typeof prompt !== 'string') return prompt.map((p) => convertOne(p, tokenizer));
  return convertOne(prompt, tokenizer);
}

function convertOne(prompt: string, tokenizer: CLIPTokenizer): string {
  const added = tokenizer.addedTokensEncoder;
  // Only a tokenizer with multi-vector tokens can change a prompt; skip the tokenization otherwise.
  if (![...added.keys()].some((t) => added.has(`${t}_1`))) return prompt;
  let out = prompt;
  for (const token of new Set(tokenizer.tokenize(prompt))) {
    if (!added.has(token)) continue;
    let replacement = token;
    for (let i = 1; added.has(`${token}_${i}`); i++) replacement += ` ${token}_${i}`;
    out = out.replaceAll(token, () => replacement); // a function, so "$" in a token is not a replacement pattern
  }
  return out;
}
