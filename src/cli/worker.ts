/** `cnxs worker`: a generation worker on a Redis/BullMQ queue (src/server/). */
import { UsageError } from './usage.js';

export async function workerCommand(args: readonly string[]): Promise<number> {
  throw new UsageError(`worker is not built yet (${args.length} arguments)`);
}
