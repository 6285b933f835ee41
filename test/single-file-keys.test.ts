/**
 * The single-file key tables (src/models/single-file/keys.ts) against diffusers 0.33.1's own
 * conversion, row by row: test/fixtures/single-file holds, for the tiny fp16 files and for the
 * real-size SD 1.5, SD 2.1 and SDXL base layouts, every stored key with its shape and what diffusers
 * made of it (component, diffusers key, transform) — traced from its code with value-tagged tensors.
 * Each row must map exactly so (or be a declared ignore), and the mapped keys must cover the module
 * trees built from the recorded configs exactly, with the right shapes. No weights are read.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseAutoencoderKLConfig } from '../src/models/autoencoder-kl-config.js';
import { parseCLIPTextConfig } from '../src/models/clip-text-config.js';
import { clipSpec, UNET_SPEC, VAE_SPEC } from '../src/models/single-file/component.js';
import { BUNDLED_CONFIG_ROOT, bundledConfigFor, bundledFolder, type BundledConfig } from '../src/models/single-file/configs.js';
import { loadScheduler } from '../src/pipelines/components.js';
import { loadConfigTokenizer } from '../src/pipelines/single-file.js';
import { inferModelType, inspectSingleFile, placeOf, type ComponentName, type ComponentPlace } from '../src/models/single-file/detect.js';
import { describeTransform, fileIgnore, mapKey, targetShape, type KeyContext } from '../src/models/single-file/keys.js';
import { parseUNet2DConditionConfig } from '../src/models/unet-2d-condition-config.js';
import { AutoencoderKLNet } from '../src/nn/autoencoder-kl-net.js';
import { CLIPTextNet } from '../src/nn/clip-text-net.js';
import { UNet2DConditionNet, unetLayout } from '../src/nn/unet-2d-condition-net.js';
import type { Module } from '../src/nn/module.js';
import { fixture } from './helpers.js';

type To = [string, string, string];
type Row = { key: string; shape: number[]; status: string; to: To[] };

interface Layout {
  name: string;
  modelType: string;
  rows: Row[];
  configs: Partial<Record<ComponentName, Record<string, unknown>>>;
}

const quiet = (): void => {};
const SF = fixture('single-file');

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

/** Rows stored as column arrays (the tables copied for these tests) or as objects (the .ckpt's table). */
function rowsOf(j: Record<string, unknown>): Row[] {
  const cols = j['columns'] as string[] | undefined;
  return (j['keys'] as unknown[]).map((r) => {
    const o = (cols ? Object.fromEntries(cols.map((c, i) => [c, (r as unknown[])[i]])) : r) as { ldm_key: string; shape: number[]; status: string; to: To[] };
    return { key: o.ldm_key, shape: o.shape, status: o.status, to: o.to };
  });
}

function layouts(): Layout[] {
  const out: Layout[] = [];
  for (const name of ['sd15', 'sd21-base', 'sdxl-base']) {
    const j = readJson(join(SF, 'real-layouts', `${name}.json`));
    out.push({ name: `real ${name}`, modelType: j['diffusers_infer_model_type'] as string, rows: rowsOf(j), configs: j['configs'] as Layout['configs'] });
  }
  const tiny: [string, string, ComponentName[]][] = [
    ['tiny-sd15.fp16.safetensors', 'tiny-sd-cnxs', ['unet', 'vae', 'text_encoder']],
    ['tiny-sdxl-base.fp16.safetensors', 'tiny-sdxl-cnxs', ['unet', 'vae', 'text_encoder', 'text_encoder_2']],
    // a VAE saved on its own (no key prefix), as a torch .ckpt
    ['tiny-sd15-vae.ckpt', 'tiny-sd-cnxs', ['vae']],
  ];
  for (const [file, folder, comps] of tiny) {
    const j = readJson(join(SF, 'checkpoints', `${file}.keys.json`));
    const configs = Object.fromEntries(comps.map((c) => [c, readJson(fixture(folder, c, 'config.json'))]));
    // diffusers classifies every tiny file as "v1" (its probes look for real-size shapes)
    out.push({ name: `tiny ${file}`, modelType: 'v1', rows: rowsOf(j), configs });
  }
  return out;
}

/** The key context and module tree of one component, from its recorded config. */
function component(name: ComponentName, raw: Record<string, unknown>, place: ComponentPlace): { ctx: KeyContext; net: Module } {
  if (name === 'unet') {
    const c = parseUNet2DConditionConfig(raw, name, quiet);
    return { ctx: UNET_SPEC.context(c, place, name), net: new UNet2DConditionNet(c, unetLayout(c, name)) };
  }
  if (name === 'vae') {
    const c = parseAutoencoderKLConfig(raw, name, quiet);
    return { ctx: VAE_SPEC.context(c, place, name), net: new AutoencoderKLNet(c) };
  }
  const withProjection = name === 'text_encoder_2';
  const c = parseCLIPTextConfig({ model_type: 'clip_text_model', ...raw }, name, quiet);
  return { ctx: clipSpec(withProjection).context(c, place, name), net: new CLIPTextNet(c, withProjection, name) };
}

