/**
 * controlnet-xs/web: the browser entry (bundled by scripts/build-web.mjs into dist/web/index.js,
 * next to onnxruntime-web's files). The same pipeline, model, scheduler and image classes as the
 * Node entry, loading models by URL (a static host, or a Hub repo's `https://huggingface.co/<id>/resolve/main`)
 * and running on onnxruntime-web ('wasm', or 'webgpu' where the browser has an adapter: without one, a
 * reported fallback to wasm). A model the browser cannot hold is a `BrowserLimitError` before its
 * weights are downloaded. Node-only
 * features (Hub cache, single files, LoRA / textual-inversion files, the graph cache, saving files)
 * throw `BrowserUnsupportedError` when used.
 */
export { Tensor, type DType, type TensorLike } from '../tensor.js';
export { ConfigError, ControlNetXSError, InputError, MissingWeightsError, RuntimeError, SafetensorsError, WeightLoadError } from '../errors.js';
export { BrowserUnsupportedError } from './node-only.js';
export { DownloadError, FILE_CACHE } from '../platform/files.browser.js';
export { loadSafetensors, SafetensorsFile, type TensorInfo } from '../weights/safetensors.js';
export { ModelSession, type RuntimeOptions } from '../runtime/session.js';
export { BrowserLimitError, MAX_WEIGHTS_FILE_BYTES, WASM_WEIGHTS_BUDGET } from '../runtime/onnxruntime.browser.js';
export type { DeviceFallback } from '../runtime/device-fallback.js';
export type { TraceOptions } from '../graph/builder.js';
export type { ModelRuntimeOptions } from '../models/traced-model.js';
export type { PretrainedOptions } from '../models/loading.js';
export { UNet2DConditionModel, type UNetForwardArgs } from '../models/unet-2d-condition.js';
export { ControlNetXSAdapter, type ControlNetXSAdapterConfig } from '../models/controlnet-xs-adapter.js';
export { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from '../models/unet-controlnet-xs.js';
export { CLIPTextModel, CLIPTextModelWithProjection } from '../models/clip-text-model.js';
export { AutoencoderKL } from '../models/autoencoder-kl.js';
export { AutoencoderTiny } from '../models/autoencoder-tiny.js';
export * from '../random/index.js';
export * from '../tokenizer/index.js';
export * from '../image/index.js';
export {
  StableDiffusionControlNetXSPipeline,
  type StableDiffusionControlNetXSCallArgs,
  type StableDiffusionControlNetXSComponents,
} from '../pipelines/stable-diffusion-controlnet-xs.js';
export {
  StableDiffusionXLControlNetXSPipeline,
  type StableDiffusionXLControlNetXSCallArgs,
  type StableDiffusionXLControlNetXSComponents,
} from '../pipelines/stable-diffusion-xl-controlnet-xs.js';
export type { PipelineImages, PipelineOutput, PipelineOutputType } from '../pipelines/output.js';
export type { PipelineStep } from '../pipelines/denoise.js';
export { previewImages, type PreviewOptions } from '../pipelines/preview.js';
export type { ControlImageInput } from '../pipelines/inputs.js';
export type { PipelineLoadOptions, Device } from '../pipelines/resolve.js';
export { checkImageSize, fitToAspect, roundSize, type ImageSize, type SizeRules } from '../pipelines/image-size.js';
export * from '../schedulers/index.js';
export { SCHEDULER_ALIASES, findSchedulerAlias, schedulerAlias, schedulerLabel, type SchedulerAlias } from '../schedulers/aliases.js';
