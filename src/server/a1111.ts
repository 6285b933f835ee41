/**
 * AUTOMATIC1111's `POST /sdapi/v1/txt2img`, the subset a ControlNet-XS server can honour: the body →
 * a GenerationRequest (errors name A1111's field paths), and the output → A1111's response
 * `{ images, parameters, info }`. The control image comes as A1111's ControlNet extension sends it, in
 * `alwayson_scripts.controlnet.args[0]`. Absent fields take `cnxs generate`'s defaults (the API's
 * own); A1111 fields that change nothing here are accepted and ignored, and those that would change
 * the result in ways this server cannot (hires fix, several batches, scripts) are refused.
 */
import { randomInt } from 'node:crypto';
import { DEFAULT_CANNY } from '../generate/control.js';
import { DEFAULT_SETTINGS } from '../generate/settings.js';
import type { GenerationOutput, GenerationRequest } from './jobs.js';
import { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
import { checkControlWindow, readScheduler, readSize, seedFor } from './request-checks.js';
import { BadRequestError, FieldReader, readImage, readSeed, show } from './request-fields.js';

/** Fields this server reads. */
const USED = ['prompt', 'negative_prompt', 'steps', 'cfg_scale', 'seed', 'width', 'height', 'sampler_name', 'sampler_index', 'scheduler', 'batch_size', 'n_iter', 'enable_hr', 'script_name', 'alwayson_scripts'];
/** A1111's other txt2img fields: accepted, no effect here (saving, face restoration off, sampler noise knobs, …). */
const IGNORED = [
  'styles', 'subseed', 'subseed_strength', 'seed_resize_from_h', 'seed_resize_from_w', 'restore_faces', 'tiling',
  'do_not_save_samples', 'do_not_save_grid', 'eta', 's_min_uncond', 's_churn', 's_tmax', 's_tmin', 's_noise',
  'override_settings', 'override_settings_restore_afterwards', 'refiner_checkpoint', 'refiner_switch_at',
  'disable_extra_networks', 'comments', 'script_args', 'send_images', 'save_images', 'infotext', 'force_task_id',
  'denoising_strength', 'firstphase_width', 'firstphase_height', 'hr_scale', 'hr_upscaler', 'hr_second_pass_steps',
  'hr_resize_x', 'hr_resize_y', 'hr_checkpoint_name', 'hr_sampler_name', 'hr_scheduler', 'hr_prompt', 'hr_negative_prompt',
  'hr_additional_modules', 'firstpass_image', 'sampler', 'model',
];
/** The ControlNet extension's unit fields this server reads, and those it ignores (model choice, resizing, memory modes, …). */
const UNIT_USED = ['image', 'input_image', 'module', 'weight', 'guidance_start', 'guidance_end', 'threshold_a', 'threshold_b', 'enabled'];
const UNIT_IGNORED = [
  'model', 'resize_mode', 'lowvram', 'low_vram', 'processor_res', 'pixel_perfect', 'control_mode', 'guess_mode',
  'mask', 'mask_image', 'save_detected_map', 'hr_option', 'effective_region_mask', 'input_mode', 'batch_images',
];
/** A1111 1.9's separate schedule names that map onto a sampler here; 'Automatic' means the sampler's own. */
const SCHEDULE_SUFFIX: Readonly<Record<string, string>> = { Automatic: '', Karras: ' Karras' };

export function parseA1111Txt2Img(body: unknown, limits: ServerLimits): GenerationRequest {
  const f = FieldReader.of(body, '');
  f.onlyKnown([...USED, ...IGNORED]);
  f.integer('n_iter', { min: 1, max: 1 }); // one batch of batch_size images per request
  if (f.boolean('enable_hr') === true) throw new BadRequestError('enable_hr', 'enable_hr (hires fix) is not supported by this server: send false or leave it out');
  const script = f.string('script_name');
  if (script) throw new BadRequestError('script_name', `script_name ${show(script)}: scripts are not supported by this server`);

  const unit = controlNetUnit(f, limits.maxImagePixels ?? DEFAULT_LIMITS.maxImagePixels);
  const prompt = f.text('prompt') ?? '';
  const negativePrompt = f.text('negative_prompt');
  const numImages = f.integer('batch_size', { min: 1, max: limits.maxNumImages }) ?? DEFAULT_SETTINGS.numImages;
  const sampler = readSampler(f);
  // −1: random, as A1111; its random seeds are below 2^32, which keeps them exact as JSON numbers in `info`
  const given = f.raw('seed') === -1 ? undefined : readSeed(f, 'seed');
  const seed = seedFor(given ?? BigInt(randomInt(2 ** 32 - 1)), numImages, 'seed');
  return {
    prompt,
    ...(negativePrompt ? { negativePrompt } : {}),
    ...unit,
    steps: f.integer('steps', { min: 1, max: limits.maxSteps }) ?? DEFAULT_SETTINGS.steps,
    guidanceScale: f.number('cfg_scale') ?? DEFAULT_SETTINGS.guidanceScale,
    ...(sampler !== undefined ? { scheduler: sampler } : {}),
    seed: seed.toString(),
    ...readSize(f, { width: 'width', height: 'height' }, limits),
    numImages,
  };
}

/** `sampler_name` (or the older `sampler_index`) with A1111 1.9's `scheduler` → an alias key. */
function readSampler(f: FieldReader): string | undefined {
  const key = f.has('sampler_name') ? 'sampler_name' : 'sampler_index';
  const name = f.string(key);
  const schedule = f.string('scheduler');
  if (schedule !== undefined && SCHEDULE_SUFFIX[schedule] === undefined) {
    throw new BadRequestError('scheduler', `scheduler ${show(schedule)} is not supported by this server; use ${Object.keys(SCHEDULE_SUFFIX).join(' or ')}, or a sampler_name that includes it`);
  }
  if (name === undefined || name === '') return undefined;
  const suffix = schedule === undefined ? '' : SCHEDULE_SUFFIX[schedule]!;
  const full = name.endsWith(suffix) ? name : `${name}${suffix}`;
  return readScheduler(full, suffix && full !== name ? `${key} (with scheduler ${schedule})` : key);
}

type UnitFields = Pick<GenerationRequest, 'imageBase64' | 'canny' | 'controlScale' | 'controlStart' | 'controlEnd'>;

/** `alwayson_scripts.controlnet.args[0]`: the one ControlNet unit, whose image is the control image. */
function controlNetUnit(f: FieldReader, maxImagePixels: number): UnitFields {
  const scripts = f.object('alwayson_scripts');
  const needed = 'alwayson_scripts.controlnet.args[0].image';
  if (scripts === undefined) throw new BadRequestError(needed, `${needed} is required: ControlNet-XS needs a control image`);
  scripts.onlyKnown(['controlnet']);
  const cn = scripts.object('controlnet');
  if (cn === undefined) throw new BadRequestError(needed, `${needed} is required: ControlNet-XS needs a control image`);
  cn.onlyKnown(['args']);
  const args = cn.array('args') ?? [];
  if (args.length === 0) throw new BadRequestError(needed, `${needed} is required: ControlNet-XS needs a control image`);
  const units = args.map((a, i) => FieldReader.of(a, `${cn.name('args')}[${i}]`));
  const extra = units.slice(1).findIndex((u) => u.boolean('enabled') !== false);
  if (extra >= 0) throw new BadRequestError(`${cn.name('args')}[${extra + 1}]`, `${cn.name('args')}[${extra + 1}]: one ControlNet unit per request (disable the others with "enabled": false)`);
  const u = units[0]!;
  u.onlyKnown([...UNIT_USED, ...UNIT_IGNORED]);
  if (u.boolean('enabled') === false) throw new BadRequestError(u.name('enabled'), `${u.name('enabled')} is false: ControlNet-XS always runs with its control image`);
  const imageKey = u.has('image') || !u.has('input_image') ? 'image' : 'input_image';
  if (typeof u.raw(imageKey) === 'object' && u.raw(imageKey) !== null) {
    throw new BadRequestError(u.name(imageKey), `${u.name(imageKey)} must be the image itself (base64 or a data URL), not an object with a mask`);
  }
  const imageBase64 = readImage(u, imageKey, maxImagePixels);
  const module = u.string('module') ?? 'none';
  if (module !== 'canny' && module.toLowerCase() !== 'none') {
    throw new BadRequestError(u.name('module'), `${u.name('module')} ${show(module)} is not supported: "canny" (edges computed here) or "none" (the image is the control image)`);
  }
  // the extension sends −1 for "the preprocessor's default"
  const threshold = (key: string, fallback: number) => (u.raw(key) === -1 ? fallback : (u.number(key, { min: 0 }) ?? fallback));
  const low = threshold('threshold_a', DEFAULT_CANNY.low);
  const high = threshold('threshold_b', DEFAULT_CANNY.high);
  if (module === 'canny' && low > high) throw new BadRequestError(u.name('threshold_a'), `${u.name('threshold_a')} (${low}) must not be above ${u.name('threshold_b')} (${high})`);
  const controlStart = u.number('guidance_start', { min: 0, max: 1 }) ?? DEFAULT_SETTINGS.controlStart;
  const controlEnd = u.number('guidance_end', { min: 0, max: 1 }) ?? DEFAULT_SETTINGS.controlEnd;
  checkControlWindow(controlStart, controlEnd, u.name('guidance_start'), u.name('guidance_end'));
  return {
    imageBase64,
    ...(module === 'canny' ? { canny: { low, high } } : {}),
    controlScale: u.number('weight') ?? DEFAULT_SETTINGS.controlScale,
    controlStart,
    controlEnd,
  };
}

/** A seed as A1111's JSON has it: a number while exact, else its decimal string. */
function jsonSeed(s: string): number | string {
  return BigInt(s) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

/** `YYYYMMDDhhmmss` in local time, A1111's job timestamp. */
function jobTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/**
 * A1111's txt2img response: `images` (base64 PNGs, each with its `parameters` chunk), `parameters`
 * (the request as sent) and `info` (a JSON string, as A1111 returns it) with the fields A1111 clients
 * read: prompts and seeds per image, size, sampler, CFG scale, steps, batch size and each image's
 * infotext. Fields about A1111 features that do not run here have their "off" values.
 */
export function a1111Response(body: unknown, request: GenerationRequest, output: GenerationOutput, now = new Date()): { images: string[]; parameters: unknown; info: string } {
  const { info } = output;
  const n = output.images.length;
  const seeds = info.seeds.map(jsonSeed);
  const negative = request.negativePrompt ?? '';
  const record = {
    prompt: request.prompt,
    all_prompts: Array<string>(n).fill(request.prompt),
    negative_prompt: negative,
    all_negative_prompts: Array<string>(n).fill(negative),
    seed: seeds[0] ?? jsonSeed(request.seed),
    all_seeds: seeds,
    subseed: -1,
    all_subseeds: Array<number>(n).fill(-1),
    subseed_strength: 0,
    width: info.width,
    height: info.height,
    sampler_name: info.sampler,
    cfg_scale: request.guidanceScale,
    steps: request.steps,
    batch_size: n,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: null,
    sd_model_hash: null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: null,
    extra_generation_params: {
      'Control scale': request.controlScale,
      ...(request.controlStart !== 0 || request.controlEnd !== 1 ? { 'Control window': `${request.controlStart}-${request.controlEnd}` } : {}),
    },
    index_of_first_image: 0,
    infotexts: info.parameters,
    styles: [],
    job_timestamp: jobTimestamp(now),
    clip_skip: 1,
    is_using_inpainting_conditioning: false,
  };
  return {
    images: output.images.map((png) => Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64')),
    parameters: body,
    info: JSON.stringify(record),
  };
}
