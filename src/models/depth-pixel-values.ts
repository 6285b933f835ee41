/**
 * The input check both depth models (`DPTForDepthEstimation`, `DepthAnythingForDepthEstimation`) make
 * in `forward` before their session runs: everything a bad `pixel_values` could be, named, up front.
 */
import { InputError } from '../errors.js';
import { expectFloat32, type Tensor, type TensorLike } from '../tensor.js';
import { assertFinite } from './traced-model.js';

/**
 * `pixel_values` as a depth model takes it: float32 [B ≥ 1, `channels`, H, W], every value finite, and
 * H × W a size `checkInputSize` (the model's own rule) accepts. Returns it as a float32 tensor.
 */
export function checkPixelValues(pixelValues: TensorLike, channels: number, checkInputSize: (height: number, width: number) => void): Tensor<'float32'> {
  const x = expectFloat32('pixel_values', pixelValues, [null, channels, null, null]);
  if (x.dims[0]! < 1) throw new InputError('pixel_values must hold at least one image');
  checkInputSize(x.dims[2]!, x.dims[3]!);
  assertFinite('pixel_values', x);
  return x;
}
