/**
 * StableDiffusionXLControlNetXSPipeline against diffusers 0.33.1: every case of
 * test/fixtures/tiny-sdxl-cnxs/pipeline — embeddings (both encoders, pooled, zeros for empty
 * negatives), add_time_ids, latents after every step and the final images.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { ConfigError, InputError } from '../src/errors.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { StableDiffusionControlNetXSPipeline } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline, type StableDiffusionXLControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { assertClose, fixture } from './helpers.js';
import { callArgs, readCases, tolerance, type PipelineCase } from './pipeline-cases.js';

const D = fixture('tiny-sdxl-cnxs');
const P = join(D, 'pipeline');
const { cases, read } = readCases(P);
const argsOf = (c: PipelineCase) => callArgs<StableDiffusionXLControlNetXSCallArgs>(c, P, read);

let pipe: StableDiffusionXLControlNetXSPipeline;
before(async () => {
  pipe = await StableDiffusionXLControlNetXSPipeline.fromPretrained(D, { controlnet: await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet')) });
});

describe('StableDiffusionXLControlNetXSPipeline equals diffusers', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const p = new StableDiffusionXLControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
      const args = argsOf(c);
      const T = (name: string) => read(c.tensors[name]!);
      const doCfg = (args.guidanceScale ?? 5) > 1;
      const emb = await p.encodePrompt(args, { numImagesPerPrompt: args.numImagesPerPrompt ?? 1, doClassifierFreeGuidance: doCfg });
      const embTol = tolerance(c, 'prompt_embeds', 1e-5);
      assertClose(emb.promptEmbeds, T('prompt_embeds'), embTol, 'prompt_embeds');
      assertClose(emb.pooledPromptEmbeds, T('pooled_prompt_embeds'), embTol, 'pooled_prompt_embeds');
      if (doCfg) {
        assertClose(emb.negativePromptEmbeds!, T('negative_prompt_embeds'), embTol, 'negative_prompt_embeds');
        assertClose(emb.negativePooledPromptEmbeds!, T('negative_pooled_prompt_embeds'), embTol, 'negative_pooled_prompt_embeds');
      }
      // add_time_ids as the UNet saw them at step 0
      let timeIds: Tensor | undefined;
      const unet = p.unet;
      const forward = unet.forward.bind(unet);
      unet.forward = async (a) => {
        timeIds ??= Tensor.from(a.addedCondKwargs!.timeIds);
        return forward(a);
      };
      const steps: Tensor<'float32'>[] = [];
      try {
        const out = await p.run({ ...args, callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents) });
        assertClose(timeIds!, T('unet_step0.added_cond.time_ids'), 0, 'add_time_ids');
        const each = T('latents_after_each_step');
        const per = each.data.length / each.dims[0]!;
        assert.equal(steps.length, each.dims[0]);
        steps.forEach((s, i) =>
          assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), tolerance(c, 'latents_final', 1e-4), `latents after step ${i}`),
        );
        assertClose(out.images as Tensor, T('images'), tolerance(c, 'images', 1e-4), 'images');
      } finally {
        unet.forward = forward;
      }
    });
  }
});

test('SD adapters and SDXL bases do not mix: named errors before any compute', async () => {
  const sdAdapter = await ControlNetXSAdapter.fromPretrained(fixture('tiny-sd-cnxs', 'controlnet'));
  await assert.rejects(
    StableDiffusionXLControlNetXSPipeline.fromPretrained(D, { controlnet: sdAdapter }),
    (e: Error) => e instanceof ConfigError && /block_out_channels/.test(e.message),
  );
  const sdxlUnet = await UNet2DConditionModel.fromPretrained(join(D, 'unet'));
  const xl = await ControlNetXSAdapter.fromPretrained(join(D, 'controlnet'));
  const sd = await StableDiffusionControlNetXSPipeline.fromPretrained(fixture('tiny-sd-cnxs'), { controlnet: await ControlNetXSAdapter.fromPretrained(fixture('tiny-sd-cnxs', 'controlnet')) });
  assert.throws(() => new StableDiffusionControlNetXSPipeline({ ...sd.components, unet: sdxlUnet, controlnet: xl }), (e: Error) => e instanceof InputError && /StableDiffusionXLControlNetXSPipeline/.test(e.message));
  assert.throws(() => new StableDiffusionXLControlNetXSPipeline({ ...pipe.components, unet: sd.unet }), /StableDiffusionControlNetXSPipeline/);
});

test('SDXL argument checks follow diffusers', async () => {
  const args = argsOf(cases[0]!);
  const { prompt: _prompt, ...noPrompt } = args;
  await assert.rejects(pipe.run({ ...noPrompt, promptEmbeds: Tensor.zeros([1, 77, 64]) }), /`pooledPromptEmbeds` also have to be passed/);
  await assert.rejects(pipe.run({ ...noPrompt, prompt2: 'x', promptEmbeds: Tensor.zeros([1, 77, 64]), pooledPromptEmbeds: Tensor.zeros([1, 32]) }), /both `prompt2` and `promptEmbeds`/);
  await assert.rejects(pipe.run({ ...args, negativePrompt: ['a', 'b'] }), /`negativePrompt` has batch size 2/);
});

test('callbackOnStepEndTensorInputs: the added conditioning as the UNet sees it, and its negative parts', async () => {
  const c = cases.find((x) => x.name === 'E_negative_micro_conditioning')!;
  const T = (name: string) => read(c.tensors[name]!);
  const p = new StableDiffusionXLControlNetXSPipeline({ ...pipe.components, scheduler: schedulerFromConfig(c.scheduler.config) });
  const seen: Record<string, Tensor>[] = [];
  await p.run({
    ...argsOf(c),
    outputType: 'latent',
    callbackOnStepEndTensorInputs: [...StableDiffusionXLControlNetXSPipeline.callbackTensorInputs],
    callbackOnStepEnd: (_p, _i, _t, tensors) => void seen.push({ ...tensors }),
  });
  const s = seen[0]!;
  const embTol = tolerance(c, 'prompt_embeds', 1e-5);
  assertClose(s['promptEmbeds']!, T('unet_step0.encoder_hidden_states'), embTol, 'promptEmbeds');
  assertClose(s['negativePromptEmbeds']!, T('negative_prompt_embeds'), embTol, 'negativePromptEmbeds');
  assertClose(s['addTextEmbeds']!, T('unet_step0.added_cond.text_embeds'), embTol, 'addTextEmbeds');
  assertClose(s['negativePooledPromptEmbeds']!, T('negative_pooled_prompt_embeds'), embTol, 'negativePooledPromptEmbeds');
  assertClose(s['addTimeIds']!, T('unet_step0.added_cond.time_ids'), 0, 'addTimeIds');
  const ids = T('unet_step0.added_cond.time_ids');
  assertClose(s['negativeAddTimeIds']!, new Tensor('float32', Float32Array.from(ids.data as Float32Array).subarray(0, 6), [1, 6]), 0, 'negativeAddTimeIds (row 0)');
  await assert.rejects(
    p.run({ ...argsOf(c), callbackOnStepEndTensorInputs: ['timestep' as 'latents'], callbackOnStepEnd: () => undefined }),
    (e: Error) => e instanceof InputError && /but found \[timestep\]/.test(e.message),
  );
});
