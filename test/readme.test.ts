/**
 * Every ```ts / ```typescript block of README.md and docs/*.md type-checks under the project's strict
 * tsconfig, with `controlnet-xs` resolved to src/index.ts (not the built dist/, which may be stale).
 *
 * Convention for the Markdown: each block is compiled as its own ES module (top-level await allowed).
 * A block that goes on from an earlier one, or uses placeholders such as `dir` or `sample`, declares
 * what it takes in an HTML comment right before its fence — GitHub does not render it:
 *
 *     <!-- ts-prelude
 *     import { ControlNetXSAdapter } from 'controlnet-xs';
 *     declare const dir: string;
 *     declare const controlnet: ControlNetXSAdapter;
 *     -->
 *     ```ts
 *
 * The blocks are handed to the TypeScript compiler API in memory (no files are written), all in one
 * program so src/ is checked once. Errors are reported at their line in the Markdown file.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE_ENTRY = join(ROOT, 'src', 'index.ts');

/** One TypeScript block of a Markdown file. */
interface Block {
  /** Markdown file, relative to the repository root. */
  file: string;
  /** 1-based line of the block's first code line in that file. */
  line: number;
  prelude: string;
  code: string;
}

/** The TypeScript blocks of a Markdown file, each with the `ts-prelude` comment right before its fence. */
function extractBlocks(path: string): Block[] {
  const lines = readFileSync(path, 'utf8').split(/\r?\n/);
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    let end = i + 1;
    // A fence closes on a line of the same character, at least as long (CommonMark).
    while (end < lines.length && !new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`).test(lines[end]!)) end++;
    if (open[2] === 'ts' || open[2] === 'typescript') {
      blocks.push({ file: relative(ROOT, path), line: i + 2, prelude: preludeBefore(lines, i), code: lines.slice(i + 1, end).join('\n') });
    }
    i = end; // code inside any fence (a shell block quoting Markdown, say) is not Markdown
  }
  return blocks;
}

/**
 * The code of a `<!-- ts-prelude … -->` comment whose `-->` ends the line before `fenceLine`, or ''.
 * The rest of the `<!-- ts-prelude` line is a note for readers of the Markdown source; the code is
 * the lines after it, up to the `-->`.
 */
function preludeBefore(lines: string[], fenceLine: number): string {
  const last = fenceLine - 1;
  if (last < 0 || !lines[last]!.trimEnd().endsWith('-->')) return '';
  for (let start = last; start >= 0; start--) {
    if (!lines[start]!.includes('<!--')) continue;
    if (!/^\s*<!--\s*ts-prelude\b/.test(lines[start]!) || start === last) return '';
    const code = lines.slice(start + 1, last + 1);
    code[code.length - 1] = code[code.length - 1]!.trimEnd().slice(0, -'-->'.length);
    return code.join('\n');
  }
  return '';
}

function markdownFiles(): string[] {
  const docs = join(ROOT, 'docs');
  const inDocs = existsSync(docs) ? readdirSync(docs).filter((f) => f.endsWith('.md')).map((f) => join(docs, f)) : [];
  return [join(ROOT, 'README.md'), ...inDocs.sort()];
}

/** The project's compiler options (tsconfig.json), with `controlnet-xs` mapped to the sources and nothing emitted. */
function compilerOptions(): ts.CompilerOptions {
  const configPath = join(ROOT, 'tsconfig.json');
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, configPath);
  // rootDir/outDir/declaration only shape the emit, and rootDir would reject the snippets' virtual paths.
  const { rootDir: _rootDir, outDir: _outDir, declaration: _declaration, declarationMap: _declarationMap, sourceMap: _sourceMap, ...options } = parsed.options;
  return {
    ...options,
    // `strict` and everything else stay as the project has them; an example may leave its last result
    // unread (`const { sample } = await model.forward(…)`), which is no reason to fail it.
    noUnusedLocals: false,
    noUnusedParameters: false,
    noEmit: true,
    paths: { 'controlnet-xs': [SOURCE_ENTRY] },
  };
}

/** A snippet to compile: module source text and where an error in it should be reported. */
interface Snippet {
  name: string;
  source: string;
  /** Maps a 0-based line of `source` to the label of an error there. */
  where: (line: number) => string;
}

function snippetOfBlock(b: Block): Snippet {
  const preludeLines = b.prelude === '' ? 0 : b.prelude.split('\n').length;
  return {
    name: `${b.file}:${b.line}`,
    source: b.prelude === '' ? b.code : `${b.prelude}\n${b.code}`,
    where: (line) => (line < preludeLines ? `${b.file}: ts-prelude of the block at line ${b.line}` : `${b.file}:${b.line + line - preludeLines}`),
  };
}

/**
 * Type-check snippets as ES modules (`.mts`, so top-level await works whatever package.json says) in one
 * program; returns the error messages per snippet name, and the program for further checks.
 */
function typeCheck(snippets: Snippet[]): { errors: Map<string, string[]>; program: ts.Program } {
  const options = compilerOptions();
  // Virtual files in a folder of the repository, so `node_modules` and @types resolve as for test/.
  const virtual = new Map(snippets.map((s, i) => [join(ROOT, 'test', '.snippets', `snippet-${i}.mts`), s] as const));
  const host = ts.createCompilerHost(options, true);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (p) => virtual.has(p) || fileExists.call(host, p);
  host.readFile = (p) => virtual.get(p)?.source ?? readFile.call(host, p);
  host.getSourceFile = (p, languageVersion, ...rest) => {
    const s = virtual.get(p);
    return s !== undefined ? ts.createSourceFile(p, s.source, languageVersion, true) : getSourceFile.call(host, p, languageVersion, ...rest);
  };
  const program = ts.createProgram({ rootNames: [...virtual.keys()], options, host });
  const errors = new Map<string, string[]>(snippets.map((s) => [s.name, []]));
  for (const d of [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]) {
    throw new Error(`tsconfig: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
  for (const [path, s] of virtual) {
    const file = program.getSourceFile(path)!;
    for (const d of [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]) {
      const { line } = file.getLineAndCharacterOfPosition(d.start ?? 0);
      errors.get(s.name)!.push(`${s.where(line)}: TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
    }
  }
  return { errors, program };
}

const blocks = markdownFiles().flatMap(extractBlocks);

/**
 * What the README's `images[0].save(...)` relies on: `run()`/`steps()` type `images` from `outputType`
 * (RGBImage[] for 'pil' and by default, a float32 Tensor for 'np' and 'latent', the union when unknown),
 * and still reject misspelt arguments. Compiled with the blocks; `same` fails unless the types are equal.
 */
const OUTPUT_TYPES: Snippet = {
  name: 'pipeline output types',
  where: (l) => `output-types snippet line ${l + 1}`,
  source: `import { RGBImage, StableDiffusionControlNetXSPipeline, StableDiffusionXLControlNetXSPipeline, Tensor } from 'controlnet-xs';
import type { PipelineOutput, PipelineOutputType, StableDiffusionControlNetXSCallArgs } from 'controlnet-xs';
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
declare function same<A, B>(check: Equal<A, B>): void;
declare const sd: StableDiffusionControlNetXSPipeline;
declare const xl: StableDiffusionXLControlNetXSPipeline;
declare const args: StableDiffusionControlNetXSCallArgs;
declare const kind: PipelineOutputType;
type Images = RGBImage[];
type Float = Tensor<'float32'>;

const byDefault = await sd.run({ prompt: 'p', image: 'edges.png' });
same<typeof byDefault.images, Images>(true);
await byDefault.images[0]!.save('out.png');
same<typeof byDefault.images, PipelineOutput<'pil'>['images']>(true);
const pil = await sd.run({ prompt: 'p', outputType: 'pil' });
same<typeof pil.images, Images>(true);
const np = await sd.run({ prompt: 'p', outputType: 'np' });
same<typeof np.images, Float>(true);
const latent = await sd.run({ prompt: 'p', outputType: 'latent' });
same<typeof latent.images, Float>(true);
const unknownKind = await sd.run(args);
same<typeof unknownKind.images, Images | Float>(true);
const fromVariable = await sd.run({ ...args, outputType: kind });
same<typeof fromVariable.images, Images | Float>(true);
const xlDefault = await xl.run({ prompt: 'p' });
same<typeof xlDefault.images, Images>(true);
const xlNp = await xl.run({ prompt: 'p', outputType: 'np' });
same<typeof xlNp.images, Float>(true);

const steps = sd.steps({ prompt: 'p', outputType: 'latent' });
for (let r = await steps.next(); ; r = await steps.next()) {
  if (!r.done) continue;
  same<typeof r.value.images, Float>(true);
  break;
}
const xlSteps = xl.steps({ prompt: 'p' });
const last = await xlSteps.next();
if (last.done) same<typeof last.value.images, Images>(true);

// @ts-expect-error a misspelt argument is still an error
await sd.run({ prompt: 'p', outputTyp: 'np' });
// @ts-expect-error and so is an output type the pipelines do not have
await sd.run({ prompt: 'p', outputType: 'pt' });
`,
};

describe('README and docs TypeScript blocks compile (strict, against src/)', () => {
  const snippets = blocks.map(snippetOfBlock);
  // One program for every block and the checks below: building it is what takes the time.
  const probes: Snippet[] = [
    { name: 'probe: bad type', source: "import { Generator } from 'controlnet-xs';\nconst n: number = new Generator();\nconsole.log(n);", where: (l) => `probe:${l + 1}` },
    { name: 'probe: unknown export', source: "import { NoSuchExport } from 'controlnet-xs';\nconsole.log(NoSuchExport);", where: (l) => `probe:${l + 1}` },
  ];
  const { errors, program } = typeCheck([...snippets, ...probes, OUTPUT_TYPES]);

  it('finds the README blocks', () => {
    assert.ok(blocks.filter((b) => b.file === 'README.md').length >= 2, `found ${blocks.length} blocks`);
  });

  for (const s of snippets) {
    it(`${s.name} type-checks`, () => {
      assert.deepEqual(errors.get(s.name), [], `\n${errors.get(s.name)!.join('\n')}`);
    });
  }

  it('run() and steps() type `images` from outputType', () => {
    assert.deepEqual(errors.get(OUTPUT_TYPES.name), [], `\n${errors.get(OUTPUT_TYPES.name)!.join('\n')}`);
  });

  it('resolves controlnet-xs to src/index.ts, and fails on a type error or a missing export', () => {
    assert.ok(program.getSourceFile(SOURCE_ENTRY), 'src/index.ts is in the program');
    const fromDist = program.getSourceFiles().filter((f) => f.fileName.startsWith(join(ROOT, 'dist') + '/'));
    assert.deepEqual(fromDist.map((f) => f.fileName), [], 'nothing from dist/');
    assert.match(errors.get('probe: bad type')!.join('\n'), /^probe:2: TS2322:/);
    assert.match(errors.get('probe: unknown export')!.join('\n'), /^probe:1: TS2305:/);
  });
});

describe('extractBlocks', () => {
  it('reads ts-prelude comments and reports README line numbers', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8').split(/\r?\n/);
    for (const b of blocks.filter((x) => x.file === 'README.md')) {
      assert.equal(readme[b.line - 1], b.code.split('\n')[0], `${b.file}:${b.line} is the block's first line`);
    }
    assert.ok(blocks.some((b) => b.prelude.includes('declare const')), 'a block with a ts-prelude');
  });
});
