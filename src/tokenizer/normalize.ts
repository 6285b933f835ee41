/**
 * Text clean-up done by transformers' slow `CLIPTokenizer` when ftfy is not installed: its `BasicTokenizer`
 * runs with `strip_accents=False` and no punctuation splitting, so what remains is
 *
 * 1. drop NUL, U+FFFD and every code point of general category C* (Cc, Cf, Cs, Co, Cn) except tab/LF/CR;
 * 2. turn tab, LF, CR and every Zs space into a plain space;
 * 3. put spaces around CJK ideographs (so each becomes its own word);
 * 4. NFC-normalise;
 * 5. split on Python's `str.split()` whitespace and lower-case each word (Python `str.lower`, which, like
 *    `toLowerCase`, uses the full Unicode mappings and the final-sigma rule within the word).
 *
 * Accents are kept. The words are what the CLIP pre-tokenizer regex then runs over (joined by single spaces in
 * transformers; the regex never matches across a space, so running it word by word gives the same tokens).
 */

/** Category C* except tab, LF and CR; plus U+FFFD. NUL is Cc, so it is covered. */
const DROPPED = /[^\P{C}\t\n\r]|\uFFFD/gu;

/** What BasicTokenizer turns into a space: tab, LF, CR and the Zs separators. */
const TO_SPACE = /[\t\n\r\p{Zs}]/gu;

/** CJK ideograph blocks that BasicTokenizer splits into one-character words. */
const CJK_IDEOGRAPH =
  /[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{2F800}-\u{2FA1F}]/gu;

/**
 * Characters for which Python's `str.isspace()` is true (bidi class WS, B or S, or category Zs). Used for
 * `str.split()`, `str.strip()` and friends.
 */
export const PY_WHITESPACE_CLASS =
  '\\t\\n\\v\\f\\r\\x1C-\\x1F \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';

const PY_SPLIT = new RegExp(`[${PY_WHITESPACE_CLASS}]+`, 'u');
const PY_LEADING_SPACE = new RegExp(`^[${PY_WHITESPACE_CLASS}]+`, 'u');
const PY_TRAILING_SPACE = new RegExp(`[${PY_WHITESPACE_CLASS}]+$`, 'u');

/** Python's `s.lstrip()`. */
export function pyLstrip(s: string): string {
  return s.replace(PY_LEADING_SPACE, '');
}

/** Python's `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(PY_TRAILING_SPACE, '');
}

/** Python's `s.strip()`. */
export function pyStrip(s: string): string {
  return pyRstrip(pyLstrip(s));
}

/**
 * Steps 1–4 above, then Python-style whitespace splitting. The words are returned as they are, not yet
 * lower-cased, so callers can cache per raw word.
 */
export function splitCleanWords(text: string): string[] {
  const cleaned = text
    .replace(DROPPED, '')
    .replace(TO_SPACE, ' ')
    .replace(CJK_IDEOGRAPH, (ch) => ` ${ch} `)
    .normalize('NFC');
  return cleaned.split(PY_SPLIT).filter((w) => w.length > 0);
}

/** The lower-casing BasicTokenizer applies per word (`do_lower_case=True`, accents kept). */
export function lowerWord(word: string): string {
  return word.toLowerCase();
}
