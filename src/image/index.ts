/** Image I/O and processing: loading, Pillow-exact resizing, VaeImageProcessor, CLIPImageProcessor, OpenCV-exact Canny. */
export { RGBImage, type ImageFormat } from './rgb-image.js';
export { loadImage } from './load.js';
export { resizeImage, type ResampleFilter } from './resample.js';
export { floatToByte, nchwToNhwc, pilToTensor, roundHalfEven, tensorToImages } from './convert.js';
export {
  VaeImageProcessor,
  type OutputType,
  type PostprocessOptions,
  type SizeOptions,
  type VaeImageProcessorOptions,
} from './processor.js';
export { canny, type CannyOptions } from './canny.js';
export {
  CLIPImageProcessor,
  parseCLIPImageProcessorConfig,
  type CLIPImageProcessorConfig,
  type CLIPResizeTarget,
} from './clip-image-processor.js';
