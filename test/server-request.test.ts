/**
 * Request validation for `cnxs serve`: the API's POST /v1/generations body and A1111's txt2img body →
 * GenerationRequest. Every bad value is a BadRequestError naming its field; defaults are cnxs generate's.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import sharp from 'sharp';
import type { GenerationOutput } from '../src/server/jobs.js';
import { BadRequestError, DEFAULT_LIMITS, a1111Response, parseA1111Txt2Img, parseGenerationRequest, type ServerLimits } from '../src/server/request.js';
import { fixture } from './helpers.js';

const PNG = readFileSync(fixture('canny', 'scene0_64x64.png'));
const JPEG = readFileSync(fixture('images', 'load_jpeg420.jpg'));
const WEBP = readFileSync(fixture('images', 'load_webp.webp'));
const png64 = PNG.toString('base64');
const limits: ServerLimits = { ...DEFAULT_LIMITS, maxWidth: 1024, maxHeight: 1024, maxPixels: 1024 * 768, maxSteps: 50, maxNumImages: 4 };

/** A PNG signature and IHDR claiming `w`×`h` (nothing after: the header is all the parser may read). */
function pngHeader(w: number, h: number): Buffer {
  const b = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(w, 16);
  b.writeUInt32BE(h, 20);
  return b;
}

function refused(parse: () => unknown, field: string, message: RegExp, what: string): void {
  assert.throws(parse, (e: unknown) => {
    assert.ok(e instanceof BadRequestError, `${what}: ${String(e)}`);
    assert.equal(e.field, field, `${what}: field`);
    assert.match(e.message, message, what);
    assert.ok(!e.message.includes('\n'), `${what}: one line`);
    return true;
  });
}

test('generation request: defaults as cnxs generate, the image as canonical base64, a random u64 seed', () => {
  const r = parseGenerationRequest({ prompt: 'a bird', image: png64 }, limits);
  const { seed, ...rest } = r;
  assert.deepEqual(rest, { prompt: 'a bird', imageBase64: png64, steps: 30, guidanceScale: 7.5, controlScale: 1, controlStart: 0, controlEnd: 1, numImages: 1 });
  assert.match(seed, /^\d+$/);
  assert.ok(BigInt(seed) <= 2n ** 64n - 1n);
  assert.notEqual(parseGenerationRequest({ prompt: '', image: png64 }, limits).seed, seed, 'each request draws its own seed');
  // a data URL, MIME line breaks, and JPEG are the same image to the request
  assert.equal(parseGenerationRequest({ prompt: 'x', image: `data:image/png;base64,${png64}` }, limits).imageBase64, png64);
  assert.equal(parseGenerationRequest({ prompt: 'x', image: png64.replace(/(.{76})/g, '$1\r\n') }, limits).imageBase64, png64);
  assert.equal(parseGenerationRequest({ prompt: 'x', image: JPEG.toString('base64') }, limits).imageBase64, JPEG.toString('base64'));
});

test('generation request: every field given is kept as written, sampler names become alias keys, seeds to 2^64−1', () => {
  const r = parseGenerationRequest(
    {
      prompt: 'a bird',
      negativePrompt: 'blurry',
      image: png64,
      canny: { low: 50, high: 150 },
      steps: 12,
      guidanceScale: 5,
      controlScale: 0.7,
      controlStart: 0.1,
      controlEnd: 0.8,
      scheduler: 'Euler a',
      seed: '18446744073709551614',
      width: 640,
      height: 480,
      numImages: 2,
    },
    limits,
  );
  assert.deepEqual(r, {
    prompt: 'a bird',
    negativePrompt: 'blurry',
    imageBase64: png64,
    canny: { low: 50, high: 150 },
    steps: 12,
    guidanceScale: 5,
    controlScale: 0.7,
    controlStart: 0.1,
    controlEnd: 0.8,
    scheduler: 'euler-a',
    seed: '18446744073709551614',
    width: 640,
    height: 480,
    numImages: 2,
  });
  assert.deepEqual(parseGenerationRequest({ prompt: 'x', image: png64, canny: {} }, limits).canny, { low: 100, high: 200 });
  assert.equal(parseGenerationRequest({ prompt: 'x', image: png64, scheduler: 'DPMSolverMultistepScheduler' }, limits).scheduler, 'dpm++2m');
  assert.equal(parseGenerationRequest({ prompt: 'x', image: png64, seed: 7 }, limits).seed, '7');
  assert.equal(parseGenerationRequest({ prompt: 'x', image: png64, seed: 2 ** 53 - 1 }, limits).seed, String(2 ** 53 - 1));
});

