/**
 * `POST /v1/canny` `{ image, low?, high? }` → the edge map as PNG: the UI's preview of what a generation
 * with `canny` will feed the adapter (the same OpenCV-exact Canny, thresholds as `cnxs canny`). Runs in
 * the API process, so its size is held to a pixel cap read from the image header before decoding.
 */
import { InputError } from '../errors.js';
import { DEFAULT_CANNY } from '../generate/control.js';
import { canny } from '../image/canny.js';
import { loadImage } from '../image/load.js';
import { readJson, sendBytes } from './http-io.js';
import { DEFAULT_LIMITS } from './limits.js';
import { BadRequestError, FieldReader, readImage } from './request-fields.js';
import type { Route, RouteRequest } from './route.js';

/** 4096 × 4096: Canny on that takes about a second on one core; past it a preview is not worth the CPU. */
export const MAX_CANNY_PIXELS = 4096 * 4096;

async function cannyPreview({ req, res, server }: RouteRequest): Promise<void> {
  const f = FieldReader.of(await readJson(req, server.limits.maxBodyBytes), '');
  f.onlyKnown(['image', 'low', 'high']);
  const cap = Math.min(MAX_CANNY_PIXELS, server.limits.maxImagePixels ?? DEFAULT_LIMITS.maxImagePixels);
  const bytes = Buffer.from(readImage(f, 'image', cap), 'base64');
  const low = f.number('low', { min: 0, max: 100_000 }) ?? DEFAULT_CANNY.low;
  const high = f.number('high', { min: 0, max: 100_000 }) ?? DEFAULT_CANNY.high;
  if (low > high) throw new BadRequestError('low', `low (${low}) must not be above high (${high})`);
  let image;
  try {
    image = await loadImage(bytes);
  } catch (e) {
    // the header was fine but the data is not (truncated, corrupt)
    if (e instanceof InputError) throw new BadRequestError('image', `image: ${e.message}`);
    throw e;
  }
  sendBytes(res, 200, await canny(image, { low, high }).toPNG(), 'image/png', { 'cache-control': 'no-store' });
}

export const CANNY_ROUTES: readonly Route[] = [{ method: 'POST', path: '/v1/canny', auth: true, handle: cannyPreview }];
