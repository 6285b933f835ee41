/**
 * LoRA on both ControlNet-XS pipelines against diffusers 0.33.1 (test/fixtures/adapters/lora, cases
 * `pipe.sd.lora_*`, `pipe.sd.two_adapters`, `pipe.xl.lora_*`): loadLoraWeights from folders and files in
 * every format, setAdapters weights, crossAttentionKwargs.scale on the UNet and the text encoders alike; the
 * latents after every step and the images. Then the adapter bookkeeping and failed loads.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { copyFileSync, mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { LoraError, LoraFormatError, LoraTargetError } from '../src/models/lora-file.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline, type StableDiffusionXLControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture, maxAbsDiff, tempDir } from './helpers.js';
import { callArgs, readCases, type PipelineCase } from './pipeline-cases.js';

const DIR = fixture('adapters', 'lora');
const SD = fixture('tiny-sd-cnxs');
const XL = fixture('tiny-sdxl-cnxs');
const { cases, read } = readCases(DIR);
interface LoraRecipe { adapters: { path: string; weight_name: string; adapter_name: string }[]; adapter_weights: number[] | null; scale: number }
/** A case's LoRA recipe; the `pipe.*.base` cases (no adapter: the reference for the effect sizes) have none. */
const recipeOf = (c: PipelineCase): LoraRecipe => (c as unknown as { recipe: { lora?: LoraRecipe | null } }).recipe.lora ?? { adapters: [], adapter_weights: null, scale: 1 };
const all = cases.filter((c) => (c as unknown as { kind: string }).kind === 'pipeline');
/** The combined LoRA + textual inversion + FreeU case and the UNet-only (fuse_lora) cases have tests of their own. */
const pipelineCases = all.filter((c) => !c.name.includes('+') && !c.name.endsWith('unet_only'));
const byName = (n: string) => all.find((c) => c.name === n)!;
/** The cases' paths are relative to the reference's adapters/ (`lora/sd/…`); the files sit in adapters/lora/. */
const local = (p: string) => join(DIR, p.replace(/^lora\/?/, ''));

type AnyPipeline = StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline;
let sd: StableDiffusionControlNetXSPipeline, xl: StableDiffusionXLControlNetXSPipeline;
before(async () => {
  const sdCase = byName('pipe.sd.lora_a.s1'), xlCase = byName('pipe.xl.lora_kohya.s1');
  const a = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')) });
  sd = new StableDiffusionControlNetXSPipeline({ ...a.components, scheduler: schedulerFromConfig(sdCase.scheduler.config) });
  const b = await StableDiffusionXLControlNetXSPipeline.fromPretrained(XL, { controlnet: await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet')) });
  xl = new StableDiffusionXLControlNetXSPipeline({ ...b.components, scheduler: schedulerFromConfig(xlCase.scheduler.config) });
});
after(async () => {
  await Promise.all([sd.unet, sd.textEncoder, xl.unet, xl.textEncoder, xl.textEncoder2].map((m) => m.release()));
});

/** A case's call (the control images are the tiny models' own: control.png = tiny-sd-cnxs/pipeline/control.png, control_xl.png = tiny-sdxl-cnxs/pipeline/control.png). */
function argsOf(c: PipelineCase): StableDiffusionControlNetXSCallArgs & StableDiffusionXLControlNetXSCallArgs {
  const xlCase = c.name.startsWith('pipe.xl');
  const root = join(xlCase ? XL : SD, 'pipeline');
  return { ...callArgs<StableDiffusionControlNetXSCallArgs & StableDiffusionXLControlNetXSCallArgs>(c, root, read), image: join(root, 'control.png') };
}

async function runCase(p: AnyPipeline, c: PipelineCase, extra: object = {}): Promise<{ steps: Tensor<'float32'>[]; images: Tensor }> {
  const steps: Tensor<'float32'>[] = [];
  const out = await (p as StableDiffusionControlNetXSPipeline).run({
    ...argsOf(c),
    ...extra,
    callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents),
  });
  return { steps, images: out.images as Tensor };
}

function assertCase(c: PipelineCase, got: { steps: Tensor<'float32'>[]; images: Tensor }): void {
  const tolerance = (what: string, floor: number) => Math.max(floor, 20 * (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));
  const each = read(c.tensors['latents_after_each_step']!);
  const per = each.data.length / each.dims[0]!;
  assert.equal(got.steps.length, each.dims[0]);
  got.steps.forEach((s, i) =>
    assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), tolerance('latents_final', 1e-4), `${c.name}: latents after step ${i}`),
  );
  assertClose(got.images, read(c.tensors['images']!), tolerance('images', 1e-4), `${c.name}: images`);
}

