/** CLIP tokenizer: transformers' slow `CLIPTokenizer` (without ftfy) in TypeScript. */
export {
  CLIPTokenizer,
  type BatchEncoding,
  type DecodeOptions,
  type EncodeOptions,
  type Encoding,
  type FromPretrainedOptions,
  type PaddingStrategy,
} from './clip-tokenizer.js';
export { readTokenizerFiles, type CLIPTokenizerFiles } from './config.js';
export type { AddedToken } from './added-tokens.js';
