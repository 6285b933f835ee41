/**
 * Reading a Hugging Face slow-tokenizer folder (the layout diffusers repos ship: vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json, sometimes a legacy added_tokens.json) and resolving its
 * settings the way transformers' `from_pretrained` does:
 *
 * - When tokenizer_config.json has `added_tokens_decoder`, that is the authority for added tokens and their
 *   flags, and special_tokens_map.json is not consulted. Otherwise (older saves) special_tokens_map.json
 *   overrides the special tokens named in tokenizer_config.json, and added_tokens.json lists extra tokens.
 * - Special tokens missing from the config take CLIP's defaults (`<|startoftext|>` for BOS, `<|endoftext|>`
 *   for EOS, UNK and PAD); an explicit `null` means "none".
 * - Every special token becomes an added token too (so it is split out of text before BPE), with its vocab
 *   id, or a fresh id after the vocabulary when the vocabulary lacks it.
 */
import { fileExists, joinPath as join, readTextFile } from '../platform/files.js';
import { ConfigError } from '../errors.js';
import type { AddedToken } from './added-tokens.js';

/** The parsed contents of a tokenizer folder; everything a {@link CLIPTokenizer} is built from. */
export interface CLIPTokenizerFiles {
  /** vocab.json: token → id. */
  readonly vocab: Readonly<Record<string, number>>;
  /** merges.txt, as text. */
  readonly merges: string;
  /** tokenizer_config.json, parsed. */
  readonly tokenizerConfig: Readonly<Record<string, unknown>>;
  /** special_tokens_map.json, parsed, when the folder has one (`undefined`, as absent, when not). */
  readonly specialTokensMap?: Readonly<Record<string, unknown>> | undefined;
  /** Legacy added_tokens.json (token → id), when the folder has one (`undefined`, as absent, when not). */
  readonly addedTokens?: Readonly<Record<string, number>> | undefined;
  /** Where the files came from, for error messages. */
  readonly source?: string;
}

/** Settings resolved from {@link CLIPTokenizerFiles}. */
export interface ResolvedTokenizerConfig {
  /** `model_max_length`; `Infinity` when the config gives none (or transformers' 1e30 "no limit" value). */
  readonly modelMaxLength: number;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly padToken: string | undefined;
  readonly additionalSpecialTokens: readonly string[];
  /** All added tokens, special tokens included, by id. */
  readonly addedTokens: readonly AddedToken[];
  readonly cleanUpTokenizationSpaces: boolean;
}

/** transformers treats a model_max_length above this as "no limit". */
const LARGE_INTEGER = 1e20;

/** Names of the special-token attributes, in the order transformers adds them. */
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
type SpecialKey = (typeof SPECIAL_KEYS)[number];

/** CLIPTokenizer's constructor defaults. */
const CLIP_DEFAULTS: Partial<Record<SpecialKey, string>> = {
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
};

/** A special token as written in the JSON files: a string, an AddedToken dict, or null. */
interface TokenSpec {
  readonly content: string;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  readonly singleWord: boolean;
  readonly special: boolean;
}

/** Read a tokenizer folder. vocab.json, merges.txt and tokenizer_config.json are required. */
export async function readTokenizerFiles(dir: string): Promise<CLIPTokenizerFiles> {
  const vocab = await readJson(join(dir, 'vocab.json'), { required: true });
  const merges = await readText(join(dir, 'merges.txt'), { required: true });
  const tokenizerConfig = await readJson(join(dir, 'tokenizer_config.json'), { required: true });
  const specialTokensMap = await readJson(join(dir, 'special_tokens_map.json'), { required: false });
  const addedTokens = await readJson(join(dir, 'added_tokens.json'), { required: false });
  return {
    vocab: asIdMap(vocab, join(dir, 'vocab.json')),
    merges: merges ?? '',
    tokenizerConfig: asObject(tokenizerConfig, join(dir, 'tokenizer_config.json')),
    specialTokensMap:
      specialTokensMap === undefined ? undefined : asObject(specialTokensMap, join(dir, 'special_tokens_map.json')),
    addedTokens: addedTokens === undefined ? undefined : asIdMap(addedTokens, join(dir, 'added_tokens.json')),
    source: dir,
  };
}

