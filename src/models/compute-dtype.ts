/**
 * A model's compute dtype (diffusers' `torch_dtype`), checked when the model is created, before any
 * session opens: float16 only on execution providers with float16 kernels.
 */
import { ConfigError } from '../errors.js';
import type { ComputeDtype } from '../graph/builder.js';

export type { ComputeDtype } from '../graph/builder.js';

/**
 * Providers whose float16 kernels cover the ops these graphs use (Conv, MatMul, normalisations,
 * Softmax, Resize). onnxruntime's CPU provider has none for Conv/MatMul on x86: it inserts a Cast to
 * float32 and back around every such node, which is slower than float32 and no more accurate.
 */
const FLOAT16_PROVIDERS: ReadonlySet<string> = new Set(['webgpu', 'cuda', 'tensorrt', 'dml', 'coreml']);

/**
 * `dtype` of model `model` running on `executionProviders` (the first decides, as for the trace), or a
 * ConfigError naming the model, the dtype, the device and what to do instead.
 */
export function checkComputeDtype(model: string, dtype: unknown, executionProviders: readonly string[]): ComputeDtype {
  if (dtype === undefined || dtype === 'float32') return 'float32';
  const device = executionProviders[0] ?? 'cpu';
  if (dtype === 'float16') {
    if (FLOAT16_PROVIDERS.has(device)) return 'float16';
    // In a browser the GPU is WebGPU only, and float16 there needs the adapter's "shader-f16" feature, which
    // the runtime seam checks when a session opens (an adapter is only known asynchronously), before any weight is read.
    const gpu =
      device === 'wasm'
        ? 'device "webgpu" on an adapter with the "shader-f16" feature'
        : 'a GPU provider (device "webgpu" or "cuda", runtime.executionProviders ["webgpu"] or ["cuda"])';
    throw new ConfigError(
      `${model}: dtype "float16" on the "${device}" execution provider: it has no float16 convolution and matmul kernels ` +
        `(onnxruntime would cast every one back to float32, slower than float32). Use dtype "float32" there, or ${gpu}`,
    );
  }
  if (dtype === 'bfloat16') {
    throw new ConfigError(
      `${model}: dtype "bfloat16" is not supported: no onnxruntime-node 1.30 provider has bfloat16 kernels for these graphs ` +
        `(WebGPU's shading language has no bfloat16 type, the CPU none for Conv). Use "float16" on a GPU, or "float32"`,
    );
  }
  throw new ConfigError(`${model}: dtype ${JSON.stringify(dtype)} is not one of "float32", "float16"`);
}