for (const layout of layouts()) {
  describe(`single-file keys: ${layout.name}`, () => {
    const shapes = new Map(layout.rows.map((r) => [r.key, r.shape] as const));
    const inspection = inspectSingleFile(shapes);

    test(`diffusers' model type (${layout.modelType}) and the components are recognised`, () => {
      assert.equal(inferModelType(shapes), layout.modelType);
      assert.deepEqual(inspection.components.map((c) => c.name).sort(), Object.keys(layout.configs).sort());
      assert.deepEqual(inspection.stray, [], 'every key is in a component or a declared file-level ignore');
    });

    test('every key maps as diffusers maps it, or is a declared ignore', () => {
      const parts = new Map(inspection.components.map((p) => [p.name, component(p.name, layout.configs[p.name]!, p)] as const));
      let checked = 0;
      for (const row of layout.rows) {
        const place = placeOf(row.key, inspection.components);
        const m = place === undefined ? null : mapKey(place.layout, row.key.slice(place.prefix.length), row.shape, parts.get(place.name)!.ctx);
        if (row.status === 'mapped') {
          assert.ok(place && m?.kind === 'mapped', `${row.key} is mapped by diffusers (${JSON.stringify(row.to)}) but not here`);
          const mine = m.targets.map((t): To => [place.name, t.key, describeTransform(t, row.shape)]);
          assert.deepEqual(mine, row.to, row.key);
        } else {
          // 'ignored' by diffusers, or 'mapped_but_unused' (a key its model does not have: position_ids)
          const ignored = fileIgnore(row.key) !== null || m?.kind === 'ignored';
          assert.ok(ignored, `${row.key} (${row.status} by diffusers) must be a declared ignore, got ${JSON.stringify(m)}`);
        }
        checked++;
      }
      assert.equal(checked, layout.rows.length);
    });

    test('the mapped keys are exactly the module trees’ parameters, with their shapes', () => {
      for (const place of inspection.components) {
        const { ctx, net } = component(place.name, layout.configs[place.name]!, place);
        const produced = new Map<string, number[]>();
        for (const row of layout.rows) {
          if (placeOf(row.key, inspection.components) !== place) continue;
          const m = mapKey(place.layout, row.key.slice(place.prefix.length), row.shape, ctx);
          if (m.kind !== 'mapped') continue;
          for (const t of m.targets) {
            assert.ok(!produced.has(t.key), `${t.key} produced twice`);
            produced.set(t.key, targetShape(row.shape, t, row.key));
          }
        }
        const params = [...net.parameters()];
        const missing = params.filter((p) => !produced.has(p.key)).map((p) => p.key);
        const extra = [...produced.keys()].filter((k) => !params.some((p) => p.key === k));
        assert.deepEqual(missing, [], `${place.name}: parameters no key maps to`);
        assert.deepEqual(extra, [], `${place.name}: mapped keys the model does not have`);
        for (const p of params) assert.deepEqual(produced.get(p.key), [...p.shape], `${place.name}.${p.key} shape`);
      }
    });
  });
}

test('the tables can fail: an unknown key, a wrong block count and a mis-shaped squeeze are caught', () => {
  assert.deepEqual(mapKey('ldm-unet', 'input_blocks.1.7.weight', [4], { layersPerBlock: 2 }), { kind: 'unmapped' });
  // layers_per_block 1 instead of 2 puts input_blocks.3 into block 1 instead of block 0
  const wrong = mapKey('ldm-unet', 'input_blocks.3.0.in_layers.0.weight', [16], { layersPerBlock: 1 });
  assert.equal(wrong.kind === 'mapped' && wrong.targets[0]!.key, 'down_blocks.1.resnets.0.norm1.weight');
  // with 2 layers per block it is the third slot of block 0 (the downsampler's), which a UNet has no resnet for
  const right = mapKey('ldm-unet', 'input_blocks.3.0.in_layers.0.weight', [16], { layersPerBlock: 2 });
  assert.equal(right.kind === 'mapped' && right.targets[0]!.key, 'down_blocks.0.resnets.2.norm1.weight');
  assert.throws(() => targetShape([4, 4, 3, 3], { key: 'x', transform: 'squeeze_1x1' }, 'k'), /1×1 conv/);
  // the extra OpenCLIP block is ignored only right after the config's last layer
  assert.equal(mapKey('open-clip', 'transformer.resblocks.23.ln_1.weight', [8], { numHiddenLayers: 23, extraBlock: true, withProjection: false }).kind, 'ignored');
  assert.equal(mapKey('open-clip', 'transformer.resblocks.24.ln_1.weight', [8], { numHiddenLayers: 23, extraBlock: true, withProjection: false }).kind, 'mapped');
  assert.equal(mapKey('open-clip', 'transformer.resblocks.23.ln_1.weight', [8], { numHiddenLayers: 23, extraBlock: false, withProjection: true }).kind, 'mapped');
});

