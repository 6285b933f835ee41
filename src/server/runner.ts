/**
 * A GenerationRunner on one loaded pipeline: the model loads once (as `cnxs generate` loads it) and
 * its sessions stay open between jobs (no model offload: a server runs many jobs). Each run makes what
 * `cnxs generate` makes with the same settings — the same size choice, seeds, scheduler and
 * `parameters` text, through the same generate/ code — as PNG bytes, with a preview per step. One job
 * at a time: the queue guarantees it, and an overlapping call is refused.
 */
import type { ComputeDtype } from '../models/compute-dtype.js';
import { ControlNetXSError } from '../errors.js';
import { checkModelSettings } from '../generate/checks.js';
import { loadControlImage } from '../generate/control.js';
import { latentToRgb, type LatentFamily } from '../generate/latent-preview.js';
import { loadGenerationPipeline } from '../generate/load.js';
import { a1111Parameters, checkParameters, type ParameterSettings } from '../generate/parameters.js';
import { encodePng } from '../generate/png.js';
import { generateImages } from '../generate/run.js';
import { namedScheduler, samplerLabel } from '../generate/scheduler.js';
import { imageSeeds } from '../generate/seeds.js';
import { DEFAULT_MAX_PIXELS, type GenerationSettings } from '../generate/settings.js';
import { chooseSize } from '../generate/size.js';
import { AutoencoderTiny } from '../models/autoencoder-tiny.js';
import type { PipelineStep } from '../pipelines/denoise.js';
import { previewImages } from '../pipelines/preview.js';
import type { Device } from '../pipelines/resolve.js';
import type { Scheduler } from '../schedulers/index.js';
import { Tensor } from '../tensor.js';
import type { GenerationOutput, GenerationRequest, GenerationRunner, RunOptions } from './jobs.js';

export interface PipelineRunnerOptions {
  /** Base model: Hub id, diffusers folder or single file. */
  model: string;
  /** ControlNet-XS adapter; default the published canny adapter of the model's family. */
  controlnet?: string;
  /** Configs for a single-file model. */
  config?: string;
  device?: Device;
  /** Compute dtype (diffusers' `torch_dtype`); float16 on GPU providers only. */
  dtype?: ComputeDtype;
  variant?: string;
  revision?: string;
  offline?: boolean;
  /** Optimized-graph cache folder; absent: none. */
  graphCacheDir?: string;
  /** TAESD (an AutoencoderTiny folder or Hub id) for previews; absent: the latent→RGB approximation. */
  previewVae?: string;
  /** Run the model's safety checker where it has one (default true). */
  safetyChecker?: boolean;
  /** The most pixels a generated image may have after rounding to the model's multiple (default 2048²). */
  maxPixels?: number;
  /** Warnings and notes, one line each (device fallback, a size rounded, a preview that failed). */
  warn?: (message: string) => void;
}

/** What `/readyz` shows about a runner. */
export interface RunnerDescription {
  model: string;
  controlnet: string;
  pipeline: string;
  /** Where the UNet runs ('cpu', 'cuda', …; the CPU after a fallback). */
  device: string;
  /** The model's own sampler (used when a request names none). */
  sampler: string;
  /** The model's resolution and the multiple sizes are rounded to. */
  defaultSize: number;
  sizeMultiple: number;
  preview: 'taesd' | 'latent-rgb';
  busy: boolean;
  jobsRun: number;
}

export interface PipelineRunner extends GenerationRunner {
  describe(): RunnerDescription;
  /** Release the sessions; later runs are refused. */
  close(): Promise<void>;
}

/** A second `run` while one is going: queues run one job at a time per runner. */
export class RunnerBusyError extends ControlNetXSError {}

/** Latent pixels a preview keeps at most per side (every s-th one): TAESD decodes 8× that, so a preview stays small and fast. */
const PREVIEW_LATENT_MAX = 64;

export async function createPipelineRunner(options: PipelineRunnerOptions): Promise<PipelineRunner> {
  const warn = options.warn ?? ((m: string) => console.warn(m));
  const loaded = await loadGenerationPipeline({
    model: options.model,
    controlnet: options.controlnet,
    config: options.config,
    variant: options.variant,
    revision: options.revision,
    offline: options.offline ?? false,
    graphCacheDir: options.graphCacheDir,
    device: options.device,
    dtype: options.dtype,
    safetyChecker: options.safetyChecker ?? true,
    warn,
  });
  const previewVae = options.previewVae
    ? await AutoencoderTiny.fromPretrained(options.previewVae, { warn, ...(options.offline ? { localFilesOnly: true } : {}) })
    : null;
  // open the UNet's session now: the first job does not pay for it, and a device fallback shows at start
  const device = await loaded.pipeline.unet.executionProvider();
  return new LoadedPipelineRunner(loaded, { ...options, warn }, previewVae, device);
}

type Loaded = Awaited<ReturnType<typeof loadGenerationPipeline>>;

class LoadedPipelineRunner implements PipelineRunner {
  private busy = false;
  private closed = false;
  private jobsRun = 0;
  /** The model's scheduler: a request's sampler is built from its config and never replaces it for good. */
  private readonly modelScheduler: Scheduler;
  private previewFailed = false;