/** Resolve special tokens, added tokens and limits. `vocab` is the parsed vocab.json. */
export function resolveTokenizerConfig(
  files: CLIPTokenizerFiles,
  vocab: ReadonlyMap<string, number>,
): ResolvedTokenizerConfig {
  const where = files.source === undefined ? 'tokenizer_config.json' : join(files.source, 'tokenizer_config.json');
  const cfg = files.tokenizerConfig;

  // 1. Added tokens and the raw special-token values.
  const added = new Map<number, TokenSpec>();
  const raw = new Map<string, unknown>();
  for (const key of [...SPECIAL_KEYS, 'additional_special_tokens']) {
    if (key in cfg) raw.set(key, cfg[key]);
  }
  if (cfg.added_tokens_decoder !== undefined) {
    const decoder = asObject(cfg.added_tokens_decoder, `${where}: added_tokens_decoder`);
    for (const [idText, value] of Object.entries(decoder)) {
      const id = Number(idText);
      const spec = parseTokenSpec(value, `${where}: added_tokens_decoder["${idText}"]`, { special: false });
      if (!Number.isInteger(id) || id < 0 || spec === undefined) {
        throw new ConfigError(`${where}: added_tokens_decoder["${idText}"] is not a token with a non-negative id`);
      }
      added.set(id, spec);
    }
  } else {
    if (files.specialTokensMap !== undefined) {
      for (const [key, value] of Object.entries(files.specialTokensMap)) raw.set(key, value);
    }
    if (files.addedTokens !== undefined) {
      const specialContents = new Set<string>();
      for (const [key, value] of raw) {
        const values = key === 'additional_special_tokens' && Array.isArray(value) ? value : [value];
        for (const v of values) {
          const spec = parseTokenSpec(v, `${where}: ${key}`, { special: true });
          if (spec !== undefined) specialContents.add(spec.content);
        }
      }
      for (const [content, id] of Object.entries(files.addedTokens)) {
        const special = specialContents.has(content);
        added.set(id, { content, lstrip: false, rstrip: false, singleWord: false, special });
      }
    }
  }
  const addedByContent = new Map<string, { id: number; spec: TokenSpec }>();
  for (const [id, spec] of added) addedByContent.set(spec.content, { id, spec });

  // 2. Special tokens: config value (or CLIP default), flags from added_tokens_decoder when it lists them.
  const special = new Map<SpecialKey, TokenSpec | undefined>();
  for (const key of SPECIAL_KEYS) {
    const value = raw.has(key) ? raw.get(key) : CLIP_DEFAULTS[key];
    const spec = parseTokenSpec(value, `${where}: ${key}`, { special: true });
    special.set(key, spec === undefined ? undefined : (addedByContent.get(spec.content)?.spec ?? spec));
  }
  const additional: TokenSpec[] = [];
  const rawAdditional = raw.get('additional_special_tokens');
  if (rawAdditional !== undefined && rawAdditional !== null) {
    if (!Array.isArray(rawAdditional)) throw new ConfigError(`${where}: additional_special_tokens must be a list`);
    rawAdditional.forEach((v: unknown, i) => {
      const spec = parseTokenSpec(v, `${where}: additional_special_tokens[${i}]`, { special: true });
      if (spec !== undefined) additional.push(addedByContent.get(spec.content)?.spec ?? spec);
    });
  }

  // 3. Every special token not yet an added token becomes one: vocab id, or a new id after everything known.
  const known = new Set<string>(vocab.keys());
  for (const content of addedByContent.keys()) known.add(content);
  for (const spec of [...SPECIAL_KEYS.map((k) => special.get(k)), ...additional]) {
    if (spec === undefined || addedByContent.has(spec.content)) continue;
    const id = vocab.get(spec.content) ?? known.size;
    known.add(spec.content);
    const entry = { ...spec, special: true };
    added.set(id, entry);
    addedByContent.set(spec.content, { id, spec: entry });
  }

  const addedTokens: AddedToken[] = [...added].map(([id, s]) => ({
    id,
    content: s.content,
    special: s.special,
    lstrip: s.lstrip,
    rstrip: s.rstrip,
    singleWord: s.singleWord,
  }));

  return {
    modelMaxLength: parseModelMaxLength(cfg.model_max_length, where),
    bosToken: special.get('bos_token')?.content,
    eosToken: special.get('eos_token')?.content,
    unkToken: special.get('unk_token')?.content,
    padToken: special.get('pad_token')?.content,
    additionalSpecialTokens: additional.map((s) => s.content),
    addedTokens,
    cleanUpTokenizationSpaces: cfg.clean_up_tokenization_spaces === true,
  };
}

function parseModelMaxLength(value: unknown, where: string): number {
  if (value === undefined || value === null) return Infinity;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 2 || !Number.isInteger(value)) {
    throw new ConfigError(`${where}: model_max_length must be an integer >= 2, got ${JSON.stringify(value)}`);
  }
  return value > LARGE_INTEGER ? Infinity : value;
}

/** A token given as a string or an AddedToken dict (`content`, `lstrip`, `rstrip`, `single_word`, `special`). */
function parseTokenSpec(value: unknown, where: string, defaults: { special: boolean }): TokenSpec | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') {
    return { content: value, lstrip: false, rstrip: false, singleWord: false, special: defaults.special };
  }
  if (typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.content !== 'string') throw new ConfigError(`${where}: token has no string "content"`);
    return {
      content: o.content,
      lstrip: o.lstrip === true,
      rstrip: o.rstrip === true,
      singleWord: o.single_word === true,
      special: typeof o.special === 'boolean' ? o.special : defaults.special,
    };
  }
  throw new ConfigError(`${where}: expected a token string or object, got ${JSON.stringify(value)}`);
}

async function readText(path: string, opts: { required: boolean }): Promise<string | undefined> {
  // Asked first, so a missing optional file costs no error (in the browser: one cached 404).
  if (!(await fileExists(path))) {
    if (!opts.required) return undefined;
    throw new ConfigError(`tokenizer file ${path} is missing`);
  }
  try {
    return await readTextFile(path);
  } catch (err) {
    throw new ConfigError(`tokenizer file ${path} is unreadable`, { cause: err });
  }
}

async function readJson(path: string, opts: { required: boolean }): Promise<unknown> {
  const text = await readText(path, opts);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`tokenizer file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${where} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

function asIdMap(value: unknown, where: string): Record<string, number> {
  const o = asObject(value, where);
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new ConfigError(`${where}: id of ${JSON.stringify(k)} must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
  }
  return o as Record<string, number>;
}
