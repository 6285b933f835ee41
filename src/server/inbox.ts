/** A small async mailbox: producers `push` (from event handlers), one consumer awaits `next()`. */
export class Inbox<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | null = null;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake?.();
  }

  /** Ends the consumer's wait: `next()` then returns undefined once the items already pushed are taken. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async next(): Promise<T | undefined> {
    while (this.items.length === 0 && !this.closed) {
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
    return this.items.shift();
  }
}
