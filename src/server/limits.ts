/** What one request may ask of a server: sizes, steps, images, queue length, body size. */
import { DEFAULT_MAX_PIXELS, MAX_STEPS } from '../generate/settings.js';

export interface ServerLimits {
  /** Generated image width and height, pixels. */
  maxWidth: number;
  maxHeight: number;
  /** width × height of a generated image (also after the model's rounding). */
  maxPixels: number;
  maxSteps: number;
  /** Images per request (`numImages`, A1111's `batch_size`). */
  maxNumImages: number;
  /** Jobs waiting (running ones not counted) before `submit` answers QueueFullError. */
  maxQueue: number;
  /** A request body, bytes (a base64 image is 4/3 of its file). */
  maxBodyBytes: number;
  /** The control image's own width × height, read from its header before it is decoded; default 8192². */
  maxImagePixels?: number;
}

export const DEFAULT_LIMITS: Readonly<Required<ServerLimits>> = Object.freeze({
  maxWidth: 2048,
  maxHeight: 2048,
  maxPixels: DEFAULT_MAX_PIXELS,
  // A1111's steps slider ends at 150; past it a request holds the worker for long with no visible gain
  maxSteps: Math.min(150, MAX_STEPS),
  maxNumImages: 8,
  maxQueue: 64,
  maxBodyBytes: 32 * 1024 * 1024,
  // 8192² RGB is 200 MB decoded: larger control images are refused before decoding
  maxImagePixels: 8192 * 8192,
});
