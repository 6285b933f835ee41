/**
 * `cnxs`: the command line. `cnxs canny in.png --out edges.png` prepares a control image; the
 * `generate` command arrives with the pipeline. Errors are one line on stderr and a non-zero exit.
 */
import { parseArgs } from 'node:util';
import { ControlNetXSError } from '../errors.js';
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';

const USAGE = `usage: cnxs <command> [options]

commands:
  canny <in.png> --out <edges.png> [--low 100] [--high 200] [--l2]
        OpenCV-exact Canny edges (the control images ControlNet-XS canny adapters expect)
  help  show this text`;

class UsageError extends Error {}

function number(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
  return n;
}

async function cannyCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string', short: 'o' }, low: { type: 'string' }, high: { type: 'string' }, l2: { type: 'boolean' } },
  });
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new UsageError('canny takes exactly one input image');
  if (!values.out) throw new UsageError('canny needs --out <file.png>');
  const image = await loadImage(input);
  const edges = canny(image, { low: number('low', values.low, 100), high: number('high', values.high, 200), l2Gradient: values.l2 ?? false });
  await edges.save(values.out);
  console.log(`wrote ${values.out} (${edges.width}×${edges.height})`);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'canny':
        await cannyCommand(rest);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`cnxs: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof ControlNetXSError || (e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`cnxs: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