test('generation request: every bad value is a BadRequestError naming its field', () => {
  const ok = { prompt: 'x', image: png64 };
  const cases: [unknown, string, RegExp][] = [
    [[], 'body', /request body must be a JSON object, got an array/],
    ['{}', 'body', /must be a JSON object, got a string/],
    [{ image: png64 }, 'prompt', /prompt is required/],
    [{ ...ok, prompt: 5 }, 'prompt', /prompt must be a string, got a number/],
    [{ ...ok, prompt: 'a\0b' }, 'prompt', /prompt contains a NUL character/],
    [{ ...ok, negativePrompt: ['x'] }, 'negativePrompt', /negativePrompt must be a string, got an array/],
    [{ prompt: 'x' }, 'image', /image is required/],
    [{ ...ok, image: '' }, 'image', /image is empty/],
    [{ ...ok, image: '@@@@' }, 'image', /image is not valid base64/],
    [{ ...ok, image: Buffer.from('GIF89a......').toString('base64') }, 'image', /image is not a PNG or JPEG file/],
    [{ ...ok, image: WEBP.toString('base64') }, 'image', /image is not a PNG or JPEG file/],
    [{ ...ok, image: `data:image/png,${png64}` }, 'image', /data URL without ;base64/],
    [{ ...ok, image: pngHeader(100000, 100000).toString('base64') }, 'image', /100000×100000 px, over this server's 67108864 pixels/],
    [{ ...ok, image: pngHeader(0, 5).toString('base64') }, 'image', /0×5 px: it has no pixels/],
    [{ ...ok, image: JPEG.subarray(0, 4).toString('base64') }, 'image', /JPEG cut short before its frame header/],
    [{ ...ok, canny: true }, 'canny', /canny must be a JSON object, got a boolean/],
    [{ ...ok, canny: { low: -1 } }, 'canny.low', /canny\.low must be a number ≥ 0, got -1/],
    [{ ...ok, canny: { low: 300, high: 100 } }, 'canny.low', /canny\.low \(300\) must not be above canny\.high \(100\)/],
    [{ ...ok, canny: { lo: 1 } }, 'canny.lo', /unknown field "canny\.lo"; did you mean low\?/],
    [{ ...ok, steps: 0 }, 'steps', /steps must be a whole number from 1 to 50, got 0/],
    [{ ...ok, steps: 51 }, 'steps', /steps must be a whole number from 1 to 50, got 51/],
    [{ ...ok, steps: 1.5 }, 'steps', /steps must be a whole number/],
    [{ ...ok, steps: '30' }, 'steps', /steps must be a whole number from 1 to 50, got "30"/],
    [{ ...ok, guidanceScale: 'high' }, 'guidanceScale', /guidanceScale must be a number, got "high"/],
    [{ ...ok, controlScale: null }, 'controlScale', /controlScale must be a number, got null/],
    [{ ...ok, controlStart: 1.5 }, 'controlStart', /controlStart must be a number from 0 to 1, got 1\.5/],
    [{ ...ok, controlEnd: -0.5 }, 'controlEnd', /controlEnd must be a number from 0 to 1/],
    [{ ...ok, controlStart: 0.6, controlEnd: 0.5 }, 'controlStart', /controlStart \(0\.6\) must be below controlEnd \(0\.5\)/],
    [{ ...ok, scheduler: 'eulr' }, 'scheduler', /unknown scheduler "eulr"; did you mean euler\?/],
    [{ ...ok, scheduler: 3 }, 'scheduler', /scheduler must be a string/],
    [{ ...ok, seed: -1 }, 'seed', /seed must be a whole number from 0 to 18446744073709551615/],
    [{ ...ok, seed: 1.5 }, 'seed', /seed must be a whole number/],
    [{ ...ok, seed: 2 ** 60 }, 'seed', /send the seed as a decimal string/],
    [{ ...ok, seed: '18446744073709551616' }, 'seed', /seed must be a whole number from 0 to 18446744073709551615/],
    [{ ...ok, seed: '0x10' }, 'seed', /seed must be a whole number/],
    [{ ...ok, seed: '18446744073709551615', numImages: 2 }, 'seed', /runs past 2\^64−1/],
    [{ ...ok, width: 7 }, 'width', /width must be a whole number from 8 to 1024, got 7/],
    [{ ...ok, width: 2048 }, 'width', /width must be a whole number from 8 to 1024, got 2048/],
    [{ ...ok, height: 'tall' }, 'height', /height must be a whole number from 8 to 1024/],
    [{ ...ok, width: 1024, height: 1024 }, 'width', /width × height is 1024×1024 = 1048576 px, over this server's 786432/],
    [{ ...ok, numImages: 0 }, 'numImages', /numImages must be a whole number from 1 to 4, got 0/],
    [{ ...ok, numImages: 5 }, 'numImages', /numImages must be a whole number from 1 to 4, got 5/],
    [{ ...ok, step: 20 }, 'step', /unknown field "step"; did you mean steps\?/],
    [{ ...ok, negative_prompt: 'x' }, 'negative_prompt', /unknown field "negative_prompt"/],
  ];
  for (const [body, field, message] of cases) refused(() => parseGenerationRequest(body, limits), field, message, JSON.stringify(body).slice(0, 80));
});

test('generation request: the image header check reads JPEG frame sizes (checked against sharp)', async () => {
  const meta = await sharp(JPEG).metadata();
  const tight = { ...limits, maxImagePixels: meta.width! * meta.height! };
  parseGenerationRequest({ prompt: 'x', image: JPEG.toString('base64') }, tight);
  refused(
    () => parseGenerationRequest({ prompt: 'x', image: JPEG.toString('base64') }, { ...tight, maxImagePixels: tight.maxImagePixels - 1 }),
    'image',
    new RegExp(`image is ${meta.width}×${meta.height} px, over`),
    'JPEG one pixel over',
  );
});

const unit = (extra: Record<string, unknown> = {}) => ({ alwayson_scripts: { controlnet: { args: [{ image: `data:image/png;base64,${png64}`, ...extra }] } } });

test('A1111 txt2img: the subset maps onto a GenerationRequest (ControlNet unit 0 is the control image)', () => {
  const r = parseA1111Txt2Img(
    {
      prompt: 'a bird',
      negative_prompt: 'blurry',
      steps: 20,
      cfg_scale: 6,
      seed: 42,
      width: 512,
      height: 384,
      sampler_name: 'DPM++ 2M',
      scheduler: 'Karras',
      batch_size: 2,
      n_iter: 1,
      restore_faces: false,
      send_images: true,
      ...unit({ module: 'canny', weight: 0.8, guidance_start: 0.1, guidance_end: 0.9, threshold_a: 50, threshold_b: 150, model: 'whatever [abc]', enabled: true, resize_mode: 'Just Resize' }),
    },
    limits,
  );
  assert.deepEqual(r, {
    prompt: 'a bird',
    negativePrompt: 'blurry',
    imageBase64: png64,
    canny: { low: 50, high: 150 },
    controlScale: 0.8,
    controlStart: 0.1,
    controlEnd: 0.9,
    steps: 20,
    guidanceScale: 6,
    scheduler: 'dpm++2m-karras',
    seed: '42',
    width: 512,
    height: 384,
    numImages: 2,
  });
  // module none: the image is the control image; -1 thresholds and seed: defaults and a random A1111-size seed
  const d = parseA1111Txt2Img({ prompt: 'x', seed: -1, ...unit({ module: 'none', threshold_a: -1 }) }, limits);
  assert.equal(d.canny, undefined);
  assert.ok(BigInt(d.seed) < 2n ** 32n);
  const { seed: _seed, ...rest } = d;
  assert.deepEqual(rest, { prompt: 'x', imageBase64: png64, controlScale: 1, controlStart: 0, controlEnd: 1, steps: 30, guidanceScale: 7.5, numImages: 1 });
  assert.deepEqual(parseA1111Txt2Img({ prompt: 'x', ...unit({ module: 'canny', threshold_a: -1, threshold_b: -1 }) }, limits).canny, { low: 100, high: 200 });
  assert.equal(parseA1111Txt2Img({ prompt: 'x', sampler_index: 'Euler', ...unit() }, limits).scheduler, 'euler');
  assert.equal(parseA1111Txt2Img({ prompt: 'x', sampler_name: 'DPM++ 2M Karras', scheduler: 'Karras', ...unit() }, limits).scheduler, 'dpm++2m-karras');
  // further units switched off are fine; the older input_image name too
  const two = { alwayson_scripts: { controlnet: { args: [{ input_image: png64 }, { enabled: false, image: 'ignored' }] } } };
  assert.equal(parseA1111Txt2Img({ prompt: 'x', ...two }, limits).imageBase64, png64);
});

test('A1111 txt2img: bad values name A1111\'s field paths', () => {
  const ok = { prompt: 'x', ...unit() };
  const u0 = 'alwayson_scripts.controlnet.args[0]';
  const cases: [unknown, string, RegExp][] = [
    [{ prompt: 'x' }, `${u0}.image`, /args\[0\]\.image is required: ControlNet-XS needs a control image/],
    [{ prompt: 'x', alwayson_scripts: { controlnet: { args: [] } } }, `${u0}.image`, /is required/],
    [{ prompt: 'x', alwayson_scripts: { adetailer: {} } }, 'alwayson_scripts.adetailer', /unknown field "alwayson_scripts\.adetailer"/],
    [{ prompt: 'x', ...unit({ image: 'nope!' }) }, `${u0}.image`, /args\[0\]\.image is not valid base64/],
    [{ prompt: 'x', ...unit({ image: { image: png64, mask: null } }) }, `${u0}.image`, /not an object with a mask/],
    [{ prompt: 'x', ...unit({ module: 'depth_midas' }) }, `${u0}.module`, /"depth_midas" is not supported/],
    [{ prompt: 'x', ...unit({ weight: 'strong' }) }, `${u0}.weight`, /args\[0\]\.weight must be a number/],
    [{ prompt: 'x', ...unit({ guidance_start: 2 }) }, `${u0}.guidance_start`, /must be a number from 0 to 1, got 2/],
    [{ prompt: 'x', ...unit({ guidance_start: 0.5, guidance_end: 0.5 }) }, `${u0}.guidance_start`, /must be below .*guidance_end/],
    [{ prompt: 'x', ...unit({ module: 'canny', threshold_a: 250, threshold_b: 100 }) }, `${u0}.threshold_a`, /\(250\) must not be above/],
    [{ prompt: 'x', ...unit({ enabled: false }) }, `${u0}.enabled`, /enabled is false/],
    [{ prompt: 'x', ...unit({ weigth: 1 }) }, `${u0}.weigth`, /did you mean weight\?/],
    [{ prompt: 'x', alwayson_scripts: { controlnet: { args: [{ image: png64 }, { image: png64 }] } } }, 'alwayson_scripts.controlnet.args[1]', /one ControlNet unit per request/],
    [{ ...ok, cfg_scale: 'x' }, 'cfg_scale', /cfg_scale must be a number/],
    [{ ...ok, steps: 500 }, 'steps', /steps must be a whole number from 1 to 50/],
    [{ ...ok, batch_size: 100 }, 'batch_size', /batch_size must be a whole number from 1 to 4/],
    [{ ...ok, n_iter: 2 }, 'n_iter', /n_iter must be a whole number from 1 to 1/],
    [{ ...ok, enable_hr: true }, 'enable_hr', /hires fix\) is not supported/],
    [{ ...ok, script_name: 'x/y/z plot' }, 'script_name', /scripts are not supported/],
    [{ ...ok, sampler_name: 'Eular a' }, 'sampler_name', /unknown sampler_name "Eular a"/],
    [{ ...ok, sampler_name: 'Euler', scheduler: 'Karras' }, 'sampler_name (with scheduler Karras)', /unknown sampler_name \(with scheduler Karras\) "Euler Karras"/],
    [{ ...ok, scheduler: 'Exponential' }, 'scheduler', /scheduler "Exponential" is not supported/],
    [{ ...ok, seed: -2 }, 'seed', /seed must be a whole number from 0/],
    [{ ...ok, width: 4 }, 'width', /width must be a whole number from 8 to 1024/],
    [{ ...ok, negative_prompt: 3 }, 'negative_prompt', /negative_prompt must be a string/],
    [{ ...ok, promt: 'x' }, 'promt', /unknown field "promt"; did you mean prompt\?/],
  ];
  for (const [body, field, message] of cases) refused(() => parseA1111Txt2Img(body, limits), field, message, JSON.stringify(body).slice(0, 80));
});

test('A1111 txt2img response: base64 PNGs, the request echoed, info as a JSON string with per-image seeds and infotexts', () => {
  const body = { prompt: 'a bird', steps: 4, seed: 9, batch_size: 2, ...unit() };
  const request = parseA1111Txt2Img(body, limits);
  const output: GenerationOutput = {
    images: [new Uint8Array(PNG), new Uint8Array(JPEG)],
    info: { parameters: ['p0', 'p1'], seeds: ['9', '10'], width: 64, height: 64, sampler: 'DDIM', device: 'cpu', nsfwContentDetected: null, seconds: 1.5 },
  };
  const r = a1111Response(body, request, output, new Date(2026, 0, 2, 3, 4, 5));
  assert.deepEqual(r.images.map((b) => Buffer.from(b, 'base64')), [PNG, JPEG]);
  assert.equal(r.parameters, body);
  assert.equal(typeof r.info, 'string');
  const info = JSON.parse(r.info) as Record<string, unknown>;
  assert.equal(info['prompt'], 'a bird');
  assert.deepEqual(info['all_prompts'], ['a bird', 'a bird']);
  assert.equal(info['negative_prompt'], '');
  assert.equal(info['seed'], 9);
  assert.deepEqual(info['all_seeds'], [9, 10]);
  assert.equal(info['width'], 64);
  assert.equal(info['sampler_name'], 'DDIM');
  assert.equal(info['cfg_scale'], 7.5);
  assert.equal(info['steps'], 4);
  assert.equal(info['batch_size'], 2);
  assert.deepEqual(info['infotexts'], ['p0', 'p1']);
  assert.equal(info['job_timestamp'], '20260102030405');
  // seeds JSON cannot hold exactly stay strings
  const big = a1111Response(body, request, { ...output, info: { ...output.info, seeds: ['18446744073709551615', '1'] } });
  assert.deepEqual((JSON.parse(big.info) as { all_seeds: unknown[] }).all_seeds, ['18446744073709551615', 1]);
});
