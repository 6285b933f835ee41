/**
 * `cnxs generate`'s argument checks, sizes and sampler names, in-process: every mistake is a
 * UsageError in CLI words found before anything is loaded, and every label the CLI writes reads back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../src/cli/usage.js';
import { HELP, chooseSize, parseGenerateArgs, type GenerateOptions } from '../src/cli/generate.js';
import { checkImageSize, fitToAspect } from '../src/pipelines/image-size.js';
import { SCHEDULER_ALIASES, findSchedulerAlias, schedulerLabel } from '../src/schedulers/aliases.js';
import { InputError } from '../src/errors.js';

const base = ['--prompt', 'a bird', '--control', 'edges.png'];
const parse = (...extra: string[]) => parseGenerateArgs([...base, ...extra]) as GenerateOptions;

test('generate: bad options are UsageErrors naming the option in CLI words, with a suggestion where one fits', () => {
  const cases: [string[], RegExp][] = [
    [['--steps', '-5'], /^--steps must be ≥ 1, got -5$/],
    [['--step', '2'], /unknown option --step; did you mean --steps\?/],
    [['--guidance', '2'], /unknown option --guidance; did you mean --guidance-scale\?/],
    [['--steps', '0x3'], /--steps must be a whole number, got "0x3"/],
    [['--steps', '1e1'], /--steps must be a whole number, got "1e1"/],
    [['--steps', '2000'], /--steps must be ≤ 1000, got 2000/],
    [['--guidance-scale', '0x10'], /--guidance-scale must be a number, got "0x10"/],
    [['--guidance-scale', 'Infinity'], /--guidance-scale must be a number/],
    [['--seed', '18446744073709551616'], /--seed must be ≤ 18446744073709551615 \(2\^64−1\)/],
    [['--seed', '-1'], /--seed must be a whole number 0 … 18446744073709551615/],
    [['--seed', '18446744073709551615', '--num-images', '2'], /runs past 2\^64−1/],
    [['--control-start', '0.8', '--control-end', '0.2'], /--control-start \(0\.8\) must be below --control-end \(0\.2\)/],
    [['--control-end', '1.5'], /--control-end must be ≤ 1, got 1\.5/],
    [['--clip-skip', '99'], /--clip-skip must be ≤ 12, got 99/],
    [['--clip-skip', '0'], /--clip-skip must be ≥ 1, got 0/],
    [['--width', '100000', '--height', '100000'], /10000000000 pixels, over --max-pixels 4194304/],
    [['--width', '1024', '--height', '1024', '--max-pixels', '500000'], /over --max-pixels 500000/],
    [['--scheduler', 'eular'], /unknown --scheduler "eular"; did you mean euler\?/],
    [['--device', 'gpu'], /--device must be one of cpu, cuda, webgpu, got "gpu"/],
    [['--dtype', 'float16'], /--dtype float16 needs --device webgpu or cuda: the CPU has no float16/],
    [['--dtype', 'float61', '--device', 'cuda'], /--dtype must be one of float32, float16, got "float61"; did you mean float32\?/],
    [['--dtype', 'bfloat16', '--device', 'webgpu'], /--dtype must be one of float32, float16/],
    [['--out', 'x.jpg'], /--out must be a \.png file/],
    [['--steps'], /--steps needs a value \(N\)/],
    [['--steps', '--seed', '1'], /--steps needs a value/],
    [['--canny=yes'], /--canny is a flag and takes no value/],
    [['stray'], /unexpected argument "stray"/],
  ];
  for (const [extra, message] of cases) {
    assert.throws(() => parse(...extra), (e: unknown) => e instanceof UsageError && message.test(e.message), extra.join(' '));
  }
  assert.throws(() => parseGenerateArgs(['--control', 'x.png']), /generate needs --prompt/);
});

test('generate: accepted forms (short flags, --name=value, negative numbers where allowed, seeds beyond 2^53, --help)', () => {
  const o = parse('-s', '12', '--guidance-scale=-1', '-o', 'x.png', '--seed', '9007199254740993', '--scheduler', 'DPM++ 2M Karras');
  assert.equal(o.steps, 12);
  assert.equal(o.guidanceScale, -1);
  assert.equal(o.out, 'x.png');
  assert.equal(o.seed, 9007199254740993n, 'exact past 2^53');
  assert.equal(o.scheduler, 'dpm++2m-karras');
  assert.equal(o.dtype, undefined, 'float32 unless asked');
  assert.equal(parse('--dtype', 'float16', '--device', 'webgpu').dtype, 'float16');
  assert.equal(parseGenerateArgs(['--help']), HELP);
  assert.equal(parseGenerateArgs([...base, '-h']), HELP);
});

test('every sampler label the CLI writes into a PNG, and each diffusers class name, is accepted by --scheduler', () => {
  for (const [key, alias] of Object.entries(SCHEDULER_ALIASES)) {
    const config = { _class_name: alias.className, ...alias.overrides };
    const label = schedulerLabel(config);
    assert.equal(label, alias.label, `${key}: the label written for its config`);
    assert.equal(findSchedulerAlias(label)?.key, key, `label "${label}" reads back`);
    assert.equal(parse('--scheduler', label).scheduler, key);
    assert.equal(findSchedulerAlias(key.toUpperCase())?.key, key);
  }
  for (const name of ['EulerAncestralDiscreteScheduler', 'EulerAncestralDiscrete', 'PNDMScheduler', 'PNDM', 'DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']) {
    const found = findSchedulerAlias(name);
    assert.ok(found, name);
    assert.equal(SCHEDULER_ALIASES[found.key]!.className.replace(/Scheduler$/, ''), name.replace(/Scheduler$/, ''));
    assert.deepEqual(SCHEDULER_ALIASES[found.key]!.overrides, {}, `${name} stands for the plain alias`);
  }
  // a model's own scheduler: SD 2.1-base ships PNDM (A1111 calls it PLMS); an unknown config falls back to the class
  assert.equal(schedulerLabel({ _class_name: 'PNDMScheduler', skip_prk_steps: true }), 'PLMS');
  assert.equal(schedulerLabel({ _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: false }), 'DPM++ 2M');
});

const SD21 = { multiple: 32, vaeScaleFactor: 8, defaultSize: 512 };
const SDXL = { multiple: 32, vaeScaleFactor: 8, defaultSize: 1024 };

test('sizes: the model resolution fitted to the control image, given sizes rounded with a note, the pixel cap', () => {
  const notes: string[] = [];
  const note = (m: string) => notes.push(m);
  const none = { width: undefined, height: undefined, maxPixels: 2048 * 2048 };
  // a 500×375 PNG and a 4032×3024 phone photo: 4:3 at about 512² pixels on SD 2.1-base
  assert.deepEqual(chooseSize(none, { width: 500, height: 375 }, SD21, note), { width: 576, height: 448 });
  assert.deepEqual(chooseSize(none, { width: 4032, height: 3024 }, SD21, note), { width: 576, height: 448 });
  assert.deepEqual(chooseSize(none, { width: 3024, height: 4032 }, SD21, note), { width: 448, height: 576 });
  assert.deepEqual(chooseSize(none, { width: 4032, height: 3024 }, SDXL, note), { width: 1184, height: 896 });
  assert.deepEqual(chooseSize(none, { width: 64, height: 64 }, SD21, note), { width: 512, height: 512 });
  assert.deepEqual(notes, [], 'no note when nothing was asked for');
  assert.deepEqual(chooseSize({ ...none, width: 500, height: 375 }, { width: 1, height: 1 }, SD21, note), { width: 512, height: 384 });
  assert.match(notes.pop()!, /^500×375 px is not a multiple of 32 px for this model; generating 512×384$/);
  assert.deepEqual(chooseSize({ ...none, width: 768 }, { width: 4032, height: 3024 }, SD21, note), { width: 768, height: 576 });
  assert.deepEqual(notes, [], 'a valid width and a derived height: no note');
  assert.throws(() => chooseSize({ width: 30000, height: undefined, maxPixels: 2048 * 2048 }, { width: 1, height: 1 }, SD21, note), /30016×30016 px is over --max-pixels 4194304/);
  // extreme aspect ratios still give at least one multiple per side
  const thin = fitToAspect({ width: 10000, height: 1 }, SD21);
  assert.equal(thin.height, 32);
});

test('checkImageSize: the pipelines\' message is in pixels and names the multiple and a size nearby', () => {
  checkImageSize({ width: 512, height: 384 }, SD21, 'x');
  assert.throws(
    () => checkImageSize({ width: 496, height: 368 }, SD21, 'from the control image'),
    (e: unknown) => e instanceof InputError && /^496×368 px \(from the control image\) cannot be generated: width and height must be multiples of 32 px .* e\.g\. 512×384$/.test(e.message),
  );
});
