/** torch-compatible random numbers: the MT19937 engine, `Generator`, and randn/rand helpers. */
export { MT19937 } from './mt19937.js';
export {
  DEFAULT_SEED,
  Generator,
  rand,
  randn,
  randnTensor,
  type GeneratorOptions,
  type RandnTensorOptions,
  type RandomDType,
  type RandomOptions,
} from './generator.js';