describe('bundled default configs (offline single-file loading)', () => {
  const REAL: Record<string, BundledConfig[]> = { sd15: ['sd15'], 'sd21-base': ['sd21-base', 'sd21-v'], 'sdxl-base': ['sdxl-base'] };
  for (const [real, bundles] of Object.entries(REAL)) {
    for (const bundle of bundles) {
      test(`${bundle}: parses without warnings and fits the real ${real} layout key for key`, () => {
        const j = readJson(join(SF, 'real-layouts', `${real}.json`));
        const rows = rowsOf(j);
        const shapes = new Map(rows.map((r) => [r.key, r.shape] as const));
        const inspection = inspectSingleFile(shapes);
        const warnings: string[] = [];
        for (const place of inspection.components) {
          const dir = join(BUNDLED_CONFIG_ROOT, bundle, place.name);
          const raw = readJson(join(dir, 'config.json'));
          const spec = place.name === 'unet' ? UNET_SPEC : place.name === 'vae' ? VAE_SPEC : clipSpec(place.name === 'text_encoder_2');
          spec.parse(raw, dir, (m) => warnings.push(m));
          const { ctx, net } = component(place.name, raw, place);
          const produced = new Map<string, number[]>();
          for (const row of rows) {
            if (placeOf(row.key, inspection.components) !== place) continue;
            const m = mapKey(place.layout, row.key.slice(place.prefix.length), row.shape, ctx);
            if (m.kind === 'mapped') for (const t of m.targets) produced.set(t.key, targetShape(row.shape, t, row.key));
          }
          const params = [...net.parameters()];
          assert.equal(produced.size, params.length, `${place.name}: key count`);
          for (const p of params) assert.deepEqual(produced.get(p.key), [...p.shape], `${place.name}.${p.key}`);
        }
        assert.deepEqual(warnings, []);
      });
    }
  }

  test('detected model types pick the bundles diffusers would fetch; SD 2.x at global step 875000 is 2.1-base', () => {
    const type = (real: string): ReturnType<typeof inspectSingleFile> => {
      const rows = rowsOf(readJson(join(SF, 'real-layouts', `${real}.json`)));
      return inspectSingleFile(new Map(rows.map((r) => [r.key, r.shape] as const)));
    };
    assert.equal(bundledConfigFor({ inspection: type('sd15'), globalStep: null }), 'sd15');
    assert.equal(bundledConfigFor({ inspection: type('sd21-base'), globalStep: null }), 'sd21-v');
    assert.equal(bundledConfigFor({ inspection: type('sd21-base'), globalStep: 875000 }), 'sd21-base');
    assert.equal(bundledConfigFor({ inspection: type('sdxl-base'), globalStep: null }), 'sdxl-base');
    assert.equal(bundledConfigFor({ inspection: { ...type('sdxl-base'), modelType: 'xl_refiner' }, globalStep: null }), null);
  });

  test('bundled schedulers and tokenizers load: SD 2.1 768 is v-prediction, SD 2.x / SDXL second tokenizers pad with "!"', async () => {
    const expect: Record<BundledConfig, { scheduler: string; prediction: string; pads: number[] }> = {
      sd15: { scheduler: 'PNDMScheduler', prediction: 'epsilon', pads: [49407] },
      'sd21-base': { scheduler: 'PNDMScheduler', prediction: 'epsilon', pads: [0] },
      'sd21-v': { scheduler: 'DDIMScheduler', prediction: 'v_prediction', pads: [0] },
      'sdxl-base': { scheduler: 'EulerDiscreteScheduler', prediction: 'epsilon', pads: [49407, 0] },
    };
    for (const [bundle, e] of Object.entries(expect) as [BundledConfig, (typeof expect)[BundledConfig]][]) {
      const dir = join(BUNDLED_CONFIG_ROOT, bundle);
      const scheduler = await loadScheduler(dir);
      assert.equal(scheduler.config['_class_name'], e.scheduler, bundle);
      assert.equal(scheduler.config['prediction_type'], e.prediction, bundle);
      const toks = await Promise.all(['tokenizer', 'tokenizer_2'].slice(0, e.pads.length).map((sub) => loadConfigTokenizer(bundledFolder(bundle), sub)));
      assert.deepEqual(toks.map((t) => t.padTokenId), e.pads, bundle);
      assert.deepEqual([...toks[0]!.call('a photo of a bird', { padding: 'max_length', maxLength: 77, truncation: true }).inputIds.data].slice(0, 6), [49406n, 320n, 1125n, 539n, 320n, 3329n]);
    }
  });
});
