/**
 * Every fp32 case of the SD and SDXL pipeline references (test/fixtures), run on an execution
 * provider other than the CPU: prints, per case, the largest difference of the images from
 * diffusers' and the test suite's CPU tolerance, and where the UNet actually ran. For checking a
 * GPU (or Mesa's llvmpipe for WebGPU) without touching the test suite, which stays on the CPU.
 *
 *   npm run bench:device-parity -- [--device webgpu|cuda]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import type { Device } from '../src/pipelines/resolve.js';
import type { PipelineOutputType } from '../src/pipelines/output.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import type { Tensor } from '../src/tensor.js';
import { callArgs, readCases, tolerance } from '../test/pipeline-cases.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'webgpu' } } });
const device = values.device as Device;
const FIXTURES = join('test', 'fixtures');

type AnyPipeline = StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline;
const kinds = [
  { folder: 'tiny-sd-cnxs', load: StableDiffusionControlNetXSPipeline.fromPretrained, make: (c: object) => new StableDiffusionControlNetXSPipeline(c as never) },
  { folder: 'tiny-sdxl-cnxs', load: StableDiffusionXLControlNetXSPipeline.fromPretrained, make: (c: object) => new StableDiffusionXLControlNetXSPipeline(c as never) },
];

let worst = 0;
for (const kind of kinds) {
  const D = join(FIXTURES, kind.folder);
  const P = join(D, 'pipeline');
  const { cases, read } = readCases(P);
  const base: AnyPipeline = await kind.load(D, { device, controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet')) });
  console.log(`${kind.folder}: UNet on ${await base.unet.executionProvider()}`);
  for (const c of cases.filter((x) => x.load.variant !== 'fp16')) {
    const p = kind.make({ ...base.components, scheduler: schedulerFromConfig(c.scheduler.config) });
    // The case decides outputType at run time, so images is typed as any of the three outputs.
    const out = await p.run(callArgs<{ outputType?: PipelineOutputType }>(c, P, read));
    const [got, ref] = [(out.images as Tensor<'float32'>).data, read(c.tensors['images']!).data as Float32Array];
    const diff = got.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i]!)), 0);
    const tol = tolerance(c, 'images', 1e-4);
    worst = Math.max(worst, diff / tol);
    console.log(`  ${c.name.padEnd(32)} max diff ${diff.toExponential(2)}  CPU tolerance ${tol.toExponential(2)}  ${(diff / tol).toFixed(2)}×`);
  }
}
console.log(`worst: ${worst.toFixed(2)}× the CPU tolerance`);
