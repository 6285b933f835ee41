/**
 * CLIPImageProcessor and StableDiffusionSafetyChecker against transformers 4.44 / diffusers 0.33.1
 * (test/fixtures/safety-checker, a tiny checker with designed concept thresholds): the processor's
 * resized uint8 images and pixel_values bit for bit, the checker's tensors whole at max(1e-5, 20 × the
 * fp32-vs-fp64 hint), its rounded scores and flags exactly, on both attention graphs.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { CLIPImageProcessor, parseCLIPImageProcessorConfig } from '../src/image/clip-image-processor.js';
import { loadImage } from '../src/image/load.js';
import { RGBImage } from '../src/image/rgb-image.js';
import { parseSafetyCheckerConfig } from '../src/models/safety-checker-config.js';
import { StableDiffusionSafetyChecker, VISION_POSITION_IDS_KEY, nsfwDecision } from '../src/models/safety-checker.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { writeSafetensors } from '../src/weights/write-safetensors.js';
import { assertClose, fixture, tempDir } from './helpers.js';

const S = fixture('safety-checker');
const ref = loadSafetensorsSync(join(S, 'tensors.safetensors'));
const weights = loadSafetensorsSync(join(S, 'safety_checker', 'model.safetensors'));

interface PerImage {
  special_rounded: number[];
  special_care: number[];
  concept_rounded: number[];
  bad_concepts: number[];
  has_nsfw_concept: boolean;
}
interface Case {
  name: string;
  kind: string;
  image_file?: string;
  images?: string[];
  mode?: string;
  resized_hw?: [number, number];
  tensors: Record<string, string>;
  has_nsfw_concepts?: boolean[];
  images_out_zeroed_rows?: number[];
  per_image?: PerImage[];
  safety_checker?: { per_image: PerImage[] };
  output?: { nsfw_content_detected: boolean[] };
}
const cases = JSON.parse(readFileSync(join(S, 'cases.json'), 'utf8')) as Case[];
const info = JSON.parse(readFileSync(join(S, 'generation_info.json'), 'utf8')) as Record<string, Record<string, unknown>>;
const byName = (name: string) => cases.find((c) => c.name === name)!;
const quiet = { warn: (m: string) => assert.fail(`unexpected warning: ${m}`) };
/** README: fp32 vs fp64 differences of the checker's outputs. */
const TOL = { pooled: 2e-5, imageEmbeds: Math.max(1e-5, 20 * 9.6e-7), cos: 1e-5 };

const bytes = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

