/**
 * Command-line options from a declarative table: one entry per option gives its name, short form,
 * value and help line, so parsing, `--help` text and "did you mean" suggestions come from one place.
 *
 * Unlike `node:util`'s parseArgs, a value option always takes the next word, so `--steps -5` reaches
 * the number check ("must be ≥ 1") instead of an "ambiguous argument" message, and an unknown option
 * names the nearest known one.
 */
import { UsageError, didYouMean } from './usage.js';

export interface OptionSpec {
  /** The long name, without dashes. */
  name: string;
  /** A one-letter short form (`-p`). */
  short?: string;
  /** The value's placeholder in help (`N`, `FILE`); absent for a flag. */
  value?: string;
  /** One line of help, defaults included. */
  help: string;
}

export interface ParsedOptions {
  /** Values by long name; flags map to `true`. A repeated option keeps its last value. */
  values: Map<string, string | true>;
  /** Every value of each value option, in command-line order (options meant to repeat, such as --embedding). */
  all: Map<string, string[]>;
  positionals: string[];
}

/** Parse `argv` against `specs`; `--name=value`, `--name value`, `-x value` and `--` are understood. */
export function parseOptions(argv: readonly string[], specs: readonly OptionSpec[], command: string): ParsedOptions {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.flatMap((s) => (s.short ? [[s.short, s] as const] : [])));
  const values = new Map<string, string | true>();
  const all = new Map<string, string[]>();
  const set = (name: string, value: string) => {
    values.set(name, value);
    all.set(name, [...(all.get(name) ?? []), value]);
  };
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let spec: OptionSpec | undefined;
    let inline: string | undefined;
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = eq < 0 ? word.slice(2) : word.slice(2, eq);
      inline = eq < 0 ? undefined : word.slice(eq + 1);
      spec = byName.get(name);
      if (!spec) throw new UsageError(`${command}: unknown option --${name}${didYouMean(name, [...byName.keys()], '--')}`);
    } else if (/^-[A-Za-z]$/.test(word)) {
      spec = byShort.get(word.slice(1));
      if (!spec) throw new UsageError(`${command}: unknown option ${word}`);
    } else {
      positionals.push(word);
      continue;
    }
    if (spec.value === undefined) {
      if (inline !== undefined) throw new UsageError(`${command}: --${spec.name} is a flag and takes no value`);
      values.set(spec.name, true);
      continue;
    }
    if (inline !== undefined) {
      set(spec.name, inline);
      continue;
    }
    const next = argv[i + 1];
    // The next word is the value, negative numbers included, unless it is another option.
    if (next === undefined || next.startsWith('--') || (/^-[A-Za-z]$/.test(next) && byShort.has(next.slice(1)))) {
      throw new UsageError(`${command}: --${spec.name} needs a value (${spec.value})`);
    }
    set(spec.name, next);
    i++;
  }
  return { values, all, positionals };
}

/** The help lines of a table: `  -p, --prompt TEXT   …`, aligned. */
export function optionsHelp(specs: readonly OptionSpec[]): string {
  const heads = specs.map((s) => `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.value ? ` ${s.value}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  return specs.map((s, i) => `  ${heads[i]!.padEnd(width)}${s.help}`).join('\n');
}

/** Typed access to parsed values. */
export class OptionValues {
  constructor(private readonly parsed: ParsedOptions) {}

  string(name: string): string | undefined {
    const v = this.parsed.values.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  /** Every value given for `name`, in order (none: empty). */
  strings(name: string): readonly string[] {
    return this.parsed.all.get(name) ?? [];
  }

  flag(name: string): boolean {
    return this.parsed.values.get(name) === true;
  }

  has(name: string): boolean {
    return this.parsed.values.has(name);
  }

  get positionals(): readonly string[] {
    return this.parsed.positionals;
  }
}
