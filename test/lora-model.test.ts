/**
 * LoRA branches in the traced graphs against diffusers 0.33.1 (test/fixtures/adapters/lora, the module
 * cases): the plain and fused ControlNet-XS UNets (SD and SDXL) and the text encoders with LoRA A, LoCon B,
 * two adapters at [0.7, 0.3], the SDXL kohya (SGM names) file and its diffusers twin, at scales 1 and 0.5,
 * against both of diffusers' routes (merged weights, PEFT layers); the per-module-alpha file as kohya means it.
 * Then what loading does to graphs and sessions, and the refusals (fused QKV, misfit layers).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeModel } from '../src/graph/onnx-proto.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text-model.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { LoraError, LoraTargetError, loraModelLayers, readLoraFile, type LoraComponent } from '../src/models/lora-file.js';
import type { TracedModel } from '../src/models/traced-model.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';
import { parsePythonJson } from '../src/util/json.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { assertClose, fixture, maxAbsDiff, unetCaseArgs } from './helpers.js';

const DIR = fixture('adapters', 'lora');
const SD = fixture('tiny-sd-cnxs');
const XL = fixture('tiny-sdxl-cnxs');
interface Adapter { path: string; weight_name: string; adapter_name: string }
interface ModuleCase {
  name: string;
  kind: string;
  recipe: { base: 'sd' | 'sdxl'; lora?: { adapters: Adapter[]; adapter_weights: number[] | null; scale: number } | null; manual_merge_file?: string; freeu?: [number, number, number, number] };
  inputs: Record<string, string | number | boolean | Record<string, string>>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number>;
}
const all = (parsePythonJson(readFileSync(join(DIR, 'cases.json'), 'utf8')) as ModuleCase[]).filter((c) => c.kind.endsWith('_forward') || c.kind.endsWith('_manual'));
const tensors = loadSafetensorsSync(join(DIR, 'tensors.safetensors'));
const read = (k: string) => tensors.read(k);
const byName = (n: string) => all.find((c) => c.name === n)!;
const tol = (c: ModuleCase, what: string, floor: number) => Math.max(floor, 20 * (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));
/** Both tiny UNets have layers_per_block 2 (SGM names in the SDXL kohya file need it). */
const loraFile = (path: string, weightName: string) => readLoraFile(join(DIR, path.replace(/^lora\/?/, ''), weightName), { layersPerBlock: 2 });

function forwardArgs(c: ModuleCase): UNetControlNetXSForwardArgs {
  return unetCaseArgs(c.inputs, read);
}

/** Load a case's adapters onto `model` (component's layers), each fed weight × scale, as diffusers' set_adapters + scale. */
function loadCase(model: TracedModel, c: ModuleCase, component: LoraComponent, fused: boolean): void {
  const lora = c.recipe.lora;
  if (!lora) return; // the `*.base` cases: the same model without any adapter
  lora.adapters.forEach((a, i) => {
    const layers = loraModelLayers(loraFile(a.path, a.weight_name), component, { fused });
    if (layers.length > 0) model.setLoraAdapter(a.adapter_name, layers, (lora.adapter_weights?.[i] ?? 1) * lora.scale);
  });
}

function unloadAll(...models: TracedModel[]): void {
  for (const m of models) for (const n of m.loraAdapterNames) m.deleteLoraAdapter(n);
}

let sdUnet: UNet2DConditionModel, sdFused: UNetControlNetXSModel, xlFused: UNetControlNetXSModel;
let sdText: CLIPTextModel, xlText: CLIPTextModel, xlText2: CLIPTextModelWithProjection;
before(async () => {
  sdUnet = await UNet2DConditionModel.fromPretrained(join(SD, 'unet'));
  sdFused = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')));
  xlFused = UNetControlNetXSModel.fuse(await UNet2DConditionModel.fromPretrained(join(XL, 'unet')), await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet')));
  sdText = await CLIPTextModel.fromPretrained(join(SD, 'text_encoder'));
  xlText = await CLIPTextModel.fromPretrained(join(XL, 'text_encoder'));
  xlText2 = await CLIPTextModelWithProjection.fromPretrained(join(XL, 'text_encoder_2'));
});
after(async () => {
  await Promise.all([sdUnet, sdFused, xlFused, sdText, xlText, xlText2].map((m) => m.release()));
});

describe('UNets with LoRA equal diffusers', () => {
  for (const c of all.filter((x) => x.kind === 'unet_cnxs_forward' || x.kind === 'unet2d_forward')) {
    if (c.name === 'unet2d.sd.quirk_mixed_alpha.diffusers') continue; // diffusers' alpha quirk: see below
    test(c.name, async () => {
      const plain = c.kind === 'unet2d_forward';
      const m = plain ? sdUnet : c.recipe.base === 'sd' ? sdFused : xlFused;
      const freeu = c.recipe.freeu;
      try {
        loadCase(m, c, 'unet', !plain);
        // FreeU on top of the LoRA (unet_cnxs.sd.freeu+lora_a.s1): both in one graph
        if (freeu) (m as UNetControlNetXSModel).enableFreeu({ s1: freeu[0], s2: freeu[1], b1: freeu[2], b2: freeu[3] });
        const { sample } = await (m as UNetControlNetXSModel).forward(forwardArgs(c));
        assertClose(sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), c.name);
      } finally {
        if (freeu) (m as UNetControlNetXSModel).disableFreeu();
        unloadAll(m);
      }
    });
  }

  test('per-module alphas as the file says (kohya semantics), not diffusers’ quirk (README 2.4)', async () => {
    const manual = byName('unet2d.sd.quirk_mixed_alpha.kohya_semantics');
    const quirk = byName('unet2d.sd.quirk_mixed_alpha.diffusers');
    try {
      sdUnet.setLoraAdapter('q', loraModelLayers(readLoraFile(join(DIR, 'sd', 'quirk_mixed_alpha_kohya.safetensors')), 'unet'));
      const { sample } = await sdUnet.forward(forwardArgs(manual));
      assertClose(sample, read(manual.outputs['sample']!), tol(manual, 'sample', 1e-4), manual.name);
      assert.ok(maxAbsDiff(sample, read(quirk.outputs['sample']!)) > 0.1, 'differs from diffusers 0.33.1 where its alpha_pattern misses');
    } finally {
      unloadAll(sdUnet);
    }
  });
});