describe('CLIPImageProcessor equals transformers (bit for bit)', () => {
  const fe = CLIPImageProcessor.fromPretrained(S, { subfolder: 'feature_extractor', ...quiet });

  for (const c of cases.filter((x) => x.kind === 'feature_extractor')) {
    test(c.name, async () => {
      const image = await loadImage(join(S, c.image_file!));
      if (c.tensors['rgb_uint8']) assert.deepEqual(Buffer.from(image.data), bytes(ref.read(c.tensors['rgb_uint8'])), `convert("RGB") of ${c.mode}`);
      const resized = fe.resize(image);
      assert.deepEqual([resized.height, resized.width], c.resized_hw);
      assert.deepEqual(Buffer.from(resized.data), bytes(ref.read(c.tensors['resized_uint8']!)), 'resized uint8');
      const pixels = fe.preprocess(image);
      assert.deepEqual(pixels.dims, ref.read(c.tensors['pixel_values']!).dims);
      assert.deepEqual(bytes(pixels), bytes(ref.read(c.tensors['pixel_values']!)), 'pixel_values');
    });
  }

  test('a batch is the single images stacked (the checker case feeds all six at once)', async () => {
    const c = byName('safety_checker.raw_images');
    const images = await Promise.all(c.images!.map((f) => loadImage(join(S, f))));
    assert.deepEqual(bytes(fe.preprocess(images)), bytes(ref.read(c.tensors['clip_input']!)));
  });

  test("both config forms: SD 1.5's legacy file and what save_pretrained writes parse to transformers' values", () => {
    const legacy = JSON.parse(readFileSync(join(S, 'feature_extractor', 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
    const modern = info['feature_extractor_save_pretrained_json']!;
    const parsed = info['feature_extractor_parsed']!;
    const a = parseCLIPImageProcessorConfig(legacy, 'legacy', quiet.warn);
    const b = parseCLIPImageProcessorConfig(modern, 'modern', quiet.warn);
    assert.deepEqual(a, b);
    assert.deepEqual(a.size, { shortestEdge: (parsed['size'] as { shortest_edge: number }).shortest_edge });
    assert.deepEqual(a.cropSize, parsed['crop_size']);
    assert.equal(a.rescaleFactor, parsed['rescale_factor']);
    assert.deepEqual(a.imageMean, parsed['image_mean']);
    assert.deepEqual(a.imageStd, parsed['image_std']);
    assert.equal(a.resample, 'bicubic');
    assert.deepEqual(CLIPImageProcessor.default().config.size, { shortestEdge: 224 });
  });

  test('other sizes: [h, w] lists, {height, width} resizes, odd crops with zero padding as transformers pads', () => {
    const warnings: string[] = [];
    const p = CLIPImageProcessor.fromConfig({ size: { height: 6, width: 4 }, crop_size: [7, 3], do_normalize: false, do_rescale: false, resample: 0, frobnicate: 1 }, 'cfg', (m) => warnings.push(m));
    assert.match(warnings.join('\n'), /cfg: ignoring unknown config key\(s\) frobnicate/);
    const img = new RGBImage(2, 3, Uint8Array.from({ length: 18 }, (_, i) => i + 1));
    // NEAREST 2x3 → 4x6 doubles every pixel; crop 7 rows of 6: top = (6 − 7) // 2 = −1, padded by (7 − 6) // 2 = 0 →
    // window rows −1…5 clipped to 0…5: six rows (one short, transformers' quirk); width 4 → 3 from column (4 − 3) // 2 = 0
    const out = p.preprocess(img);
    assert.deepEqual(out.dims, [1, 3, 6, 3]);
    const red = Array.from(out.data.subarray(0, 18));
    assert.deepEqual(red, [1, 1, 4, 1, 1, 4, 7, 7, 10, 7, 7, 10, 13, 13, 16, 13, 13, 16]);
    // an even shortfall pads symmetrically with zeros (before rescale: 0 → (0 − mean) / std)
    const q = CLIPImageProcessor.fromConfig({ do_resize: false, crop_size: 4, do_normalize: false }, 'cfg', quiet.warn);
    const padded = q.preprocess(new RGBImage(2, 2, new Uint8Array(12).fill(255)));
    assert.deepEqual(Array.from(padded.data.subarray(0, 16)), [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  });

  test('bad configs and batches are named', () => {
    assert.throws(() => CLIPImageProcessor.fromConfig({ resample: 4 }, 'cfg', quiet.warn), (e: Error) => e instanceof ConfigError && /"resample" 4 is not supported/.test(e.message));
    assert.throws(() => CLIPImageProcessor.fromConfig({ size: 'big' }, 'cfg', quiet.warn), ConfigError);
    // list-valued resample and non-numeric means were taken (or crashed) before: now named like DPT's
    assert.throws(() => CLIPImageProcessor.fromConfig({ resample: [3] }, 'cfg', quiet.warn), (e: Error) => e instanceof ConfigError && /resample/.test(e.message));
    assert.throws(() => CLIPImageProcessor.fromConfig({ image_mean: 'abc' }, 'cfg', quiet.warn), (e: Error) => e instanceof ConfigError && /image_mean/.test(e.message));
    assert.throws(() => CLIPImageProcessor.fromConfig({ crop_size: { shortest_edge: 3 } }, 'cfg', quiet.warn), /crop_size/);
    assert.throws(() => CLIPImageProcessor.fromConfig({ image_std: [1, 0, 1] }, 'cfg', quiet.warn), /image_std/);
    assert.throws(() => CLIPImageProcessor.fromPretrained(S, { subfolder: 'safety_checker' }), (e: Error) => e instanceof ConfigError && /no preprocessor_config\.json/.test(e.message));
    const p = CLIPImageProcessor.fromConfig({ do_center_crop: false, size: 2 }, 'cfg', quiet.warn);
    assert.throws(() => p.preprocess([RGBImage.blank(2, 2), RGBImage.blank(4, 2)]), (e: Error) => e instanceof InputError && /one size/.test(e.message));
    assert.throws(() => p.preprocess([]), InputError);
  });
});

describe('StableDiffusionSafetyChecker equals diffusers', () => {
  const c = byName('safety_checker.raw_images');
  for (const attention of ['fused', 'plain'] as const) {
    test(`${c.name}, ${attention} attention: tensors, scores, flags and zeroed images`, async () => {
      const checker = await StableDiffusionSafetyChecker.fromPretrained(join(S, 'safety_checker'), { ...quiet, trace: { attention } });
      try {
        const clipInput = ref.read(c.tensors['clip_input']!) as Tensor<'float32'>;
        const out = await checker.forward({ clipInput, images: clipInput });
        assertClose(out.pooledOutput, ref.read(c.tensors['pooled_output']!), TOL.pooled, 'pooled_output');
        assertClose(out.imageEmbeds, ref.read(c.tensors['image_embeds']!), TOL.imageEmbeds, 'image_embeds');
        assertClose(out.cosDist, ref.read(c.tensors['cos_dist']!), TOL.cos, 'cos_dist');
        assertClose(out.specialCosDist, ref.read(c.tensors['special_cos_dist']!), TOL.cos, 'special_cos_dist');
        assert.deepEqual(out.hasNsfwConcepts, c.has_nsfw_concepts);
        out.scores.forEach((s, i) => {
          const want = c.per_image![i]!;
          assert.deepEqual(s.conceptScores, want.concept_rounded, `image ${i} concept scores`);
          assert.deepEqual(s.specialScores, want.special_rounded, `image ${i} special-care scores`);
          assert.deepEqual(s.specialCare, want.special_care, `image ${i} special care`);
          assert.deepEqual(s.badConcepts, want.bad_concepts, `image ${i} bad concepts`);
        });
        const per = clipInput.data.length / 6;
        for (let i = 0; i < 6; i++) {
          const row = out.images!.data.subarray(i * per, (i + 1) * per);
          const want = c.images_out_zeroed_rows!.includes(i) ? new Float32Array(per) : clipInput.data.subarray(i * per, (i + 1) * per);
          assert.deepEqual(row, want, `images row ${i}`);
        }
        assert.notEqual(out.images!.data, clipInput.data, 'the input is not modified in place');
      } finally {
        await checker.release();
      }
    });
  }

  test("the decision on diffusers' cosines: all eight designed images, rounding edges included", () => {
    const thresholds = weights.read('concept_embeds_weights').data as Float32Array;
    const special = weights.read('special_care_embeds_weights').data as Float32Array;
    const sources: [Case, PerImage[]][] = [
      [c, c.per_image!],
      [byName('pipeline_sc_on'), byName('pipeline_sc_on').safety_checker!.per_image],
    ];
    for (const [k, perImage] of sources) {
      const cos = ref.read(k.tensors[k === c ? 'cos_dist' : 'safety_checker.cos_dist']!).data as Float32Array;
      const sc = ref.read(k.tensors[k === c ? 'special_cos_dist' : 'safety_checker.special_cos_dist']!).data as Float32Array;
      perImage.forEach((want, i) => {
        const d = nsfwDecision(cos.subarray(i * 17, (i + 1) * 17), sc.subarray(i * 3, (i + 1) * 3), thresholds, special);
        assert.deepEqual(d.conceptScores, want.concept_rounded, `${k.name} image ${i}`);
        assert.deepEqual(d.specialScores, want.special_rounded, `${k.name} image ${i}`);
        assert.deepEqual(d.badConcepts, want.bad_concepts, `${k.name} image ${i}`);
        assert.equal(d.hasNsfwConcept, want.has_nsfw_concept, `${k.name} image ${i}`);
      });
    }
    // numpy's round is half to even: +0.0005 → 0.0 (not flagged), +0.0015 → 0.002
    assert.deepEqual(nsfwDecision([0.5005], [], [0.5], []).conceptScores, [0]);
    assert.equal(nsfwDecision([0.5005], [], [0.5], []).hasNsfwConcept, false);
    assert.deepEqual(nsfwDecision([0.25], [], [0.2485], []).conceptScores, [0.002]);
    assert.throws(() => nsfwDecision([0.1], [], [0.1, 0.2], []), InputError);
  });

  test('bad inputs are named: wrong image size, batch mismatch', async () => {
    const checker = await StableDiffusionSafetyChecker.fromPretrained(join(S, 'safety_checker'), quiet);
    assert.equal(checker.imageSize, 32);
    await assert.rejects(checker.forward({ clipInput: Tensor.zeros([1, 3, 224, 224]) }), (e: Error) => e instanceof InputError && /clipInput must have shape \[\*, 3, 32, 32\]/.test(e.message));
    await assert.rejects(checker.forward({ clipInput: Tensor.zeros([2, 3, 32, 32]), images: Tensor.zeros([3, 3, 8, 8]) }), (e: Error) => e instanceof InputError && /images must have shape \[2/.test(e.message));
    const out = await checker.forward({ clipInput: Tensor.zeros([1, 3, 32, 32]) });
    assert.equal(out.images, null);
    await checker.release();
  });
});

describe('safety checker config and weights load strictly', () => {
  const raw = JSON.parse(readFileSync(join(S, 'safety_checker', 'config.json'), 'utf8')) as Record<string, unknown>;

  test("CLIPConfig: vision_config read, text_config ignored; SD 1.5's vision_config_dict overrides as in transformers", () => {
    const c = parseSafetyCheckerConfig(raw, 'config.json', quiet.warn);
    assert.equal(c.projectionDim, 16);
    assert.deepEqual(
      [c.visionConfig.hiddenSize, c.visionConfig.intermediateSize, c.visionConfig.numHiddenLayers, c.visionConfig.numAttentionHeads, c.visionConfig.patchSize, c.visionConfig.imageSize],
      [32, 64, 2, 4, 4, 32],
    );
    const legacy = parseSafetyCheckerConfig({ ...raw, vision_config_dict: { hidden_size: 1024, patch_size: 14, num_hidden_layers: 24, num_attention_heads: 16, intermediate_size: 4096 } }, 'sd15', quiet.warn);
    // every field vision_config_dict leaves out comes from CLIPVisionConfig's defaults, not from vision_config
    assert.deepEqual([legacy.visionConfig.hiddenSize, legacy.visionConfig.patchSize, legacy.visionConfig.imageSize], [1024, 14, 224]);
    assert.throws(() => parseSafetyCheckerConfig({ ...raw, model_type: 'clip_vision_model' }, 'cfg', quiet.warn), (e: Error) => e instanceof ConfigError && /not a CLIPConfig/.test(e.message));
    assert.throws(() => parseSafetyCheckerConfig({ ...raw, vision_config: { hidden_size: 30, num_attention_heads: 4 } }, 'cfg', quiet.warn), /not divisible/);
    assert.throws(() => parseSafetyCheckerConfig({ ...raw, vision_config: { hidden_act: 'relu6' } }, 'cfg', quiet.warn), /hidden_act/);
  });

  test('a missing or extra key is a WeightLoadError; the old position_ids buffer is not', async () => {
    const dir = tempDir('cnxs-safety-weights-');
    const write = (name: string, keys: string[], extra: { name: string; shape: number[] }[] = []) => {
      mkdirSync(join(dir, name));
      copyFileSync(join(S, 'safety_checker', 'config.json'), join(dir, name, 'config.json'));
      writeSafetensors(join(dir, name, 'model.safetensors'), [
        ...keys.map((k) => ({ name: k, dtype: 'F32' as const, shape: weights.tensors.get(k)!.shape, bytes: () => weights.readBytes(k) })),
        ...extra.map((e) => ({ name: e.name, dtype: 'I64' as const, shape: e.shape, bytes: () => new Uint8Array(8 * e.shape.reduce((a, b) => a * b, 1)) })),
      ]);
    };
    const all = weights.keys();
    write('missing', all.filter((k) => k !== 'special_care_embeds_weights'));
    write('buffer', all, [{ name: VISION_POSITION_IDS_KEY, shape: [1, 65] }]);
    write('extra', all, [{ name: 'text_model.embeddings.position_ids', shape: [1, 77] }]);
    await assert.rejects(StableDiffusionSafetyChecker.fromPretrained(join(dir, 'missing'), quiet), (e: Error) => e instanceof WeightLoadError && /special_care_embeds_weights/.test(e.message));
    await assert.rejects(StableDiffusionSafetyChecker.fromPretrained(join(dir, 'extra'), quiet), (e: Error) => e instanceof WeightLoadError && /text_model\.embeddings\.position_ids/.test(e.message));
    const ok = await StableDiffusionSafetyChecker.fromPretrained(join(dir, 'buffer'), quiet);
    assert.equal(ok.source.get(VISION_POSITION_IDS_KEY) !== undefined, true);
    writeFileSync(join(dir, 'missing', 'config.json'), JSON.stringify({ ...raw, projection_dim: 8 }));
    await assert.rejects(StableDiffusionSafetyChecker.fromPretrained(join(dir, 'missing'), quiet), WeightLoadError);
  });
});