describe('pipelines with LoRA equal diffusers', () => {
  for (const c of pipelineCases) {
    test(c.name, async () => {
      const p: AnyPipeline = c.name.startsWith('pipe.xl') ? xl : sd;
      const lora = recipeOf(c);
      try {
        for (const a of lora.adapters) {
          // a folder with weightName (diffusers' call), or the file itself
          const name = await p.loadLoraWeights(local(a.path), { weightName: a.weight_name, adapterName: a.adapter_name });
          assert.equal(name, a.adapter_name);
        }
        if (lora.adapter_weights !== null) p.setAdapters(lora.adapters.map((a) => a.adapter_name), lora.adapter_weights);
        assertCase(c, await runCase(p, c, lora.scale !== 1 ? { crossAttentionKwargs: { scale: lora.scale } } : {}));
      } finally {
        await p.unloadLoraWeights();
      }
    });
  }
});

describe('adapters', () => {
  test('bookkeeping, weights, scale, disable/enable and delete without re-loading', async () => {
    const full = byName('pipe.sd.lora_a.s1'), half = byName('pipe.sd.lora_a.s0.5'), two = byName('pipe.sd.two_adapters');
    try {
      const base = await runCase(sd, full); // no LoRA yet
      assert.equal(await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a')), 'default_0');
      assert.equal(await sd.loadLoraWeights(join(DIR, 'sd', 'locon_b_kohya.safetensors'), { adapterName: 'b' }), 'b');
      assert.deepEqual(sd.getListAdapters(), { unet: ['default_0', 'b'], text_encoder: ['default_0'] });
      assert.deepEqual(sd.getActiveAdapters(), ['default_0', 'b']);
      sd.setAdapters(['default_0', 'b'], [0.7, 0.3]);
      assertCase(two, await runCase(sd, two));
      sd.setAdapters('default_0');
      assert.deepEqual(sd.getActiveAdapters(), ['default_0']);
      assertCase(full, await runCase(sd, full));
      assertCase(half, await runCase(sd, half, { crossAttentionKwargs: { scale: 0.5 } }));
      sd.disableLora();
      assert.deepEqual(sd.getActiveAdapters(), ['default_0']); // diffusers keeps the list while disabled
      const off = await runCase(sd, full);
      assert.ok(maxAbsDiff(off.images, base.images) < 1e-6, 'disabled = no LoRA');
      sd.enableLora();
      await sd.deleteAdapters('b');
      assert.deepEqual(sd.getListAdapters(), { unet: ['default_0'], text_encoder: ['default_0'] });
      assertCase(full, await runCase(sd, full));
    } finally {
      await sd.unloadLoraWeights();
    }
    assert.deepEqual(sd.getListAdapters(), {});
  });

  test('a failed load changes nothing and the pipeline still runs', async () => {
    const c = byName('pipe.sd.lora_a.s1');
    try {
      // SDXL LoRA on the SD pipeline: text_encoder_2 layers and misfit UNet layers
      await assert.rejects(sd.loadLoraWeights(join(DIR, 'sdxl', 'lora_xl_kohya.safetensors')), LoraTargetError);
      const bad = join(tempDir(), 'bad.safetensors');
      writeSafetensors(bad, [{ name: 'lora_unet_nope.lora_down.weight', dtype: 'F32', shape: [1, 1], bytes: () => new Uint8Array(4) }]);
      await assert.rejects(sd.loadLoraWeights(bad), LoraFormatError);
      await assert.rejects(sd.loadLoraWeights(join(DIR, 'sd')), /no LoRA file pytorch_lora_weights.safetensors/);
      assert.deepEqual(sd.getListAdapters(), {});
      assert.deepEqual(sd.unet.loraAdapterNames, []);
      assert.deepEqual(sd.textEncoder.loraAdapterNames, []);
      await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a_kohya.safetensors'), { adapterName: 'a' });
      await assert.rejects(sd.loadLoraWeights(join(DIR, 'sd', 'lora_a_kohya.safetensors'), { adapterName: 'a' }), (e) => e instanceof LoraError && /already in use/.test(e.message));
      assert.throws(() => sd.setAdapters(['a', 'z']), (e) => e instanceof LoraError && /"z"/.test(e.message));
      await assert.rejects(sd.deleteAdapters('z'), LoraError);
      assert.deepEqual(sd.getActiveAdapters(), ['a']);
      assertCase(c, await runCase(sd, c));
    } finally {
      await sd.unloadLoraWeights();
    }
  });
});

test('pipe.sd.lora_a+ti+freeu: LoRA with textual inversion and FreeU', async () => {
  const c = byName('pipe.sd.lora_a+ti+freeu');
  const r = (c as unknown as { recipe: { ti: { path: string }[]; freeu: [number, number, number, number] } }).recipe;
  try {
    await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a'), { adapterName: 'a' });
    for (const t of r.ti) await sd.loadTextualInversion(join(fixture('adapters'), t.path));
    const [s1, s2, b1, b2] = r.freeu;
    sd.enableFreeu({ s1, s2, b1, b2 });
    assertCase(c, await runCase(sd, c));
  } finally {
    sd.disableFreeu();
    sd.unloadTextualInversion();
    await sd.unloadLoraWeights();
  }
});

test('from a Hub repo (subfolder, weightName)', { timeout: 60_000 }, async () => {
  const repo = tempDir('cnxs-lora-repo-');
  mkdirSync(join(repo, 'loras'));
  copyFileSync(join(DIR, 'sd', 'lora_a', 'pytorch_lora_weights.safetensors'), join(repo, 'loras', 'pytorch_lora_weights.safetensors'));
  copyFileSync(join(DIR, 'sd', 'lora_a_kohya.safetensors'), join(repo, 'a_kohya.safetensors'));
  const hub = await startHub(repo);
  const hubOptions = { endpoint: hub.endpoint, cacheDir: join(tempDir('cnxs-lora-cache-'), 'hub'), hubToken: false as const };
  const c = byName('pipe.sd.lora_a.s1');
  try {
    await sd.loadLoraWeights('org/tiny-pipe', { ...hubOptions, subfolder: 'loras', adapterName: 'a' });
    assertCase(c, await runCase(sd, c));
    await sd.unloadLoraWeights();
    await sd.loadLoraWeights('org/tiny-pipe', { ...hubOptions, weightName: 'a_kohya.safetensors' });
    assertCase(c, await runCase(sd, c));
    assert.ok(hub.log.some((l) => l.path.endsWith('/loras/pytorch_lora_weights.safetensors')));
  } finally {
    await sd.unloadLoraWeights();
    await hub.stop();
  }
});

describe('fuseLora / unfuseLora', () => {
  for (const name of ['pipe.sd.lora_a.unet_only', 'pipe.xl.lora_kohya.unet_only']) {
    test(`${name}: fuseLora({ components: ['unet'] }) then unloadLoraWeights()`, async () => {
      const c = byName(name);
      const p: AnyPipeline = name.startsWith('pipe.xl') ? xl : sd;
      const a = recipeOf(c).adapters[0]!;
      try {
        await p.loadLoraWeights(local(a.path), { weightName: a.weight_name });
        p.fuseLora({ components: ['unet'] });
        await p.unloadLoraWeights(); // the text-encoder layers go unmerged; the UNet keeps the merged weights
        assert.deepEqual(p.getListAdapters(), {});
        assert.equal(p.unet.loraFused, true);
        assertCase(c, await runCase(p, c));
      } finally {
        p.unfuseLora();
        await p.unloadLoraWeights();
      }
      assert.equal(p.unet.loraFused, false);
    });
  }

  test('two adapters fused with their weights, then fused QKV projections over the merged weights, then unfused', async () => {
    const two = byName('pipe.sd.two_adapters'), full = byName('pipe.sd.lora_a.s1');
    try {
      await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a'), { adapterName: 'a' });
      await sd.loadLoraWeights(join(DIR, 'sd', 'locon_b_kohya.safetensors'), { adapterName: 'b' });
      sd.setAdapters(['a', 'b'], [0.7, 0.3]);
      sd.fuseLora();
      assertCase(two, await runCase(sd, two, { crossAttentionKwargs: { scale: 0.5 } })); // fused layers ignore the scale, as diffusers'
      await sd.unloadLoraWeights();
      sd.fuseQkvProjections(); // no branches left: the concatenated projections read the merged weights
      assertCase(two, await runCase(sd, two));
      sd.unfuseQkvProjections();
      sd.unfuseLora();
      await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a'), { adapterName: 'a' });
      assertCase(full, await runCase(sd, full)); // original weights again, plus A as branches
    } finally {
      sd.unfuseQkvProjections();
      sd.unfuseLora();
      await sd.unloadLoraWeights();
    }
  });

  test('bad fuse arguments change nothing', async () => {
    try {
      await sd.loadLoraWeights(join(DIR, 'sd', 'lora_a'), { adapterName: 'a' });
      assert.throws(() => sd.fuseLora({ adapterNames: ['z'] }), LoraError);
      assert.throws(() => sd.fuseLora({ components: ['text_encoder_2'] }), /this pipeline has unet, text_encoder/);
      assert.equal(sd.unet.loraFused, false);
    } finally {
      await sd.unloadLoraWeights();
    }
  });
});