describe('text encoders with LoRA equal diffusers', () => {
  for (const c of all.filter((x) => x.kind === 'text_encoder_forward')) {
    test(c.name, async () => {
      const encoders = c.recipe.base === 'sd' ? ([['text_encoder', sdText]] as const) : ([['text_encoder', xlText], ['text_encoder_2', xlText2]] as const);
      try {
        for (const [name, enc] of encoders) {
          loadCase(enc, c, name, false);
          const out = await enc.forward(read(c.inputs[`input_ids.${name}`] as string), { outputHiddenStates: true });
          const hs = out.hiddenStates!;
          assertClose(hs[hs.length - 2]!, read(c.outputs[`${name}.hidden_states_-2`]!), tol(c, `${name}.hidden_states_-2`, 1e-5), `${c.name} ${name} hidden_states[-2]`);
          const last = read(c.outputs[`${name}.last_hidden_state`]!);
          // For CLIPTextModelWithProjection the reference stored output[0], which is text_embeds, under last_hidden_state.
          if (last.dims.length === 3) assertClose(out.lastHiddenState, last, tol(c, `${name}.last_hidden_state`, 1e-5), `${c.name} ${name} last_hidden_state`);
          if ('textEmbeds' in out) assertClose(out.textEmbeds, read(c.outputs[`${name}.text_embeds`]!), tol(c, `${name}.text_embeds`, 1e-5), `${c.name} ${name} text_embeds`);
        }
      } finally {
        unloadAll(...encoders.map(([, e]) => e));
      }
    });
  }
});

describe('graphs and sessions', () => {
  test('a model without LoRA traces byte-identical graphs after loading and deleting one', () => {
    const before = encodeModel(sdFused.toOnnx());
    const layers = loraModelLayers(loraFile('lora/sd/locon_b_kohya.safetensors', ''), 'unet', { fused: true });
    sdFused.setLoraAdapter('b', layers);
    const withLora = encodeModel(sdFused.toOnnx());
    assert.notDeepEqual(withLora, before);
    sdFused.deleteLoraAdapter('b');
    assert.deepEqual(encodeModel(sdFused.toOnnx()), before);
  });

  test('scales are graph inputs: changing one needs no new session, loading re-traces once', async () => {
    const c = byName('unet_cnxs.sd.lora_a.s1.fused');
    const half = byName('unet_cnxs.sd.lora_a.s0.5.fused');
    let releases = 0;
    const release = sdFused.release.bind(sdFused);
    sdFused.release = () => {
      releases++;
      return release();
    };
    try {
      await sdFused.forward(forwardArgs(c)); // a session on the graph without LoRA
      loadCase(sdFused, c, 'unet', true);
      assert.equal(releases, 1);
      assertClose((await sdFused.forward(forwardArgs(c))).sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), 's = 1');
      sdFused.setLoraScale('a', 0.5);
      assertClose((await sdFused.forward(forwardArgs(half))).sample, read(half.outputs['sample']!), tol(half, 'sample', 1e-4), 's = 0.5');
      assert.equal(releases, 1);
    } finally {
      sdFused.release = release;
      unloadAll(sdFused);
    }
  });

  test('LoRA on to_q/k/v and fused QKV projections refuse each other', () => {
    const layers = loraModelLayers(loraFile('lora/sd/lora_a/pytorch_lora_weights.safetensors', ''), 'unet', { fused: true });
    try {
      sdFused.setLoraAdapter('a', layers);
      assert.throws(() => sdFused.fuseQkvProjections(), (e) => e instanceof LoraError && /to_q\/to_k\/to_v/.test(e.message));
      assert.equal(sdFused.qkvProjectionsFused, false);
      sdFused.deleteLoraAdapter('a');
      sdFused.fuseQkvProjections();
      assert.throws(() => sdFused.setLoraAdapter('a', layers), LoraError);
      assert.deepEqual(sdFused.loraAdapterNames, []);
    } finally {
      sdFused.unfuseQkvProjections();
      unloadAll(sdFused);
    }
  });

  test('a layer the model lacks, or that does not fit, changes nothing', () => {
    const layers = loraModelLayers(loraFile('lora/sd/lora_a/pytorch_lora_weights.safetensors', ''), 'unet');
    // unfused names on the fused model: no such layers
    assert.throws(() => sdFused.setLoraAdapter('a', layers), (e) => e instanceof LoraTargetError && /no layer/.test(e.message));
    const xl = loraModelLayers(loraFile('lora/sdxl/lora_xl/pytorch_lora_weights.safetensors', ''), 'unet', { fused: true });
    assert.throws(() => sdFused.setLoraAdapter('xl', xl), LoraTargetError);
    assert.deepEqual(sdFused.loraAdapterNames, []);
    assert.throws(() => sdFused.setLoraScale('nope', 1), LoraTargetError);
  });
});
