/**
 * Checked indexed read, for reads whose bound is not local and obvious (an index computed from a
 * schedule, a step counter, a lookup into another object's array). With noUncheckedIndexedAccess,
 * `a[i]` is `T | undefined`; `a[i]!` would only claim the index is in range, this checks it, so a
 * wrong index fails here with the index and length instead of as a NaN or a TypeError far away.
 */
export function at<T>(a: ArrayLike<T>, i: number): T {
  if (!Number.isInteger(i) || i < 0 || i >= a.length) {
    throw new RangeError(`index ${i} is out of range for a length of ${a.length}`);
  }
  // In range, so the element exists (holes in sparse arrays aside, which this library never makes).
  return a[i] as T;
}