  constructor(
    private readonly loaded: Loaded,
    private readonly options: PipelineRunnerOptions & { warn: (m: string) => void },
    private readonly previewVae: AutoencoderTiny | null,
    private readonly device: string,
  ) {
    this.modelScheduler = loaded.pipeline.scheduler;
  }

  describe(): RunnerDescription {
    const pipe = this.loaded.pipeline;
    return {
      model: this.options.model,
      controlnet: this.loaded.controlnetName,
      pipeline: pipe.constructor.name,
      device: this.device,
      sampler: samplerLabel(this.modelScheduler),
      defaultSize: pipe.sizeRules.defaultSize,
      sizeMultiple: pipe.sizeRules.multiple,
      preview: this.previewVae ? 'taesd' : 'latent-rgb',
      busy: this.busy,
      jobsRun: this.jobsRun,
    };
  }

  async run(request: GenerationRequest, options: RunOptions = {}): Promise<GenerationOutput> {
    if (this.closed) throw new RunnerBusyError('this runner is closed');
    if (this.busy) throw new RunnerBusyError('this runner is already running a job: a queue runs one job at a time per runner');
    this.busy = true;
    const pipe = this.loaded.pipeline;
    try {
      const settings: GenerationSettings & ParameterSettings = {
        prompt: request.prompt,
        negativePrompt: request.negativePrompt,
        steps: request.steps,
        guidanceScale: request.guidanceScale,
        controlScale: request.controlScale,
        controlStart: request.controlStart,
        controlEnd: request.controlEnd,
        seed: BigInt(request.seed),
        numImages: request.numImages,
        model: this.options.model,
      };
      checkParameters(settings);
      const control = await loadControlImage(Buffer.from(request.imageBase64, 'base64'), { canny: request.canny });
      // this run's sampler; the model's own is put back in `finally`, so no job sees another's
      pipe.scheduler = request.scheduler ? namedScheduler(this.modelScheduler, request.scheduler) : this.modelScheduler;
      const sampler = samplerLabel(pipe.scheduler);
      checkModelSettings(pipe, settings, this.options.model);
      const size = chooseSize(
        { width: request.width, height: request.height, maxPixels: this.options.maxPixels ?? DEFAULT_MAX_PIXELS },
        control,
        pipe.sizeRules,
        (m) => this.options.warn(m),
      );
      const seeds = imageSeeds(settings.seed, settings.numImages);
      const t0 = performance.now();
      const { images, nsfwContentDetected } = await generateImages(pipe, settings, {
        control,
        size,
        seeds,
        signal: options.signal,
        onStep: options.onProgress ? async (step) => options.onProgress!({ step: step.index + 1, total: step.total, ...(await this.preview(step)) }) : undefined,
      });
      const seconds = (performance.now() - t0) / 1000;
      const info = { sampler, width: size.width, height: size.height, controlnet: this.loaded.controlnetName };
      const parameters = seeds.map((seed) => a1111Parameters(settings, { ...info, seed }));
      const pngs = await Promise.all(images.map((img, i) => encodePng(img, parameters[i]!)));
      this.jobsRun++;
      return {
        images: pngs,
        info: {
          parameters,
          seeds: seeds.map(String),
          width: size.width,
          height: size.height,
          sampler,
          device: this.device,
          nsfwContentDetected,
          seconds,
        },
      };
    } finally {
      pipe.scheduler = this.modelScheduler;
      this.busy = false;
    }
  }

  /** A PNG of image 0's latents after this step; none once a preview has failed (warned once, the job goes on). */
  private async preview(step: PipelineStep): Promise<{ previewPng?: Uint8Array }> {
    if (this.previewFailed) return {};
    try {
      const [, c, h, w] = step.latents.dims as [number, number, number, number];
      const stride = Math.ceil(Math.max(h, w) / PREVIEW_LATENT_MAX);
      const latents = firstImageStrided(step.latents.data, c, h, w, stride);
      const image = this.previewVae
        ? (await previewImages(latents, { decoder: this.previewVae, outputType: 'pil' }))[0]!
        : latentToRgb(latents, this.family());
      return { previewPng: await image.toPNG() };
    } catch (e) {
      this.previewFailed = true;
      this.options.warn(`previews are off for this runner: ${(e as Error).message}`);
      return {};
    }
  }

  private family(): LatentFamily {
    return this.loaded.kind === 'sdxl' ? 'sdxl' : 'sd';
  }

  async close(): Promise<void> {
    this.closed = true;
    const pipe = this.loaded.pipeline;
    const models = [pipe.unet, pipe.vae, pipe.textEncoder, 'textEncoder2' in pipe ? pipe.textEncoder2 : null, 'safetyChecker' in pipe ? pipe.safetyChecker : null, this.previewVae];
    await Promise.all(models.map((m) => m?.release()));
  }
}

/** Image 0 of latents [B, c, h, w], every `stride`-th pixel of each row and column: [1, c, ⌈h/s⌉, ⌈w/s⌉]. */
function firstImageStrided(data: Float32Array, c: number, h: number, w: number, stride: number): Tensor<'float32'> {
  const ph = Math.ceil(h / stride);
  const pw = Math.ceil(w / stride);
  const out = new Float32Array(c * ph * pw);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < ph; y++) {
      for (let x = 0; x < pw; x++) out[(k * ph + y) * pw + x] = data[k * h * w + y * stride * w + x * stride]!;
    }
  }
  return new Tensor('float32', out, [1, c, ph, pw]);
}
