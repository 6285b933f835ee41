/**
 * CLIP's tokenizer, equal to transformers' slow `CLIPTokenizer` as it behaves without ftfy installed (the usual
 * case, and what the diffusers pipelines get): added/special tokens are split out of the raw text, the rest is
 * cleaned up (see normalize.ts), cut by CLIP's pre-tokenizer regex and byte-level BPE encoded; then BOS/EOS are
 * added and the sequence is truncated and padded as `tokenizer(text, padding=..., max_length=..., truncation=...)`
 * would.
 *
 * ```ts
 * const tok = await CLIPTokenizer.fromPretrained(repoDir, { subfolder: 'tokenizer' });
 * const { inputIds } = tok.call(prompts, { padding: 'max_length', maxLength: tok.modelMaxLength, truncation: true });
 * ```
 */
import { joinPath as join } from '../platform/files.js';
import { ConfigError, InputError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { AddedTokenSplitter, type AddedToken } from './added-tokens.js';
import { BytePairEncoder, fromByteSymbols, parseMerges, toByteSymbols } from './bpe.js';
import { readTokenizerFiles, resolveTokenizerConfig, type CLIPTokenizerFiles } from './config.js';
import { lowerWord, pyStrip, splitCleanWords } from './normalize.js';

/**
 * CLIP's pre-tokenizer: the two special tokens, English contractions, runs of letters, single digits, runs of
 * anything else that is not whitespace. Case-insensitive, as in the original.
 */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+/giu;

/** Regex matches that BPE leaves alone (the original seeds its BPE cache with them). */
const UNSPLIT = new Set(['<|startoftext|>', '<|endoftext|>']);

/** The per-word cache is cleared when it reaches this many entries, to bound memory on endless streams. */
const WORD_CACHE_LIMIT = 100_000;

/** Padding strategy, as transformers names them; `true` is `'longest'`, `false` none. */
export type PaddingStrategy = 'max_length' | 'longest' | boolean;

/** Options of {@link CLIPTokenizer.encode} and {@link CLIPTokenizer.call}; defaults as transformers' `__call__`. */
export interface EncodeOptions {
  /** `'max_length'`: pad to `maxLength` (default `modelMaxLength`); `'longest'`: to the batch's longest. Default none. */
  readonly padding?: PaddingStrategy;
  /** Length to pad and/or truncate to, BOS/EOS included. At least 2. */
  readonly maxLength?: number;
  /**
   * Cut the text's tokens so that the sequence with BOS and EOS fits `maxLength` (default `modelMaxLength`).
   * Left unset, it is on exactly when `maxLength` is given without padding (transformers' legacy rule).
   */
  readonly truncation?: boolean;
}

/** One encoded text: ids with BOS/EOS, and 1 for real tokens / 0 for padding. */
export interface Encoding {
  readonly inputIds: number[];
  readonly attentionMask: number[];
}

/** A batch of encoded texts as int64 tensors of shape [batch, length]. */
export interface BatchEncoding {
  readonly inputIds: Tensor<'int64'>;
  readonly attentionMask: Tensor<'int64'>;
}

/** Options of {@link CLIPTokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, PAD, UNK and any other special or added token). Default false. */
  readonly skipSpecialTokens?: boolean;
  /** Remove spaces before punctuation and contractions. Default: the config's `clean_up_tokenization_spaces`. */
  readonly cleanUpTokenizationSpaces?: boolean;
}

/** Options of {@link CLIPTokenizer.fromPretrained}. */
export interface FromPretrainedOptions {
  /** Folder inside `dir` that holds the tokenizer files, e.g. `'tokenizer'` or `'tokenizer_2'`. */
  readonly subfolder?: string;
}

/** A resolved padding/truncation plan for one call. */
interface Plan {
  readonly padding: 'max_length' | 'longest' | 'none';
  readonly padTo: number | undefined;
  readonly truncateTo: number | undefined;
}

type IdSequence = ArrayLike<number | bigint>;

