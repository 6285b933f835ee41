/** Steps 3, 4 and 6 both pipelines share: prompt tokens, the control image and the initial latents. */
import { InputError } from '../errors.js';
import type { VaeImageProcessor } from '../image/processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import { Generator, randnTensor } from '../random/index.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import type { CLIPTokenizer } from '../tokenizer/index.js';
import { catBatch, repeatInterleave, scale } from './batch.js';

/** Tokenize to `maxLength` with truncation, warning about what was cut (diffusers' message). */
export function tokenizeTruncating(
  tokenizer: CLIPTokenizer,
  text: string | readonly string[],
  o: { maxLength?: number; warn?: (message: string) => void } = {},
): Tensor<'int64'> {
  const texts = typeof text === 'string' ? [text] : text;
  const maxLength = o.maxLength ?? tokenizer.modelMaxLength;
  if (o.warn) {
    for (const t of texts) {
      const full = tokenizer.encode(t).inputIds;
      if (full.length > maxLength) {
        const removed = tokenizer.decode(full.slice(maxLength - 1, -1));
        o.warn(`The following part of your input was truncated because CLIP can only handle sequences up to ${maxLength} tokens: ${removed}`);
      }
    }
  }
  return tokenizer.call(texts, { padding: 'max_length', maxLength, truncation: true }).inputIds;
}

/** The negative side of CFG: "" per prompt, or the given negative prompt(s), checked against the prompt. */
export function uncondTokens(prompt: string | string[] | undefined, negative: string | string[] | undefined, batchSize: number): string[] {
  if (negative === undefined) return Array(batchSize).fill('');
  if (prompt !== undefined && typeof prompt !== typeof negative) {
    throw new InputError(`\`negativePrompt\` should be the same type to \`prompt\`, but got ${typeof negative} != ${typeof prompt}.`);
  }
  if (typeof negative === 'string') return [negative];
  if (negative.length !== batchSize) {
    throw new InputError(
      `\`negativePrompt\` has batch size ${negative.length}, but \`prompt\` has batch size ${batchSize}. Please make sure that passed \`negativePrompt\` matches the batch size of \`prompt\`.`,
    );
  }
  return [...negative];
}

/** `list[-k]` with a named error when k is out of range. */
export function pickFromEnd<T>(list: readonly T[], k: number, name: string): T {
  if (!Number.isInteger(k) || k < 1 || k > list.length) throw new InputError(`${name} must be between 0 and ${list.length - 1}, got ${k - 1}`);
  return list[list.length - k]!;
}

export interface PrepareImageOptions {
  height?: number;
  width?: number;
  batchSize: number;
  numImagesPerPrompt: number;
  doClassifierFreeGuidance: boolean;
}

/** Control image → [B·N(·2), 3, H, W] in [0, 1], rows repeated for the batch and for CFG. */
export function prepareControlImage(processor: VaeImageProcessor, image: RGBImage[] | TensorLike, o: PrepareImageOptions): Tensor<'float32'> {
  const size = { ...(o.height !== undefined ? { height: o.height } : {}), ...(o.width !== undefined ? { width: o.width } : {}) };
  const t = processor.preprocess(image, size);
  const repeated = repeatInterleave(t, t.dims[0] === 1 ? o.batchSize : o.numImagesPerPrompt);
  return o.doClassifierFreeGuidance ? catBatch([repeated, repeated]) : repeated;
}

/** Initial latents: given (checked against `shape`) or drawn with `randnTensor`, times the run's init noise sigma. */
export function prepareLatents(shape: number[], generator: Generator | Generator[], latents: TensorLike | undefined, initNoiseSigma: number): Tensor<'float32'> {
  const batch = shape[0]!;
  if (Array.isArray(generator) && generator.length !== batch) {
    throw new InputError(
      `You have passed a list of generators of length ${generator.length}, but requested an effective batch size of ${batch}. Make sure the batch size matches the length of the generators.`,
    );
  }
  const noise = latents ? expectFloat32('latents', latents, shape) : randnTensor(shape, { generator });
  return scale(noise, initNoiseSigma);
}

/** A generator seeded from the OS when the caller gave none (diffusers then uses torch's global RNG). */
export function defaultGenerator(): Generator {
  return new Generator().manualSeed(crypto.getRandomValues(new BigUint64Array(1))[0]!); // Web Crypto: Node and browsers alike
}
