/**
 * `cnxs`: the command line. Errors are one line on stderr and a non-zero exit (2 for usage, 1 for
 * everything else). No side effects at import: the executable (main.ts) calls `main`.
 */
import { parseArgs } from 'node:util';
import { ControlNetXSError } from '../errors.js';
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';
import { GENERATE_USAGE, generate, parseGenerateArgs } from './generate.js';
import { UsageError, float } from './usage.js';

const USAGE = `usage: cnxs <command> [options]

commands:
  generate  prompt + control image → PNG with ControlNet-XS (SD 1.x/2.x and SDXL)
  canny <in.png> --out <edges.png> [--low 100] [--high 200] [--l2]
            OpenCV-exact Canny edges (the control images ControlNet-XS canny adapters expect)
  help      show this text

${GENERATE_USAGE}`;

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
  const low = values.low === undefined ? 100 : float('low', values.low);
  const high = values.high === undefined ? 200 : float('high', values.high);
  const edges = canny(image, { low, high, l2Gradient: values.l2 ?? false });
  await edges.save(values.out);
  console.log(`wrote ${values.out} (${edges.width}×${edges.height})`);
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        await generate(parseGenerateArgs(rest), { stdout: process.stdout, stderr: process.stderr });
        return 0;
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
    if (e instanceof UsageError || isParseArgsError(e)) {
      console.error(`cnxs: ${(e as Error).message} (see cnxs help)`);
      return 2;
    }
    if (e instanceof ControlNetXSError) {
      console.error(`cnxs: ${oneLine(e.message)}`);
      return 1;
    }
    throw e;
  }
}

function isParseArgsError(e: unknown): boolean {
  return e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS');
}

function oneLine(message: string): string {
  return message.split('\n').map((s) => s.trim()).filter(Boolean).join('; ');
}
