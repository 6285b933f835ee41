/**
 * controlnet-xs: ControlNet-XS for Stable Diffusion in TypeScript. diffusers-format checkpoints are
 * read straight from safetensors, traced into ONNX graphs and run on onnxruntime.
 */
export { Tensor, type DType, type TensorLike } from './tensor.js';
export {
  ConfigError,
  ControlNetXSError,
  InputError,
  MissingWeightsError,
  RuntimeError,
  SafetensorsError,
  SecurityError,
  TorchCheckpointError,
  WeightLoadError,
} from './errors.js';
export { loadSafetensors, SafetensorsFile, type TensorInfo } from './weights/safetensors.js';
export { WeightSource, weightShape, type WeightFile, type WeightRef, type WeightView } from './weights/source.js';
export { readWeightBytes } from './weights/view.js';
export { loadTorchCheckpoint, loadTorchObjectSync, TorchCheckpoint, TorchObject, type TorchCheckpointFormat, type TorchTensorInfo } from './weights/torch-archive.js';
export { ModelSession, type RuntimeOptions } from './runtime/session.js';
export { GraphCache } from './runtime/graph-cache.js';
export { CUDA_INSTALL_COMMAND, formatDeviceFallback, type DeviceFallback } from './runtime/device-fallback.js';
export type { TraceOptions } from './graph/builder.js';
export type { ModelLoraLayer, ModelRuntimeOptions } from './models/traced-model.js';
export type { PretrainedOptions } from './models/loading.js';
export { UNet2DConditionModel, type UNetForwardArgs, type UNetPretrainedOptions } from './models/unet-2d-condition.js';
export type { UNet2DConditionConfig } from './models/unet-2d-condition-config.js';
export { ControlNetXSAdapter, type ControlNetXSAdapterConfig } from './models/controlnet-xs-adapter.js';
export { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from './models/unet-controlnet-xs.js';
export { UNetWithSwitches, type FreeUSettings } from './models/unet-switches.js';
export {
  LoraError,
  LoraFormatError,
  LoraTargetError,
  checkLoraTargets,
  diffusersKey,
  fusedLoraModule,
  kohyaModule,
  loraDelta,
  loraFits,
  loraModelLayers,
  parseLoraFile,
  readLoraFile,
  type LoraComponent,
  type LoraFile,
  type LoraFileFormat,
  type LoraLayer,
  type LoraParseOptions,
} from './models/lora-file.js';
export type { UNetControlNetXSConfig } from './models/unet-controlnet-xs-config.js';
export { FUSION_RENAMES, fusedKey } from './models/controlnet-xs-fusion.js';
export {
  ADDED_TOKEN_EMBEDDINGS,
  CLIPTextModel,
  CLIPTextModelWithProjection,
  type CLIPTextForwardOptions,
  type CLIPTextModelOutput,
  type CLIPTextModelWithProjectionOutput,
  type CLIPTextPretrainedOptions,
} from './models/clip-text-model.js';
export type { CLIPTextConfig } from './models/clip-text-config.js';
export { AutoencoderKL, DiagonalGaussianDistribution, type AutoencoderKLPretrainedOptions, type VaeRunOptions } from './models/autoencoder-kl.js';
export type { AutoencoderKLConfig } from './models/autoencoder-kl-config.js';
export { AutoencoderTiny, type AutoencoderTinyPretrainedOptions } from './models/autoencoder-tiny.js';
export type { AutoencoderTinyConfig } from './models/autoencoder-tiny-config.js';
export {
  StableDiffusionSafetyChecker,
  nsfwDecision,
  type SafetyCheckerForwardArgs,
  type SafetyCheckerOutput,
  type SafetyCheckerPretrainedOptions,
  type SafetyScores,
} from './models/safety-checker.js';
export type { CLIPVisionConfig, SafetyCheckerConfig } from './models/safety-checker-config.js';
export { SingleFileComponentError, SingleFileConfigMismatchError, SingleFileError, UnknownArchitectureError } from './models/single-file/errors.js';
export type { SingleFileComponentOptions } from './models/single-file/component.js';
export type { CLIPTextSingleFileOptions } from './models/clip-text-model.js';
export { BUNDLED_CONFIGS, BUNDLED_HUB_IDS, type BundledConfig } from './models/single-file/configs.js';
export { openSingleFile } from './models/single-file/open.js';
export { inferModelType, inspectSingleFile, type SingleFileInspection } from './models/single-file/detect.js';
export * from './random/index.js';
export * from './tokenizer/index.js';
export * from './image/index.js';
export {
  StableDiffusionControlNetXSPipeline,
  type StableDiffusionControlNetXSCallArgs,
  type StableDiffusionControlNetXSComponents,
} from './pipelines/stable-diffusion-controlnet-xs.js';
export {
  StableDiffusionXLControlNetXSPipeline,
  type StableDiffusionXLControlNetXSCallArgs,
  type StableDiffusionXLControlNetXSComponents,
} from './pipelines/stable-diffusion-xl-controlnet-xs.js';
export type { PipelineImages, PipelineOutput, PipelineOutputType } from './pipelines/output.js';
export type { PipelineStep } from './pipelines/denoise.js';
export type { SingleFilePipelineOptions, SingleFileXLPipelineOptions } from './pipelines/single-file.js';
export { NSFW_WARNING, type SafetyCheckResult, type SafetyCheckerLoadOptions } from './pipelines/safety-checker.js';
export { guidanceScaleEmbedding } from './pipelines/guidance-embedding.js';
export type { FuseLoraOptions, LoadLoraWeightsOptions } from './pipelines/lora.js';
export {
  TextualInversionDimensionError,
  TextualInversionError,
  TextualInversionFormatError,
  TextualInversionTokenError,
  maybeConvertPrompt,
  type LoadTextualInversionOptions,
  type LoadedTextualInversion,
  type TextEncoderPair,
  type TextualInversionSource,
  type TextualInversionTensors,
  type UnloadTextualInversionOptions,
} from './pipelines/textual-inversion.js';
export { previewImages, type PreviewOptions } from './pipelines/preview.js';
export type { PipelineVae } from './pipelines/components.js';
export { SD_CALLBACK_TENSOR_INPUTS, SDXL_CALLBACK_TENSOR_INPUTS } from './pipelines/callbacks.js';
export type { CallbackTensors, SDCallbackTensorName, SDXLCallbackTensorName, StepCallback, StepCallbackResult } from './pipelines/callbacks.js';
export type { ControlImageInput } from './pipelines/inputs.js';
export type { PipelineLoadOptions, Device } from './pipelines/resolve.js';
export {
  DEFAULT_CONTROLNETS,
  DEFAULT_DEPTH_CONTROLNETS,
  loadControlNetXSPipeline,
  type ControlType,
  pipelineKind,
  type LoadControlNetXSPipelineOptions,
  type LoadedControlNetXSPipeline,
  type PipelineKind,
} from './pipelines/load.js';
export { checkImageSize, fitToAspect, roundSize, type ImageSize, type SizeRules } from './pipelines/image-size.js';
export * from './schedulers/index.js';
export { SCHEDULER_ALIASES, findSchedulerAlias, schedulerAlias, schedulerLabel, type SchedulerAlias } from './schedulers/aliases.js';
export { addPngText, checkPngText, readPngText } from './image/png-text.js';
export * from './hub/index.js';
export { loadDepthEstimationModel, depthModelType, DEPTH_MODEL_TYPES, type DepthEstimationModel, type DepthEstimationModelConfig, type DepthEstimationPretrainedOptions } from './models/depth-estimation.js';
export { DPTForDepthEstimation } from './models/dpt.js';
export { DepthAnythingForDepthEstimation } from './models/depth-anything.js';
export type { DPTConfig } from './models/dpt-config.js';
export type { DepthAnythingConfig } from './models/depth-anything-config.js';
export type { BitConfig, Dinov2Config } from './models/backbone-config.js';
export { DPTImageProcessor, parseDPTImageProcessorConfig, MAX_DEPTH_IMAGE_PIXELS, type DPTImageProcessorConfig } from './image/dpt-image-processor.js';
export { GrayImage } from './image/gray-image.js';
export { interpolateBicubic } from './image/torch-bicubic.js';
export {
  depthEstimation,
  DepthEstimationPipeline,
  defaultDepthProcessor,
  interpolateDepth,
  depthToImage,
  depthMinMax,
  depthControlImage,
  type DepthEstimationResult,
  type DepthEstimationOptions,
  type DepthEstimationPipelineOptions,
  type DepthImageInput,
} from './pipelines/depth-estimation.js';
export { chooseSize, type SizeSettings } from './generate/size.js';
export { SettingError, type SettingNames } from './generate/errors.js';
export { DEFAULT_SETTINGS, DEFAULT_MAX_PIXELS, MAX_STEPS, MAX_NUM_IMAGES, type GenerationSettings } from './generate/settings.js';
export { imageSeeds, seedGenerators, randomSeed, MAX_SEED } from './generate/seeds.js';
export { schedulerKey, schedulerKeys, namedScheduler, samplerLabel } from './generate/scheduler.js';
export { a1111Parameters, checkParameters, type ParameterSettings, type ParameterInfo } from './generate/parameters.js';
export { loadControlImage, DEFAULT_CANNY, type CannyThresholds } from './generate/control.js';
export { encodePng, writePng } from './generate/png.js';
export { loadGenerationPipeline, type GenerationPipelineOptions, type GenerationPipeline } from './generate/load.js';
export { checkModelSettings } from './generate/checks.js';
export { generateImages, type GenerateImagesOptions, type GeneratedImages } from './generate/run.js';
export { latentToRgb, LATENT_RGB, type LatentFamily } from './generate/latent-preview.js';
export { NonFiniteOutputError, firstNonFinite, type NonFiniteOutput } from './models/non-finite.js';
export { checkComputeDtype, type ComputeDtype } from './models/compute-dtype.js';
export type { AttentionUpcast } from './graph/builder.js';
export type { AdapterDtypeOption } from './models/controlnet-xs-adapter.js';
