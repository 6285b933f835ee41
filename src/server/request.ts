/**
 * The body of `POST /v1/generations` → a GenerationRequest: every field checked (type, range, unknown
 * names with the closest known one, the image by its magic bytes and header size) before anything is
 * queued, defaults as `cnxs generate`'s, caps from the server's limits. What only the model can judge
 * (the size rounded to its multiple, steps beyond its scheduler) is the runner's, at run time.
 */
import { DEFAULT_CANNY } from '../generate/control.js';
import { randomSeed } from '../generate/seeds.js';
import { DEFAULT_SETTINGS } from '../generate/settings.js';
import type { GenerationRequest } from './jobs.js';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
import { checkControlWindow, readScheduler, readSize, seedFor } from './request-checks.js';
import { BadRequestError, FieldReader, readImage, readSeed } from './request-fields.js';

export { BadRequestError } from './request-fields.js';
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
export { a1111Response, parseA1111Txt2Img } from './a1111.js';

/** The fields `POST /v1/generations` reads (the OpenAPI schema lists the same). */
export const GENERATION_FIELDS = [
  'prompt',
  'negativePrompt',
  'image',
  'canny',
  'steps',
  'guidanceScale',
  'controlScale',
  'controlStart',
  'controlEnd',
  'scheduler',
  'seed',
  'width',
  'height',
  'numImages',
] as const;

export function parseGenerationRequest(body: unknown, limits: ServerLimits): GenerationRequest {
  const f = FieldReader.of(body, '');
  f.onlyKnown(GENERATION_FIELDS);
  const prompt = f.text('prompt');
  if (prompt === undefined) throw new BadRequestError('prompt', 'prompt is required (what to draw)');
  const negativePrompt = f.text('negativePrompt');
  const imageBase64 = readImage(f, 'image', limits.maxImagePixels ?? DEFAULT_LIMITS.maxImagePixels);
  const canny = readCanny(f.object('canny'));
  const scheduler = f.string('scheduler');
  const numImages = f.integer('numImages', { min: 1, max: limits.maxNumImages }) ?? DEFAULT_SETTINGS.numImages;
  const size = readSize(f, { width: 'width', height: 'height' }, limits);
  const controlStart = f.number('controlStart', { min: 0, max: 1 }) ?? DEFAULT_SETTINGS.controlStart;
  const controlEnd = f.number('controlEnd', { min: 0, max: 1 }) ?? DEFAULT_SETTINGS.controlEnd;
  checkControlWindow(controlStart, controlEnd, 'controlStart', 'controlEnd');
  return {
    prompt,
    ...(negativePrompt !== undefined ? { negativePrompt } : {}),
    imageBase64,
    ...(canny ? { canny } : {}),
    steps: f.integer('steps', { min: 1, max: limits.maxSteps }) ?? DEFAULT_SETTINGS.steps,
    guidanceScale: f.number('guidanceScale') ?? DEFAULT_SETTINGS.guidanceScale,
    controlScale: f.number('controlScale') ?? DEFAULT_SETTINGS.controlScale,
    controlStart,
    controlEnd,
    ...(scheduler !== undefined ? { scheduler: readScheduler(scheduler, 'scheduler') } : {}),
    seed: seedFor(readSeed(f, 'seed') ?? randomSeed(), numImages, 'seed').toString(),
    ...size,
    numImages,
  };
}

/** `canny: { low?, high? }`: OpenCV's hysteresis thresholds, low ≤ high (defaults as `cnxs generate --canny`). */
function readCanny(c: FieldReader | undefined): { low: number; high: number } | undefined {
  if (c === undefined) return undefined;
  c.onlyKnown(['low', 'high']);
  const low = c.number('low', { min: 0 }) ?? DEFAULT_CANNY.low;
  const high = c.number('high', { min: 0 }) ?? DEFAULT_CANNY.high;
  if (low > high) throw new BadRequestError(c.name('low'), `${c.name('low')} (${low}) must not be above ${c.name('high')} (${high})`);
  return { low, high };
}