const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export class CLIPTokenizer {
  /** Longest sequence the text model accepts (77 for CLIP); `Infinity` when the config sets no limit. */
  readonly modelMaxLength: number;
  /** Size of the base vocabulary (vocab.json), without added tokens. */
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /** Undefined only when the config sets `pad_token: null`; padding then throws. */
  readonly padTokenId: number | undefined;

  private readonly vocab: ReadonlyMap<string, number>;
  /** Every id's token, runtime-added tokens included (see {@link addTokens}). */
  private readonly idToToken: Map<number, string>;
  private readonly bpe: BytePairEncoder;
  /** The config's added and special tokens; never changes. */
  private readonly configAddedTokens: readonly AddedToken[];
  /** Tokens added after loading ({@link addTokens}: textual inversion), in id order. */
  private runtimeAddedTokens: AddedToken[] = [];
  /** Splits the config's and the runtime-added tokens out of text; rebuilt when tokens are added or removed. */
  private splitter: AddedTokenSplitter;
  private readonly unkTokenId: number | undefined;
  private readonly padToken: string | undefined;
  /** Strings and ids of BOS/EOS/UNK/PAD/additional special tokens. */
  private readonly specialTokens: ReadonlySet<string>;
  private readonly specialIds: ReadonlySet<number>;
  /** Added tokens that are not special tokens: decoded on their own, joined with spaces. */
  private readonly looseAddedTokens: Set<string>;
  private readonly cleanUpSpaces: boolean;
  /** Raw word (before lower-casing) → its token ids. Per instance. */
  private readonly wordCache = new Map<string, readonly number[]>();

  /** Build from already-read files; see {@link CLIPTokenizer.fromPretrained} for the usual way. */
  constructor(files: CLIPTokenizerFiles) {
    this.vocab = new Map(Object.entries(files.vocab));
    this.vocabSize = this.vocab.size;
    this.bpe = new BytePairEncoder(parseMerges(files.merges));
    const cfg = resolveTokenizerConfig(files, this.vocab);
    this.modelMaxLength = cfg.modelMaxLength;
    this.configAddedTokens = cfg.addedTokens;
    this.splitter = new AddedTokenSplitter(cfg.addedTokens);
    this.cleanUpSpaces = cfg.cleanUpTokenizationSpaces;

    const idToToken = new Map<number, string>();
    for (const [token, id] of this.vocab) idToToken.set(id, token);
    for (const t of cfg.addedTokens) idToToken.set(t.id, t.content);
    this.idToToken = idToToken;

    const where = files.source ?? 'tokenizer';
    const idOf = (name: string, token: string | undefined): number | undefined => {
      if (token === undefined) return undefined;
      const id = this.tokenToId(token);
      if (id === undefined) throw new ConfigError(`${where}: ${name} ${JSON.stringify(token)} has no id`);
      return id;
    };
    this.unkTokenId = idOf('unk_token', cfg.unkToken);
    const bos = idOf('bos_token', cfg.bosToken);
    const eos = idOf('eos_token', cfg.eosToken);
    if (bos === undefined || eos === undefined) {
      throw new ConfigError(`${where}: CLIP needs both a bos_token and an eos_token`);
    }
    this.bosTokenId = bos;
    this.eosTokenId = eos;
    this.padTokenId = idOf('pad_token', cfg.padToken);
    this.padToken = cfg.padToken;

    const special = [cfg.bosToken, cfg.eosToken, cfg.unkToken, cfg.padToken, ...cfg.additionalSpecialTokens].filter(
      (t): t is string => t !== undefined,
    );
    this.specialTokens = new Set(special);
    this.specialIds = new Set(special.map((t) => this.tokenToId(t)).filter((id): id is number => id !== undefined));
    const loose = new Set<string>();
    for (const t of cfg.addedTokens) {
      const isSpecialName = this.specialTokens.has(t.content);
      const extraBeyondVocab = cfg.additionalSpecialTokens.includes(t.content) && t.id >= this.vocabSize;
      if (!isSpecialName || extraBeyondVocab) loose.add(t.content);
    }
    this.looseAddedTokens = loose;
  }

  /**
   * Load `vocab.json`, `merges.txt`, `tokenizer_config.json` (and `special_tokens_map.json` /
   * `added_tokens.json` when present) from `dir` or `dir/subfolder`. Missing or malformed files throw
   * `ConfigError` naming the path.
   */
  static async fromPretrained(dir: string, options: FromPretrainedOptions = {}): Promise<CLIPTokenizer> {
    const folder = options.subfolder === undefined ? dir : join(dir, options.subfolder);
    return new CLIPTokenizer(await readTokenizerFiles(folder));
  }

  /** Encode one text: BOS + tokens + EOS, truncated and padded as asked. */
  encode(text: string, options: EncodeOptions = {}): Encoding {
    if (typeof text !== 'string') throw new InputError(`text must be a string, got ${typeof text}`);
    const plan = this.plan(options);
    const ids = this.withSpecialTokens(this.textToIds(text), plan.truncateTo);
    const length = plan.padding === 'max_length' && plan.padTo !== undefined ? Math.max(plan.padTo, ids.length) : ids.length;
    return this.padded(ids, length);
  }

  /**
   * Encode one or more texts into `[batch, length]` int64 tensors. Rows must come out the same length, so
   * without padding (or when `'max_length'` padding meets a longer untruncated text) unequal rows throw
   * `InputError`, as transformers does when asked for tensors.
   */
  call(texts: string | readonly string[], options: EncodeOptions = {}): BatchEncoding {
    const batch = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(batch) || batch.length === 0) throw new InputError('texts must be a string or a non-empty array of strings');
    batch.forEach((t, i) => {
      if (typeof t !== 'string') throw new InputError(`texts[${i}] must be a string, got ${typeof t}`);
    });
    const plan = this.plan(options);
    const rows = batch.map((t) => this.withSpecialTokens(this.textToIds(t), plan.truncateTo));
    const longest = Math.max(...rows.map((r) => r.length));
    let length = longest;
    if (plan.padding === 'max_length' && plan.padTo !== undefined) length = Math.max(plan.padTo, longest);
    const lengths = rows.map((r) => (plan.padding === 'none' ? r.length : Math.max(r.length, length)));
    if (lengths.some((l) => l !== lengths[0])) {
      throw new InputError(
        `texts encode to different lengths (${lengths.join(', ')}); ask for padding ('longest' or 'max_length' with truncation)`,
      );
    }
    const width = lengths[0]!;
    const ids = new BigInt64Array(batch.length * width);
    const mask = new BigInt64Array(batch.length * width);
    rows.forEach((row, b) => {
      const enc = this.padded(row, width);
      for (let j = 0; j < width; j++) {
        ids[b * width + j] = BigInt(enc.inputIds[j]!);
        mask[b * width + j] = BigInt(enc.attentionMask[j]!);
      }
    });
    return {
      inputIds: new Tensor('int64', ids, [batch.length, width]),
      attentionMask: new Tensor('int64', mask, [batch.length, width]),
    };
  }

  /** Text of a sequence of ids, as transformers' `decode`. Accepts numbers or bigints (e.g. a tensor row). */
  decode(ids: IdSequence, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens === true;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = Number(ids[i]);
      const token = this.idToToken.get(id);
      if (token === undefined) throw new InputError(`id ${String(ids[i])} at position ${i} is not in the vocabulary`);
      if (skip && this.specialIds.has(id)) continue;
      tokens.push(token);
    }
    // Loose added tokens are kept as they are; byte-level runs between them are decoded from bytes.
    const parts: string[] = [];
    let run: string[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const text = this.tokensToString(run);
      if (text.length > 0) parts.push(text);
      run = [];
    };
    for (const token of tokens) {
      const loose = this.looseAddedTokens.has(token);
      if (skip && (this.specialTokens.has(token) || (loose && token !== this.padToken))) continue;
      if (loose) {
        flush();
        parts.push(token);
      } else {
        run.push(token);
      }
    }
    // The last run is kept even when empty, as in transformers.
    if (run.length > 0) parts.push(this.tokensToString(run));
    const text = parts.join(' ');
    return (options.cleanUpTokenizationSpaces ?? this.cleanUpSpaces) ? cleanUpTokenization(text) : text;
  }

  /** {@link decode} for each row of a batch: an array of id sequences or a `[batch, length]` tensor. */
  batchDecode(sequences: readonly IdSequence[] | Tensor<'int64'>, options: DecodeOptions = {}): string[] {
    if (sequences instanceof Tensor) {
      if (sequences.dims.length !== 2) {
        throw new InputError(`batchDecode needs a [batch, length] tensor, got dims [${sequences.dims.join(', ')}]`);
      }
      const [rows, width] = sequences.dims as [number, number];
      const out: string[] = [];
      for (let b = 0; b < rows; b++) out.push(this.decode(sequences.data.subarray(b * width, (b + 1) * width), options));
      return out;
    }
    return sequences.map((s) => this.decode(s, options));
  }

  /**
   * transformers' `len(tokenizer)`: how many distinct tokens the vocabulary and the added tokens hold
   * together. A token added next gets this id.
   */
  get length(): number {
    let extra = 0;
    for (const content of this.addedContents()) if (!this.vocab.has(content)) extra++;
    return this.vocab.size + extra;
  }

  /** The id of one token (an added token's content, or a vocab.json entry such as `cat</w>`); undefined when unknown. */
  tokenId(token: string): number | undefined {
    return this.tokenToId(token);
  }

  /** transformers' `added_tokens_encoder`: every added token (special ones included) → its id. */
  get addedTokensEncoder(): ReadonlyMap<string, number> {
    const map = new Map<string, number>();
    for (const t of [...this.configAddedTokens, ...this.runtimeAddedTokens]) map.set(t.content, t.id);
    return map;
  }

  /** The tokens added since loading ({@link addTokens}), in id order. */
  get runtimeTokens(): readonly string[] {
    return this.runtimeAddedTokens.map((t) => t.content);
  }

  /**
   * transformers' `add_tokens` for plain (non-special) tokens: each new token is split out of text before
   * BPE from now on, matched exactly (case-sensitive), and gets the id {@link length} — or its vocab.json
   * id when it is spelt like a vocabulary entry. Tokens that are already added tokens are skipped, empty
   * strings ignored. Returns how many new ids were handed out.
   */
  addTokens(tokens: readonly string[]): number {
    let added = 0;
    for (const content of tokens) {
      if (typeof content !== 'string') throw new InputError(`tokens must be strings, got ${typeof content}`);
      if (content.length === 0 || this.splitter.get(content) !== undefined) continue;
      const known = this.vocab.get(content);
      const id = known ?? this.length;
      if (known === undefined) added++;
      this.runtimeAddedTokens.push({ id, content, special: false, lstrip: false, rstrip: false, singleWord: false });
      this.idToToken.set(id, content);
      this.looseAddedTokens.add(content);
      this.rebuildSplitter();
    }
    return added;
  }

  /**
   * Remove tokens added with {@link addTokens} (diffusers' `unload_textual_inversion` on the tokenizer).
   * The remaining runtime tokens that had new ids are renumbered in order right after the loaded
   * tokenizer's ids, so ids stay dense and the next token added gets `length` without a clash.
   * Names that are not runtime-added tokens are an InputError; nothing is removed then.
   */
  removeTokens(tokens: readonly string[]): void {
    const runtime = new Set(this.runtimeAddedTokens.map((t) => t.content));
    const unknown = tokens.filter((t) => !runtime.has(t));
    if (unknown.length) throw new InputError(`not tokens added to this tokenizer: ${unknown.map((t) => JSON.stringify(t)).join(', ')}`);
    const drop = new Set(tokens);
    for (const t of this.runtimeAddedTokens) {
      if (!drop.has(t.content)) continue;
      if (this.idToToken.get(t.id) === t.content) this.idToToken.delete(t.id);
      if (this.vocab.has(t.content)) this.idToToken.set(t.id, t.content);
      this.looseAddedTokens.delete(t.content);
    }
    const kept = this.runtimeAddedTokens.filter((t) => !drop.has(t.content));
    this.runtimeAddedTokens = [];
    this.rebuildSplitter();
    // The first new id is the loaded tokenizer's length, now that every runtime token is out.
    let next = this.length;
    for (const t of kept) {
      const fresh = this.vocab.has(t.content) ? t : { ...t, id: next++ };
      if (fresh !== t && this.idToToken.get(t.id) === t.content) this.idToToken.delete(t.id);
      this.idToToken.set(fresh.id, fresh.content);
      this.runtimeAddedTokens.push(fresh);
    }
    this.rebuildSplitter();
  }

  /**
   * transformers' `tokenize`: the token strings of `text` without BOS/EOS — added tokens as their content,
   * everything else as BPE symbols (`photo</w>`).
   */
  tokenize(text: string): string[] {
    if (typeof text !== 'string') throw new InputError(`text must be a string, got ${typeof text}`);
    const tokens: string[] = [];
    for (const piece of this.splitter.split(text)) {
      if (piece.token !== undefined) {
        tokens.push(piece.token.content);
        continue;
      }
      for (const word of splitCleanWords(piece.text)) tokens.push(...this.wordTokens(word));
    }
    return tokens;
  }

  private *addedContents(): Iterable<string> {
    const seen = new Set<string>();
    for (const t of [...this.configAddedTokens, ...this.runtimeAddedTokens]) {
      if (!seen.has(t.content)) yield t.content;
      seen.add(t.content);
    }
  }

  private rebuildSplitter(): void {
    this.splitter = new AddedTokenSplitter([...this.configAddedTokens, ...this.runtimeAddedTokens]);
    // A symbol's id is looked up among the added tokens first, so cached words may be stale now.
    this.wordCache.clear();
  }

  /** Token ids of `text` without BOS/EOS, truncation or padding. */
  private textToIds(text: string): number[] {
    const ids: number[] = [];
    for (const piece of this.splitter.split(text)) {
      if (piece.token !== undefined) {
        ids.push(piece.token.id);
        continue;
      }
      for (const word of splitCleanWords(piece.text)) {
        for (const id of this.wordIds(word)) ids.push(id);
      }
    }
    return ids;
  }

  /** Ids of one whitespace-free word, cached per raw word. */
  private wordIds(word: string): readonly number[] {
    const cached = this.wordCache.get(word);
    if (cached !== undefined) return cached;
    const ids: number[] = [];
    for (const symbol of this.wordTokens(word)) {
      const id = this.tokenToId(symbol) ?? this.unkTokenId;
      if (id === undefined) throw new InputError(`token ${JSON.stringify(symbol)} is not in the vocabulary and there is no unk_token`);
      ids.push(id);
    }
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    return ids;
  }

  /** The BPE symbols of one whitespace-free word (CLIP's pre-tokenizer pieces, each byte-level BPE encoded). */
  private wordTokens(word: string): string[] {
    const symbols: string[] = [];
    for (const match of lowerWord(word).matchAll(CLIP_PATTERN)) {
      const piece = match[0];
      symbols.push(...(UNSPLIT.has(piece) ? [piece] : this.bpe.encode(toByteSymbols(piece))));
    }
    return symbols;
  }

  private tokenToId(token: string): number | undefined {
    return this.splitter.get(token)?.id ?? this.vocab.get(token);
  }

  /** BOS + ids + EOS, the ids cut so the whole fits `truncateTo`. */
  private withSpecialTokens(ids: number[], truncateTo: number | undefined): number[] {
    const kept = truncateTo !== undefined && ids.length + 2 > truncateTo ? ids.slice(0, truncateTo - 2) : ids;
    return [this.bosTokenId, ...kept, this.eosTokenId];
  }

  /** Right-pad `ids` with the pad id up to `length` (never cuts). */
  private padded(ids: readonly number[], length: number): Encoding {
    const extra = Math.max(0, length - ids.length);
    if (extra > 0 && this.padTokenId === undefined) throw new InputError('cannot pad: this tokenizer has no pad_token');
    return {
      inputIds: [...ids, ...new Array<number>(extra).fill(this.padTokenId ?? 0)],
      attentionMask: [...new Array<number>(ids.length).fill(1), ...new Array<number>(extra).fill(0)],
    };
  }

  /** Check the options and work out lengths as transformers' `_get_padding_truncation_strategies` does. */
  private plan(options: EncodeOptions): Plan {
    const { padding = false, maxLength, truncation } = options;
    if (padding !== true && padding !== false && padding !== 'max_length' && padding !== 'longest') {
      throw new InputError(`padding must be 'max_length', 'longest', true or false, got ${JSON.stringify(padding)}`);
    }
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 2)) {
      throw new InputError(`maxLength must be an integer >= 2 (room for BOS and EOS), got ${String(maxLength)}`);
    }
    if (truncation !== undefined && typeof truncation !== 'boolean') {
      throw new InputError(`truncation must be a boolean, got ${JSON.stringify(truncation)}`);
    }
    const strategy = padding === true ? 'longest' : padding === false ? 'none' : padding;
    const truncate = truncation ?? (maxLength !== undefined && strategy === 'none');
    const limit = maxLength ?? (Number.isFinite(this.modelMaxLength) ? this.modelMaxLength : undefined);
    if (strategy !== 'none' && this.padTokenId === undefined) throw new InputError('cannot pad: this tokenizer has no pad_token');
    return {
      // With no length known, transformers quietly skips 'max_length' padding and truncation.
      padding: strategy === 'max_length' && limit === undefined ? 'none' : strategy,
      padTo: strategy === 'max_length' ? limit : undefined,
      truncateTo: truncate ? limit : undefined,
    };
  }

  /** Bytes of byte-level tokens back to text; `</w>` becomes a space; outer whitespace is stripped. */
  private tokensToString(tokens: readonly string[]): string {
    const text = utf8Decoder.decode(fromByteSymbols(tokens.join('')));
    return pyStrip(text.replaceAll('</w>', ' '));
  }
}

/** transformers' `clean_up_tokenization`: no space before `. ? ! ,` and common English contractions. */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}
