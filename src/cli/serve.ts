/** `cnxs serve`: the HTTP API and web UI (src/server/). */
import { UsageError } from './usage.js';

export async function serveCommand(args: readonly string[]): Promise<number> {
  throw new UsageError(`serve is not built yet (${args.length} arguments)`);
}
