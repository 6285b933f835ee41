/**
 * The 32-bit Mersenne Twister (MT19937) that backs torch's CPU generator.
 *
 * This is the textbook generator: 624 words of state, `init_genrand` seeding from one 32-bit
 * word, a full-state "twist" every 624 outputs, and the usual tempering of each output word.
 * All state lives in the instance; nothing here is shared between engines.
 */

/** Words of state. */
const N = 624;
/** Offset of the word mixed in by the twist. */
const M = 397;
/** Twist matrix constant, XORed in when the combined word is odd. */
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
/** Multiplier of the `init_genrand` seeding recurrence. */
const SEED_MULTIPLIER = 1812433253;

export class MT19937 {
  /** The 624 state words. */
  private readonly state = new Uint32Array(N);
  /** Index of the next word to temper; N means "twist before the next output". */
  private index = N;

  /** Seed the engine; the default 5489 is the reference implementation's default. */
  constructor(seed32 = 5489) {
    this.seed(seed32);
  }

  /**
   * `init_genrand`: word 0 is the seed, word j is
   * `1812433253 * (w[j-1] ^ (w[j-1] >>> 30)) + j` modulo 2^32.
   * The seed must already be reduced to an unsigned 32-bit integer.
   */
  seed(seed32: number): void {
    if (!Number.isInteger(seed32) || seed32 < 0 || seed32 > 0xffffffff) {
      throw new RangeError(`MT19937 seed must be an unsigned 32-bit integer, got ${seed32}`);
    }
    const st = this.state;
    st[0] = seed32;
    // Every index below is in [0, N) by the loop bounds and `st` has exactly N words, so the
    // `!`s on reads here and in nextUint32/twist are true claims (and cost nothing in this hot path).
    for (let j = 1; j < N; j++) {
      const prev = st[j - 1]!;
      // Math.imul keeps the product modulo 2^32; the Uint32Array store wraps the sum.
      st[j] = Math.imul(SEED_MULTIPLIER, prev ^ (prev >>> 30)) + j;
    }
    // The first draw after seeding regenerates the whole state.
    this.index = N;
  }

  /** The next tempered 32-bit output, as a non-negative number in [0, 2^32). */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!; // index < N after the twist check
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * Regenerate all 624 words. Word k combines the top bit of word k with the low 31 bits of
   * word k+1, shifts right by one, XORs in MATRIX_A if the combined word was odd, and XORs in
   * word k+M (indices wrap around). The loop is split so that no index needs a modulo.
   */
  private twist(): void {
    const st = this.state;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (st[k]! & UPPER_MASK) | (st[k + 1]! & LOWER_MASK);
      st[k] = st[k + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (st[k]! & UPPER_MASK) | (st[k + 1]! & LOWER_MASK);
      st[k] = st[k + M - N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (st[N - 1]! & UPPER_MASK) | (st[0]! & LOWER_MASK);
    st[N - 1] = st[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }
}
