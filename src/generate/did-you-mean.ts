/** "Did you mean" for names users type: options, request fields, sampler names. */

/** `; did you mean --steps?` when a known word is close to `word` (at most 2 edits, or a prefix), else ''. */
export function didYouMean(word: string, known: readonly string[], prefix = ''): string {
  const w = word.toLowerCase();
  let best: { name: string; d: number } | null = null;
  for (const k of known) {
    const d = k.startsWith(w) && w.length >= 2 ? 0.5 : editDistance(w, k.toLowerCase());
    if (d <= Math.max(1, Math.min(2, Math.floor(w.length / 3))) && (!best || d < best.d)) best = { name: k, d };
  }
  return best ? `; did you mean ${prefix}${best.name}?` : '';
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}
