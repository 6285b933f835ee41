/** A one-line progress bar on stderr, drawn only when stderr is a terminal. */
export class ProgressBar {
  private last = '';

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = Boolean(process.stderr.isTTY),
  ) {}

  /** Draw `label [#####-----] done/total suffix`. */
  update(label: string, done: number, total: number | null, suffix = ''): void {
    if (!this.enabled) return;
    const width = 24;
    const bar =
      total && total > 0 ? `[${'#'.repeat(Math.round((width * done) / total)).padEnd(width, '-')}] ${fmt(done, total)}/${fmt(total, total)}` : fmt(done, null);
    const line = `${label} ${bar} ${suffix}`.trimEnd();
    if (line === this.last) return;
    this.last = line;
    this.stream.write(`\r\x1b[2K${line}`);
  }

  /** End the current line. */
  done(): void {
    if (this.enabled && this.last) this.stream.write('\n');
    this.last = '';
  }
}

function fmt(n: number, total: number | null): string {
  if (total !== null && total < 10_000) return String(n);
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return String(n);
}
