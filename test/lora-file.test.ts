/**
 * LoRA files against diffusers 0.33.1 (reference adapters/, cases `keymap.*`, `file.lora/*`,
 * `delta_weight.*`): the kohya and diffusers key tables row by row, every fixture file's layers, ranks
 * and alphas, their fit to the tiny base models (and the fused ControlNet-XS names), the merge deltas,
 * and bad files as named errors.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  LoraFormatError,
  LoraTargetError,
  checkLoraTargets,
  diffusersKey,
  fusedLoraModule,
  kohyaModule,
  loraDelta,
  readLoraFile,
  type LoraComponent,
  type LoraFile,
} from '../src/models/lora-file.js';
import { parsePythonJson } from '../src/util/json.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { fixture, tempDir } from './helpers.js';

const DIR = fixture('adapters', 'lora');
interface Row { kohya: string; diffusers_key: string; component: LoraComponent; peft_module: string; alpha: number; rank: number }
interface Term { adapter: string; r: number; lora_alpha: number; scaling_incl_set_adapters_weight: number; lora_scale: number }
interface Case {
  name: string;
  kind: string;
  file?: string;
  path?: string;
  format?: string;
  base?: string;
  rank?: number;
  alpha?: number | null;
  targets?: Record<string, number>;
  rows?: (Row & { module: string; alpha_in_file: number; scaling_kohya_semantics: number })[];
  recipe?: {
    component: LoraComponent;
    module: string;
    lora: { adapters: { path: string; weight_name: string; adapter_name: string }[]; adapter_weights: number[] | null; scale: number };
  };
  terms?: Term[];
  outputs?: Record<string, string>;
  max_abs_diff_fp32_vs_fp64?: number;
}
const cases = parsePythonJson(readFileSync(join(DIR, 'cases.json'), 'utf8')) as Case[];
const tensors = loadSafetensorsSync(join(DIR, 'tensors.safetensors'));
/** The fixture paths name files under adapters/ (`lora/sd/…`); ours sit in adapters/lora/. */
const file = (p: string) => join(DIR, p.replace(/^lora\//, ''));
/** SDXL kohya files use SGM block names; the tiny SDXL UNet has layers_per_block 2 (as SDXL). */
const OPTIONS = { layersPerBlock: 2 };

/** Weight shapes of a base model component, by checkpoint key. */
function shapesOf(base: 'sd' | 'sdxl', component: LoraComponent): (key: string) => readonly number[] | undefined {
  const root = fixture(base === 'sd' ? 'tiny-sd-cnxs' : 'tiny-sdxl-cnxs');
  const path = component === 'unet' ? join(root, 'unet', 'diffusion_pytorch_model.safetensors') : join(root, component, 'model.safetensors');
  const f = loadSafetensorsSync(path);
  return (key) => f.tensors.get(key)?.shape;
}

describe('key tables (keymap.* cases)', () => {
  const maps = cases.filter((c) => c.kind === 'lora_key_map');
  test('there are the three files’ maps', () => assert.equal(maps.length, 3));
  for (const c of maps) {
    test(c.name, () => {
      assert.ok(c.rows!.length > 0);
      for (const row of c.rows!) {
        // kohya name → the module diffusers' PEFT loader targets
        assert.deepEqual(kohyaModule(row.kohya, OPTIONS), { component: row.component, module: row.peft_module }, row.kohya);
        // diffusers' intermediate (old processor) key → the same module
        assert.deepEqual(diffusersKey(row.diffusers_key), { component: row.component, module: row.peft_module, role: 'down' }, row.diffusers_key);
      }
    });
  }
});

describe('files (file.lora/* cases)', () => {
  const files = cases.filter((c) => c.kind === 'lora_file');
  test('all eight files are covered', () => assert.equal(files.length, 8));
  const layerIds = (l: LoraFile) => l.layers.map((x) => `${x.component}.${x.module}`).sort();
  for (const c of files) {
    test(c.name, () => {
      const lora = readLoraFile(file(c.path!), OPTIONS);
      assert.equal(lora.format, c.format!.startsWith('kohya') ? 'kohya' : 'diffusers');
      const counts: Record<string, number> = {};
      for (const l of lora.layers) counts[l.component] = (counts[l.component] ?? 0) + 1;
      if (c.targets !== undefined) {
        for (const [component, n] of Object.entries(c.targets)) if (n > 0) assert.equal(counts[component], n, component);
      }
      for (const l of lora.layers) assert.equal(l.rank, c.rank);
      if (c.rows !== undefined) {
        // quirk_mixed_alpha: each module keeps the file's own alpha (kohya semantics, not diffusers' 2.4 quirk)
        for (const row of c.rows) {
          const l = lora.layers.find((x) => x.module === row.module)!;
          assert.equal(l.alpha, row.alpha_in_file, row.module);
          assert.equal(l.alpha / l.rank, row.scaling_kohya_semantics, row.module);
        }
      } else {
        for (const l of lora.layers) assert.equal(l.alpha, c.alpha ?? c.rank, `${l.module} alpha`);
      }
      // every layer sits on a base-model layer it fits, and every UNet layer has a place in the fused model
      const base = c.base!.includes('sdxl') ? 'sdxl' : 'sd';
      for (const component of ['unet', 'text_encoder', 'text_encoder_2'] as const) {
        if (lora.layers.some((l) => l.component === component)) checkLoraTargets(lora, component, shapesOf(base, component));
      }
      for (const l of lora.layers) if (l.component === 'unet') assert.notEqual(fusedLoraModule(l.module), null, l.module);
    });
  }
  test('twins name the same layers', () => {
    const a = layerIds(readLoraFile(file('lora/sd/lora_a/pytorch_lora_weights.safetensors')));
    assert.deepEqual(layerIds(readLoraFile(file('lora/sd/lora_a_peft/pytorch_lora_weights.safetensors'))), a);
    assert.deepEqual(layerIds(readLoraFile(file('lora/sd/lora_a_kohya.safetensors'))), a);
    assert.deepEqual(layerIds(readLoraFile(file('lora/sd/locon_b_kohya.safetensors'))), layerIds(readLoraFile(file('lora/sd/locon_b_peft/pytorch_lora_weights.safetensors'))));
    assert.deepEqual(layerIds(readLoraFile(file('lora/sdxl/lora_xl_kohya.safetensors'), OPTIONS)), layerIds(readLoraFile(file('lora/sdxl/lora_xl/pytorch_lora_weights.safetensors'))));
  });
  test('fused ControlNet-XS names (README 2.5)', () => {
    assert.equal(fusedLoraModule('down_blocks.0.resnets.0.conv1'), 'down_blocks.0.base_resnets.0.conv1');
    assert.equal(fusedLoraModule('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q'), 'down_blocks.1.base_attentions.0.transformer_blocks.0.attn1.to_q');
    assert.equal(fusedLoraModule('down_blocks.0.downsamplers.0.conv'), 'down_blocks.0.base_downsamplers.conv');
    assert.equal(fusedLoraModule('mid_block.attentions.0.proj_in'), 'mid_block.base_midblock.attentions.0.proj_in');
    assert.equal(fusedLoraModule('up_blocks.0.upsamplers.0.conv'), 'up_blocks.0.upsamplers.conv');
    assert.equal(fusedLoraModule('up_blocks.2.resnets.1.conv2'), 'up_blocks.2.resnets.1.conv2');
  });
});

describe('merge deltas (delta_weight.* cases)', () => {
  const deltas = cases.filter((c) => c.kind === 'lora_delta_weight');
  test('all thirteen are covered', () => assert.equal(deltas.length, 13));
  for (const c of deltas) {
    test(c.name, () => {
      const { component, module, lora } = c.recipe!;
      const base = c.name.startsWith('delta_weight.sdxl') ? 'sdxl' : 'sd';
      let sum: Float64Array | undefined;
      lora.adapters.forEach((a, i) => {
        const layer = readLoraFile(file(join(a.path, a.weight_name)), OPTIONS).layers.find((l) => l.component === component && l.module === module);
        const term = c.terms!.find((t) => t.adapter === a.adapter_name);
        if (layer === undefined) {
          assert.equal(term, undefined);
          return;
        }
        const weight = lora.adapter_weights?.[i] ?? 1;
        assert.equal(layer.rank, term!.r);
        assert.ok(Math.abs((weight * layer.alpha) / layer.rank - term!.scaling_incl_set_adapters_weight) < 1e-12);
        const d = loraDelta(layer);
        sum ??= new Float64Array(d.length);
        for (let j = 0; j < d.length; j++) sum[j] = sum[j]! + d[j]! * weight * lora.scale;
      });
      assert.ok(sum !== undefined);
      const shape = shapesOf(base, component)(`${module}.weight`)!;
      const fp64 = tensors.read(c.outputs!.delta_fp64!), fp32 = tensors.read(c.outputs!.delta_fp32!);
      assert.deepEqual(fp64.dims, shape);
      assert.equal(sum.length, fp64.data.length);
      let e64 = 0, e32 = 0;
      for (let j = 0; j < sum.length; j++) {
        e64 = Math.max(e64, Math.abs(sum[j]! - Number(fp64.data[j])));
        e32 = Math.max(e32, Math.abs(sum[j]! - Number(fp32.data[j])));
      }
      // delta_fp64 is stored as float32: its rounding (~1e-9 here) is all that may differ
      assert.ok(e64 < 1e-7, `vs delta_fp64: ${e64}`);
      assert.ok(e32 < Math.max(1e-7, 20 * c.max_abs_diff_fp32_vs_fp64!), `vs delta_fp32: ${e32}`);
    });
  }
});

describe('bad files are named errors', () => {
  const write = (entries: [string, number[]][]): string => {
    const path = join(tempDir(), 'bad.safetensors');
    writeSafetensors(path, entries.map(([name, shape]) => ({ name, dtype: 'F32', shape, bytes: () => new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)) })));
    return path;
  };
  const pair = (m: string, r = 2, i = 16, o = 16): [string, number[]][] => [[`${m}.lora_down.weight`, [r, i]], [`${m}.lora_up.weight`, [o, r]]];
  test('unknown kohya module', () => {
    assert.throws(() => readLoraFile(write(pair('lora_unet_down_blocks_0_attentions_0_norm'))), (e) => e instanceof LoraFormatError && /names no layer/.test(e.message));
  });
  test('unknown keys are skipped and reported only when asked (onUnknownKey)', () => {
    const path = write([...pair('lora_unet_down_blocks_0_attentions_0_norm'), ...pair('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q')]);
    assert.throws(() => readLoraFile(path, OPTIONS), /names no layer/);
    const skipped: string[] = [];
    const lora = readLoraFile(path, { ...OPTIONS, onUnknownKey: (k) => skipped.push(k) });
    assert.deepEqual(skipped, ['lora_unet_down_blocks_0_attentions_0_norm.lora_down.weight', 'lora_unet_down_blocks_0_attentions_0_norm.lora_up.weight']);
    assert.deepEqual(lora.layers.map((l) => l.module), ['down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q']);
  });
  test('unknown prefix and suffix', () => {
    assert.throws(() => readLoraFile(write([['vae.decoder.lora_A.weight', [2, 4]]])), LoraFormatError);
    assert.throws(() => readLoraFile(write([['lora_unet_conv_in.lora_mid.weight', [2, 4]]])), LoraFormatError);
  });
  test('half a pair', () => {
    assert.throws(() => readLoraFile(write([['unet.conv_in.lora_A.weight', [2, 4, 3, 3]]])), /no up \(lora_B\)/);
  });
  test('mixed formats, LyCORIS, DoRA', () => {
    assert.throws(() => readLoraFile(write([...pair('lora_unet_conv_in'), ['unet.conv_out.lora_A.weight', [2, 4]]])), /mixed/);
    assert.throws(() => readLoraFile(write([['lora_unet_conv_in.hada_w1_a', [2, 4]]])), /LoHa/);
    assert.throws(() => readLoraFile(write([['unet.conv_in.lora_magnitude_vector.dora_scale', [4]]])), /DoRA/);
  });
  test('mismatched ranks', () => {
    assert.throws(() => readLoraFile(write([['lora_unet_conv_in.lora_down.weight', [2, 4]], ['lora_unet_conv_in.lora_up.weight', [4, 3]]])), /no LoRA pair/);
  });
  test('SGM names need layers_per_block', () => {
    assert.throws(() => kohyaModule('lora_unet_input_blocks_4_1_proj_in'), /layers_per_block/);
    assert.throws(() => kohyaModule('lora_unet_input_blocks_3_0_in_layers_2', OPTIONS), /names no layer/); // a downsampler slot
  });
  test('a layer the base model lacks, or does not fit', () => {
    const lora = readLoraFile(write(pair('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q', 2, 99, 16)));
    assert.throws(() => checkLoraTargets(lora, 'unet', shapesOf('sd', 'unet')), (e) => e instanceof LoraTargetError && /do not fit/.test(e.message));
    const far = readLoraFile(write(pair('lora_unet_down_blocks_7_resnets_0_conv1')));
    assert.throws(() => checkLoraTargets(far, 'unet', shapesOf('sd', 'unet')), (e) => e instanceof LoraTargetError && /no layer/.test(e.message));
  });
});
