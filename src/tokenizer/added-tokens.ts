/**
 * Added and special tokens (`<|startoftext|>`, `<|endoftext|>`, a `!` pad token, textual-inversion tokens...)
 * are cut out of the raw text before any clean-up or BPE, as transformers' slow tokenizers do: the text is split
 * at every occurrence (leftmost first, longest token first), the pieces next to a token are stripped according
 * to its `lstrip`/`rstrip` flags, `single_word` tokens glued to a neighbouring word are given back to that
 * word, and only the remaining text pieces go through BPE.
 */
import { pyLstrip, pyRstrip } from './normalize.js';

/** One entry of tokenizer_config.json's `added_tokens_decoder` (or a special token), resolved to its id. */
export interface AddedToken {
  readonly id: number;
  readonly content: string;
  /** Special tokens are dropped by `decode(..., { skipSpecialTokens: true })`. */
  readonly special: boolean;
  /** Eat the whitespace on the token's left. */
  readonly lstrip: boolean;
  /** Eat the whitespace on the token's right. */
  readonly rstrip: boolean;
  /** Only split the token out when it is not glued to a neighbouring word. */
  readonly singleWord: boolean;
}

/** A piece of the split text: either plain text for BPE, or an added token. */
export type TextPiece = { readonly text: string; readonly token?: undefined } | { readonly text: string; readonly token: AddedToken };

/** Splits raw text around a fixed set of added tokens. */
export class AddedTokenSplitter {
  private readonly byContent: ReadonlyMap<string, AddedToken>;
  private readonly pattern: RegExp | undefined;

  constructor(tokens: Iterable<AddedToken>) {
    const byContent = new Map<string, AddedToken>();
    for (const t of tokens) if (t.content.length > 0) byContent.set(t.content, t);
    this.byContent = byContent;
    // Alternation tries tokens in order, so listing longer tokens first gives the longest match at each position.
    const alternatives = [...byContent.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.pattern = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : undefined;
  }

  /** The token whose content is exactly `text`, if any. */
  get(content: string): AddedToken | undefined {
    return this.byContent.get(content);
  }

  /** Split `text` into text pieces and added tokens, in order, dropping empty pieces. */
  split(text: string): TextPiece[] {
    if (this.pattern === undefined) return text.length > 0 ? [{ text }] : [];
    const parts: string[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      const start = m.index;
      if (start > last) parts.push(text.slice(last, start));
      parts.push(m[0]);
      last = start + m[0].length;
    }
    if (last < text.length) parts.push(text.slice(last));
    this.applyStripping(parts);
    const pieces: TextPiece[] = [];
    for (const part of parts) {
      if (part.length === 0) continue;
      const token = this.byContent.get(part);
      pieces.push(token === undefined ? { text: part } : { text: part, token });
    }
    return pieces;
  }

  /**
   * The neighbour adjustments, applied left to right in place; a later token sees the pieces as earlier tokens
   * left them. Tokens are recognised by their content, as in transformers.
   */
  private applyStripping(parts: string[]): void {
    for (let i = 0; i < parts.length; i++) {
      const token = this.byContent.get(parts[i]!);
      if (token === undefined) continue;
      // The glue tests look at the neighbours as they were before stripping, like transformers does.
      const left = i > 0 ? parts[i - 1]! : '';
      const right = i + 1 < parts.length ? parts[i + 1]! : '';
      if (token.rstrip && right) parts[i + 1] = pyLstrip(right);
      if (token.lstrip && left) parts[i - 1] = pyRstrip(left);
      if (token.singleWord && left && !left.endsWith(' ')) {
        parts[i - 1] += parts[i]!;
        parts[i] = '';
      } else if (token.singleWord && right && !right.startsWith(' ')) {
        parts[i + 1] = parts[i]! + parts[i + 1]!;
        parts[i] = '';
      }
    }
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
