/**
 * Loading the depth model of `cnxs depth` and `cnxs generate --depth`: the default model, one
 * device-fallback line, the CLI's graph cache.
 */
import { checkDepthInputSize } from '../image/dpt-image-processor.js';
import type { RGBImage } from '../image/rgb-image.js';
import { DepthEstimationPipeline } from '../pipelines/depth-estimation.js';
import type { Device } from '../pipelines/resolve.js';
import { formatDeviceFallback, type DeviceFallback } from '../runtime/device-fallback.js';
import { GraphCache } from '../runtime/graph-cache.js';

/**
 * The default depth model: Depth Anything V2 Small, Apache-2.0 (unlike its Base and Large siblings,
 * CC-BY-NC-4.0), 24.8M parameters: a 99 MB download, where Intel/dpt-hybrid-midas (122M) and
 * Intel/dpt-large (343M), the models diffusers' older depth examples use, are 5 and 14 times larger.
 */
export const DEFAULT_DEPTH_MODEL = 'depth-anything/Depth-Anything-V2-Small-hf';

/** Which depth model to load and how. */
export interface DepthModelOptions {
  model: string;
  revision?: string | undefined;
  offline?: boolean;
  device?: Device | undefined;
  /** Optimized-graph cache folder; null or absent: none. */
  graphCacheDir?: string | null | undefined;
  /** One line per notice (device fallback, library warnings). */
  warn: (message: string) => void;
}

/** The depth pipeline (processor + model) with one device-fallback line and the CLI's graph cache. */
export async function loadDepthPipeline(o: DepthModelOptions): Promise<DepthEstimationPipeline> {
  let fellBack = false;
  const onDeviceFallback = (f: DeviceFallback) => {
    if (!fellBack) o.warn(formatDeviceFallback(f));
    fellBack = true;
  };
  return DepthEstimationPipeline.fromPretrained(o.model, {
    ...(o.revision ? { revision: o.revision } : {}),
    ...(o.offline ? { localFilesOnly: true } : {}),
    ...(o.device && o.device !== 'cpu' ? { device: o.device } : {}),
    runtime: { onDeviceFallback, ...(o.graphCacheDir ? { graphCache: new GraphCache(o.graphCacheDir) } : {}) },
    warn: o.warn,
  });
}

/**
 * `cnxs generate --depth`: the photo's depth map as the control image, in R, G and B (diffusers' ControlNet
 * docs' stacked depth, and exactly what loading `cnxs depth`'s PNG gives). The depth model is released
 * before the generation pipeline loads.
 */
export async function depthControlFromPhoto(photo: RGBImage, o: DepthModelOptions): Promise<RGBImage> {
  checkDepthInputSize(photo.width, photo.height);
  const pipe = await loadDepthPipeline(o);
  try {
    return (await pipe.run(photo)).depth.toRGB();
  } finally {
    await pipe.release();
  }
}
