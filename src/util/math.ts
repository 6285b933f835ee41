/** Integer helpers diffusers uses to size GroupNorms (kept below every layer that sizes one). */

/** diffusers' find_largest_factor: the largest divisor of `n` that is ≤ `max` (n itself if max ≥ n). */
export function findLargestFactor(n: number, max: number): number {
  if (max >= n) return n;
  for (let f = max; f > 0; f--) if (n % f === 0) return f;
  return 1;
}

export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
