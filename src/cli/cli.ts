/**
 * `cnxs`: the command line. Errors are one line on stderr and a non-zero exit (2 for usage, 1 for
 * everything else). No side effects at import: the executable (main.ts) calls `main`.
 */
import { readFileSync } from 'node:fs';
import { ControlNetXSError } from '../errors.js';
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';
import { DEPTH_USAGE, depthCommand } from './depth.js';
import { GENERATE_USAGE, HELP, generate, parseGenerateArgs } from './generate.js';
import { OptionValues, optionsHelp, parseOptions, type OptionSpec } from './options.js';
import { SERVE_USAGE, serveCommand } from './serve.js';
import { UsageError, didYouMean, float } from './usage.js';
import { WORKER_USAGE, workerCommand } from './worker.js';

const CANNY_OPTIONS: readonly OptionSpec[] = [
  { name: 'out', short: 'o', value: 'FILE.png', help: 'where to write the edges (required)' },
  { name: 'low', value: 'T', help: 'lower hysteresis threshold (default 100)' },
  { name: 'high', value: 'T', help: 'upper hysteresis threshold (default 200; ≥ --low)' },
  { name: 'l2', help: 'L2 gradient magnitude (OpenCV\'s L2gradient)' },
  { name: 'help', short: 'h', help: 'show this help' },
];

const CANNY_USAGE = `usage: cnxs canny <in.png> --out <edges.png> [options]
OpenCV-exact Canny edges (the control images ControlNet-XS canny adapters expect)

${optionsHelp(CANNY_OPTIONS)}`;

const COMMANDS = ['generate', 'canny', 'depth', 'serve', 'worker', 'help'];

const USAGE = `usage: cnxs <command> [options]

commands:
  generate  prompt + control image → PNG with ControlNet-XS (SD 1.x/2.x and SDXL)
  canny     OpenCV-exact Canny edges (the control images ControlNet-XS canny adapters expect)
  depth     depth map of a photo (the control images ControlNet-XS depth adapters expect)
  serve     HTTP API (OpenAPI at /openapi.json) and web UI at /; in-process queue, or Redis workers with --redis
  worker    run generations from the Redis queue of cnxs serve --redis (one per GPU or machine)
  help      show this text (cnxs <command> --help: that command's options)

options: -v, --version   print the version

${GENERATE_USAGE}

${CANNY_USAGE}

${DEPTH_USAGE}

${SERVE_USAGE}

${WORKER_USAGE}`;

async function cannyCommand(args: readonly string[]): Promise<void> {
  const v = new OptionValues(parseOptions(args, CANNY_OPTIONS, 'canny'));
  if (v.flag('help')) {
    console.log(CANNY_USAGE);
    return;
  }
  const input = v.positionals[0];
  if (!input || v.positionals.length > 1) throw new UsageError('canny takes exactly one input image');
  const out = v.string('out');
  if (!out) throw new UsageError('canny needs --out <file.png>');
  const low = float('low', v.string('low') ?? '100', { min: 0 });
  const high = float('high', v.string('high') ?? '200', { min: 0 });
  if (low > high) throw new UsageError(`--low (${low}) must not be above --high (${high})`);
  const image = await loadImage(input);
  const edges = canny(image, { low, high, l2Gradient: v.flag('l2') });
  await edges.save(out);
  console.log(`wrote ${out} (${edges.width}×${edges.height})`);
}

/** The package's version, from the package.json two folders up (dist/cli or src/cli). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate': {
        const options = parseGenerateArgs(rest);
        if (options === HELP) console.log(GENERATE_USAGE);
        else await generate(options, { stdout: process.stdout, stderr: process.stderr });
        return 0;
      }
      case 'canny':
        await cannyCommand(rest);
        return 0;
      case 'depth':
        await depthCommand(rest, { stdout: process.stdout, stderr: process.stderr });
        return 0;
      case 'serve':
        return await serveCommand(rest);
      case 'worker':
        return await workerCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return 0;
      case '--version':
      case '-v':
        console.log(version());
        return 0;
      default:
        throw new UsageError(`unknown command "${command}"${didYouMean(command, COMMANDS)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`cnxs: ${e.message} (see cnxs ${command && COMMANDS.includes(command) && command !== 'help' ? `${command} --help` : 'help'})`);
      return 2;
    }
    if (e instanceof ControlNetXSError) {
      console.error(`cnxs: ${oneLine(e.message)}`);
      return 1;
    }
    // not one of ours: still one line, the stack only on request
    if (process.env['CNXS_DEBUG']) throw e;
    console.error(`cnxs: unexpected error: ${oneLine(e instanceof Error ? e.message : String(e))} (CNXS_DEBUG=1 shows the stack)`);
    return 1;
  }
}

function oneLine(message: string): string {
  return message.split('\n').map((s) => s.trim()).filter(Boolean).join('; ');
}
