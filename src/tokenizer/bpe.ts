/**
 * Byte-level BPE as CLIP uses it: text is UTF-8 encoded, each byte is shown as one printable code point
 * (GPT-2's reversible byte↔unicode table), the last symbol of a word carries the `</w>` end-of-word marker,
 * and the merges from merges.txt are applied lowest rank first.
 */

/** End-of-word marker appended to the last symbol of every word. */
export const END_OF_WORD = '</w>';

/**
 * The byte → code point table: printable Latin-1 bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) map to themselves, the
 * other 68 bytes to U+0100 onwards, in byte order. Immutable.
 */
function buildByteTable(): readonly string[] {
  const table = new Array<string>(256);
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : next++);
  }
  return Object.freeze(table);
}

const BYTE_TO_SYMBOL: readonly string[] = buildByteTable();
const SYMBOL_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_SYMBOL.map((s, b) => [s, b]));

const utf8Encoder = new TextEncoder();

/** UTF-8 encode `text` and spell every byte as its table code point. */
export function toByteSymbols(text: string): string {
  let out = '';
  for (const b of utf8Encoder.encode(text)) out += BYTE_TO_SYMBOL[b];
  return out;
}

/**
 * Inverse of {@link toByteSymbols}, to bytes. A code point outside the table (only possible for hand-made
 * added tokens) contributes its own UTF-8 bytes.
 */
export function fromByteSymbols(symbols: string): Uint8Array {
  const bytes: number[] = [];
  for (const ch of symbols) {
    const b = SYMBOL_TO_BYTE.get(ch);
    if (b !== undefined) bytes.push(b);
    else bytes.push(...utf8Encoder.encode(ch));
  }
  return Uint8Array.from(bytes);
}

/** One merge rule, as a line `left right` of merges.txt. */
export type MergeRule = readonly [left: string, right: string];

/** Applies ranked merges to a single word. Stateless apart from its rank table. */
export class BytePairEncoder {
  private readonly ranks: Map<string, number>;

  /**
   * @param merges merge rules in rank order; `undefined` holds the rank of a malformed line. A pair listed twice
   *   keeps its later rank, as a Python dict built from the list does.
   */
  constructor(merges: readonly (MergeRule | undefined)[]) {
    this.ranks = new Map();
    merges.forEach((rule, rank) => {
      if (rule !== undefined) this.ranks.set(pairKey(rule[0], rule[1]), rank);
    });
  }

  get size(): number {
    return this.ranks.size;
  }

  /**
   * BPE symbols of one word already spelt in byte symbols (see {@link toByteSymbols}). The last symbol ends
   * with `</w>`. Repeatedly merges every non-overlapping occurrence (left to right) of the lowest-ranked
   * adjacent pair until no adjacent pair has a rank.
   */
  encode(word: string): string[] {
    let symbols = Array.from(word);
    if (symbols.length === 0) return [];
    symbols[symbols.length - 1] += END_OF_WORD;
    while (symbols.length > 1) {
      let bestRank = Infinity;
      let best: MergeRule | undefined;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const r = this.ranks.get(pairKey(symbols[i]!, symbols[i + 1]!));
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = [symbols[i]!, symbols[i + 1]!];
        }
      }
      if (best === undefined) break;
      symbols = mergePair(symbols, best);
    }
    return symbols;
  }
}

function pairKey(a: string, b: string): string {
  // Byte symbols never contain a space (0x20 maps to U+0120), so a space separates the pair unambiguously.
  return `${a} ${b}`;
}

function mergePair(symbols: readonly string[], [left, right]: MergeRule): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < symbols.length) {
    if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
      out.push(left + right);
      i += 2;
    } else {
      out.push(symbols[i]!);
      i += 1;
    }
  }
  return out;
}

/**
 * Parse merges.txt the way CLIP's slow tokenizer does: trim the file, drop its first line (the `#version`
 * header), keep at most `maxMerges` lines (CLIP hard-codes 49152 − 256 − 2 = 48894) and split each on
 * whitespace. A line that is not exactly two symbols can never match a pair; it keeps its rank slot as `undefined`.
 */
export function parseMerges(text: string, maxMerges = 49152 - 256 - 2): (MergeRule | undefined)[] {
  const lines = text.trim().split('\n').slice(1, 1 + maxMerges);
  return lines.map((line) => {
    const parts = line.trim().split(/\s+/);
    return parts.length === 2 ? ([parts[0]!, parts[1]!] as const) : undefined;
  });
}
