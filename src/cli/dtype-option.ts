/** `--dtype`: the compute dtype of every model (diffusers' `torch_dtype`), shared by generate, serve and worker. */
import type { ComputeDtype } from '../models/compute-dtype.js';
import type { OptionSpec } from './options.js';
import { UsageError, didYouMean } from './usage.js';

const DTYPES: readonly ComputeDtype[] = ['float32', 'float16'];

export const DTYPE_OPTION: OptionSpec = {
  name: 'dtype',
  value: DTYPES.join('|'),
  help: 'compute dtype (default float32; float16 needs --device webgpu or cuda: the CPU has no fp16 kernels)',
};

/** The dtype asked for, checked against the device before anything loads (absent: float32). */
export function parseDtype(value: string | undefined, device: string | undefined): ComputeDtype | undefined {
  if (value === undefined) return undefined;
  if (!DTYPES.includes(value as ComputeDtype)) throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got "${value}"${didYouMean(value, DTYPES)}`);
  if (value === 'float16' && (device ?? 'cpu') === 'cpu') {
    throw new UsageError('--dtype float16 needs --device webgpu or cuda: the CPU has no float16 convolution kernels (onnxruntime would cast everything back to float32)');
  }
  return value as ComputeDtype;
}
