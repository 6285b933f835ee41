/**
 * The seeded random values the benchmarks' random weights and test images are drawn from: xorshift32
 * (shifts 13, 17, 5) — fast, deterministic across runs and machines, not for anything but filling buffers.
 */

/** The xorshift32 stream from `state` (a zero state, which would stay zero, becomes 1): each call, the next uint32. */
export function xorshift32(state: number): () => number {
  let x = state >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** The stream of tensor number `seed`: Knuth's multiplicative hash spreads neighbouring seeds apart, so every tensor differs. */
export function tensorStream(seed: number): () => number {
  return xorshift32(seed * 2654435761);
}

/** `n` float32 values uniform in [offset − scale, offset + scale) from tensor stream `seed`, as their bytes. */
export function uniformFloat32Bytes(n: number, seed: number, range: { scale: number; offset?: number }): Uint8Array {
  const { scale, offset = 0 } = range;
  const next = tensorStream(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + scale * (next() / 2 ** 31 - 1);
  return new Uint8Array(out.buffer);
}
