/** Running async jobs a few at a time; the first failure stops the rest and is thrown. */

/**
 * Call `job` on every item, at most `concurrency` at once. On the first failure the signal given
 * to the other jobs is aborted, the pool waits for them to settle, and that failure is thrown.
 */
export async function runPool<T>(
  items: readonly T[],
  concurrency: number,
  job: (item: T, signal: AbortSignal) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const jobSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await job(item, jobSignal);
      } catch (e) {
        if (failure === null) {
          failure = { error: e };
          stop.abort(e);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  if (failure !== null) throw (failure as { error: unknown }).error;
}
