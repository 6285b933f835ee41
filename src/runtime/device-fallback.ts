/**
 * What the runtime seam reports when an execution provider asked for cannot run a model: which one,
 * why in a few words, what would fix it, and where the model runs instead. onnxruntime's own errors
 * are one long line of source paths and C++ signatures (about 400 characters); they stay in `detail`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { conciseError, firstLine } from './messages.js';

/** How to get onnxruntime-node's CUDA provider, as the README's GPU section says. */
export const CUDA_INSTALL_COMMAND = 'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js';

export interface DeviceFallback {
  /** The model's graph name (`UNetControlNetXSModel`, `CLIPTextModel`, …). */
  model: string;
  /** The execution provider asked for that is not running it (several, comma-separated, when they failed together). */
  requested: string;
  /** 'not-in-build': this onnxruntime-node build has no such provider; 'failed-to-start': it has, but it did not start here. */
  kind: 'not-in-build' | 'failed-to-start';
  /** Why, in one clause: "no WebGPU adapter found", "onnxruntime-node's CUDA libraries are not installed". */
  reason: string;
  /** What to do about it, as a sentence, when there is something to do (for CUDA: the install command). */
  hint?: string;
  /** The execution provider that runs the model instead ('cpu'). */
  running: string;
  /** onnxruntime's own message (first line), for a verbose log; empty when onnxruntime was not asked. */
  detail: string;
}

/**
 * The one-line notice for a fallback, as the seam's `warn` gets it when no `onDeviceFallback` is
 * given. With `model: ''` the line names no model (for one line covering a whole pipeline).
 */
export function formatDeviceFallback(f: DeviceFallback): string {
  const who = f.model ? `${f.model}: ` : '';
  const what = f.kind === 'not-in-build' ? `is ${f.reason}` : `is not available here (${f.reason})`;
  const where = f.running === 'cpu' ? 'the CPU' : f.running;
  return `${who}execution provider ${f.requested} ${what}; running on ${where}${f.hint ? `. ${f.hint}` : ''}`;
}

/** Reason and hint for a provider that onnxruntime could not start, from its error and the installed files. */
export function describeStartFailure(provider: string, error: unknown, binaryDir: string | null): Pick<DeviceFallback, 'reason' | 'hint' | 'detail'> {
  const detail = firstLine(error);
  if ((provider === 'cuda' || provider === 'tensorrt') && /Failed to load shared library/i.test(detail)) {
    // onnxruntime-node ships without its CUDA providers (they are downloaded by its install script); when they are
    // there, the library that failed is CUDA's or cuDNN's own (onnxruntime only logs which, in the error it throws).
    const lib = process.platform === 'win32' ? `onnxruntime_providers_${provider}.dll` : `libonnxruntime_providers_${provider}.so`;
    if (binaryDir !== null && !existsSync(join(binaryDir, lib))) {
      return provider === 'cuda'
        ? { reason: "onnxruntime-node's CUDA libraries are not installed", hint: `Install them with: ${CUDA_INSTALL_COMMAND}`, detail }
        : { reason: "onnxruntime-node's TensorRT libraries are not installed", detail };
    }
    return {
      reason: `its libraries did not load (${lib} needs CUDA 12 and cuDNN 9)`,
      hint: 'Check that the CUDA 12 and cuDNN 9 libraries are installed and on the library path',
      detail,
    };
  }
  const adapter = /Failed to get a WebGPU adapter: ?(.*)$/.exec(detail);
  if (provider === 'webgpu' && adapter) {
    const why = adapter[1]!.trim();
    return {
      reason: why === '' || /^no supported adapters$/i.test(why) ? 'no WebGPU adapter found' : `no WebGPU adapter (${why})`,
      ...(typeof process !== 'undefined' && process.platform === 'linux' ? { hint: "WebGPU runs on Vulkan here: it needs libvulkan.so.1 and the GPU's Vulkan driver" } : {}),
      detail,
    };
  }
  return { reason: conciseError(error), detail };
}
