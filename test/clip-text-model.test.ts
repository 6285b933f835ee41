/**
 * CLIPTextModel / CLIPTextModelWithProjection against transformers 4.44 (eager attention, float32):
 * every case of the tiny pipelines' reference-text/ folders, whole tensors, tolerance
 * max(1e-5, 20 × the output's fp32-vs-fp64 hint), with both attention graphs. Masking, pooling and
 * activations not covered by the goldens are checked against a float64 re-implementation here.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, InputError, WeightLoadError } from '../src/errors.js';
import { OnnxDataType } from '../src/graph/onnx-proto.js';
import { parseCLIPTextConfig, type CLIPTextConfig } from '../src/models/clip-text-config.js';
import { CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text-model.js';
import { openWeights } from '../src/models/loading.js';
import { Tensor } from '../src/tensor.js';
import { loadSafetensorsSync, type SafetensorsFile } from '../src/weights/safetensors.js';
import { WeightSource, type WeightRef } from '../src/weights/source.js';
import { assertClose, fixture, maxAbsDiff } from './helpers.js';

interface TextCase {
  name: string;
  class: 'CLIPTextModel' | 'CLIPTextModelWithProjection';
  folder: string;
  inputs: { input_ids: string };
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number>;
}

const PIPELINES = ['tiny-sd-cnxs', 'tiny-sdxl-cnxs'];
const SD_TE = fixture('tiny-sd-cnxs', 'text_encoder');
const XL_TE2 = fixture('tiny-sdxl-cnxs', 'text_encoder_2');
const tolerance = (c: TextCase, out: string) => Math.max(1e-5, 20 * (c.max_abs_diff_fp32_vs_fp64[out] ?? 0));
const quiet = { warn: (m: string) => assert.fail(`unexpected warning: ${m}`) };
const ids = (rows: number[][]) => ({ data: BigInt64Array.from(rows.flat().map(BigInt)), dims: [rows.length, rows[0]!.length] });

/** The model output named like transformers' (`hidden_states.2` → hiddenStates[2]). */
function pick(out: { hiddenStates?: Tensor<'float32'>[] } & Record<string, unknown>, name: string): Tensor<'float32'> {
  const m = /^hidden_states\.(\d+)$/.exec(name);
  if (m) return out.hiddenStates![Number(m[1])]!;
  const camel = name.replace(/_([a-z])/g, (_, ch: string) => ch.toUpperCase());
  return out[camel] as Tensor<'float32'>;
}

for (const pipeline of PIPELINES) {
  const dir = fixture(pipeline, 'reference-text');
  const ref = loadSafetensorsSync(join(dir, 'tensors.safetensors'));
  const cases: TextCase[] = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
  for (const attention of ['fused', 'plain'] as const) {
    describe(`${pipeline} reference-text, ${attention} attention`, () => {
      for (const c of cases) {
        test(`${c.name} (${c.class}, ${c.folder})`, async (t) => {
          const folder = fixture(pipeline, c.folder);
          const opts = { ...quiet, trace: { attention } };
          const model =
            c.class === 'CLIPTextModel'
              ? await CLIPTextModel.fromPretrained(folder, opts)
              : await CLIPTextModelWithProjection.fromPretrained(folder, opts);
          try {
            const out = await model.forward(ref.read(c.inputs.input_ids), { outputHiddenStates: true });
            assert.equal(out.hiddenStates!.length, model.config.numHiddenLayers + 1);
            const report: string[] = [];
            for (const [name, key] of Object.entries(c.outputs)) {
              const got = pick(out as never, name);
              const want = ref.read(key);
              const d = maxAbsDiff(got, want);
              report.push(`${name} ${d.toExponential(2)} (tol ${tolerance(c, name).toExponential(2)})`);
              assert.ok(d <= tolerance(c, name), `${c.name} ${name}: max abs diff ${d} > ${tolerance(c, name)}`);
            }
            t.diagnostic(report.join('; '));
          } finally {
            await model.release();
          }
        });
      }
    });
  }
}

describe('config', () => {
  test('defaults are transformers’ CLIPTextConfig', () => {
    const c = parseCLIPTextConfig({}, 'x', quiet.warn);
    assert.deepEqual(
      [c.vocabSize, c.hiddenSize, c.intermediateSize, c.projectionDim, c.numHiddenLayers, c.numAttentionHeads, c.maxPositionEmbeddings],
      [49408, 512, 2048, 512, 12, 8, 77],
    );
    assert.deepEqual([c.hiddenAct, c.layerNormEps, c.padTokenId, c.bosTokenId, c.eosTokenId], ['quick_gelu', 1e-5, 1, 49406, 49407]);
  });

  test('PretrainedConfig’s generic keys are quiet; a truly unknown key is named', () => {
    const legacy = {
      _name_or_path: 'openai/clip-vit-large-patch14',
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      dropout: 0.0,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      model_type: 'clip_text_model',
      torch_dtype: 'float32',
      transformers_version: '4.22.0.dev0',
      gradient_checkpointing: false,
      id2label: { '0': 'LABEL_0' },
      label2id: { LABEL_0: 0 },
      bad_words_ids: null,
      chunk_size_feed_forward: 0,
      is_decoder: false,
      num_beams: 1,
      top_k: 50,
      return_dict: true,
      eos_token_id: 2,
    };
    const warnings: string[] = [];
    const c = parseCLIPTextConfig({ ...legacy, mystery_knob: 3 }, 'cfg.json', (m) => warnings.push(m));
    assert.equal(c.eosTokenId, 2);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /mystery_knob/);
    assert.doesNotMatch(warnings[0]!, /architectures|torch_dtype|id2label/);
  });

  test('invalid values are ConfigErrors naming the key', () => {
    assert.throws(() => parseCLIPTextConfig({ hidden_act: 'relu6' }, 'cfg.json', quiet.warn), (e: Error) => e instanceof ConfigError && /hidden_act/.test(e.message));
    assert.throws(() => parseCLIPTextConfig({ hidden_size: 30, num_attention_heads: 4 }, 'cfg.json', quiet.warn), (e: Error) => e instanceof ConfigError && /divisible/.test(e.message));
    assert.throws(() => parseCLIPTextConfig({ model_type: 'clip' }, 'cfg.json', quiet.warn), (e: Error) => e instanceof ConfigError && /model_type/.test(e.message));
  });
});

// ---- a float64 re-implementation of transformers' CLIP text forward, for one sequence ----------

interface RefOut {
  last: Float64Array; // [L, D]
  pooled: Float64Array; // [D]
}

function referenceForward(file: SafetensorsFile, c: CLIPTextConfig, row: number[], mask: number[] | null): RefOut {
  const W = (k: string) => Float64Array.from(file.readFloat32(k).data);
  const D = c.hiddenSize;
  const L = row.length;
  const H = c.numAttentionHeads;
  const dh = D / H;
  const tok = W('text_model.embeddings.token_embedding.weight');
  const pos = W('text_model.embeddings.position_embedding.weight');
  let x = new Float64Array(L * D);
  for (let i = 0; i < L; i++) for (let d = 0; d < D; d++) x[i * D + d] = tok[row[i]! * D + d]! + pos[i * D + d]!;
  const layerNorm = (v: Float64Array, p: string): Float64Array => {
    const w = W(`${p}.weight`);
    const b = W(`${p}.bias`);
    const o = new Float64Array(v.length);
    for (let i = 0; i < L; i++) {
      let mean = 0;
      for (let d = 0; d < D; d++) mean += v[i * D + d]!;
      mean /= D;
      let vr = 0;
      for (let d = 0; d < D; d++) vr += (v[i * D + d]! - mean) ** 2;
      const inv = 1 / Math.sqrt(vr / D + c.layerNormEps);
      for (let d = 0; d < D; d++) o[i * D + d] = (v[i * D + d]! - mean) * inv * w[d]! + b[d]!;
    }
    return o;
  };
  const linear = (v: Float64Array, p: string, inF: number, outF: number): Float64Array => {
    const w = W(`${p}.weight`);
    const b = W(`${p}.bias`);
    const o = new Float64Array(L * outF);
    for (let i = 0; i < L; i++) {
      for (let j = 0; j < outF; j++) {
        let s = b[j]!;
        for (let k = 0; k < inF; k++) s += v[i * inF + k]! * w[j * inF + k]!;
        o[i * outF + j] = s;
      }
    }
    return o;
  };
  const erf = (z: number): number => {
    // Simpson's rule on 2/√π·exp(−t²) over [0, z]: error far below 1e-12 for these arguments.
    const n = 2000;
    const h = z / n;
    let sum = 1 + Math.exp(-z * z);
    for (let i = 1; i < n; i++) sum += (i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
    return ((2 / Math.sqrt(Math.PI)) * sum * h) / 3;
  };
  const act = (v: number): number => {
    switch (c.hiddenAct) {
      case 'quick_gelu':
        return v / (1 + Math.exp(-1.702 * v));
      case 'gelu':
        return 0.5 * v * (1 + erf(v / Math.SQRT2));
      default:
        return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    }
  };
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = `text_model.encoder.layers.${l}`;
    const hIn = layerNorm(x, `${p}.layer_norm1`);
    const q = linear(hIn, `${p}.self_attn.q_proj`, D, D);
    const k = linear(hIn, `${p}.self_attn.k_proj`, D, D);
    const v = linear(hIn, `${p}.self_attn.v_proj`, D, D);
    const ctx = new Float64Array(L * D);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const s: number[] = [];
        for (let j = 0; j <= i; j++) {
          if (mask && mask[j] === 0) continue;
          let dot = 0;
          for (let e = 0; e < dh; e++) dot += q[i * D + h * dh + e]! * k[j * D + h * dh + e]!;
          s[j] = dot / Math.sqrt(dh);
        }
        const keys = s.flatMap((val, j) => (val === undefined ? [] : [j]));
        const m = Math.max(...keys.map((j) => s[j]!));
        const den = keys.reduce((a, j) => a + Math.exp(s[j]! - m), 0);
        for (const j of keys) {
          const pr = Math.exp(s[j]! - m) / den;
          for (let e = 0; e < dh; e++) ctx[i * D + h * dh + e]! += pr * v[j * D + h * dh + e]!;
        }
      }
    }
    const attn = linear(ctx, `${p}.self_attn.out_proj`, D, D);
    const h1 = x.map((val, i) => val + attn[i]!);
    const f = linear(layerNorm(h1, `${p}.layer_norm2`), `${p}.mlp.fc1`, D, c.intermediateSize).map(act);
    const mlp = linear(f, `${p}.mlp.fc2`, c.intermediateSize, D);
    x = h1.map((val, i) => val + mlp[i]!);
  }
  const last = layerNorm(x, 'text_model.final_layer_norm');
  const at = c.eosTokenId === 2 ? row.indexOf(Math.max(...row)) : Math.max(0, row.indexOf(c.eosTokenId));
  return { last, pooled: last.slice(at * D, (at + 1) * D) };
}

describe('behaviour beyond the goldens (vs a float64 re-implementation)', () => {
  const file = loadSafetensorsSync(join(SD_TE, 'model.safetensors'));
  const raw = JSON.parse(readFileSync(join(SD_TE, 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = parseCLIPTextConfig(raw, 'sd text_encoder', quiet.warn);
  let source: WeightSource;
  before(async () => {
    source = await openWeights(SD_TE, 'model');
  });
  const bird = [49406, 320, 1125, 539, 320, 3329, 49407, ...Array(70).fill(49407)];
  const other = [49406, 1200, 4000, 28, 9, 49407, ...Array(71).fill(49407)];

  /** fp32 graph vs float64 reference: fp32 rounding noise is ~2e-6 here (see the goldens' hints). */
  const REF_TOL = 2e-5;
  let worst = 0;
  const compare = (got: Tensor<'float32'>, want: Float64Array, offset: number, what: string) => {
    const slice = { data: got.data.subarray(offset, offset + want.length), dims: [want.length] };
    const d = maxAbsDiff(slice, { data: Float32Array.from(want), dims: [want.length] });
    worst = Math.max(worst, d);
    assert.ok(d <= REF_TOL, `${what}: max abs diff ${d.toExponential(3)} vs float64 reference exceeds ${REF_TOL}`);
  };
  after(() => console.log(`largest diff vs the float64 re-implementation: ${worst.toExponential(2)} (tol ${REF_TOL})`));

  for (const attention of ['fused', 'plain'] as const) {
    test(`padding mask (right padding, a hole, per-row masks) is combined with the causal mask — ${attention}`, async () => {
      const model = CLIPTextModel.fromSource(config, source, { trace: { attention } });
      const maskA = bird.map((_, i) => (i <= 6 ? 1 : 0));
      const maskB = other.map((_, i) => (i === 2 || i > 40 ? 0 : 1));
      const out = await model.forward(ids([bird, other]), { attentionMask: { data: BigInt64Array.from([...maskA, ...maskB].map(BigInt)), dims: [2, 77] } });
      const D = config.hiddenSize;
      const a = referenceForward(file, config, bird, maskA);
      const b = referenceForward(file, config, other, maskB);
      compare(out.lastHiddenState, a.last, 0, 'row 0 last_hidden_state');
      compare(out.lastHiddenState, b.last, 77 * D, 'row 1 last_hidden_state');
      compare(out.poolerOutput, a.pooled, 0, 'row 0 pooled');
      compare(out.poolerOutput, b.pooled, D, 'row 1 pooled');
      // the masked positions after the prompt really changed
      const unmasked = referenceForward(file, config, bird, null);
      assert.ok(Math.abs(unmasked.last[40 * D]! - a.last[40 * D]!) > 1e-4);
      await model.release();
    });
  }

  test('short sequences, and no eos in a row → pooled at position 0', async () => {
    const model = CLIPTextModel.fromSource(config, source);
    const row = [49406, 320, 1125, 539, 320];
    const out = await model.forward(ids([row]));
    assert.deepEqual([...out.lastHiddenState.dims], [1, 5, config.hiddenSize]);
    const r = referenceForward(file, config, row, null);
    compare(out.lastHiddenState, r.last, 0, 'last_hidden_state');
    compare(out.poolerOutput, r.last.slice(0, config.hiddenSize), 0, 'pooled at 0');
    await model.release();
  });

  test('legacy eos_token_id 2 pools at the largest id; the eos rule pools at the first eos', async () => {
    const row = [49406, 320, 49407, 539, 49407, 3329, 7, 8];
    for (const eos of [2, 539]) {
      const c = parseCLIPTextConfig({ ...raw, eos_token_id: eos }, 'x', quiet.warn);
      const model = CLIPTextModel.fromSource(c, source);
      const out = await model.forward(ids([row]));
      const r = referenceForward(file, c, row, null);
      const at = eos === 2 ? 2 : 3;
      compare(out.poolerOutput, r.last.slice(at * c.hiddenSize, (at + 1) * c.hiddenSize), 0, `eos ${eos}`);
      await model.release();
    }
  });

  for (const act of ['quick_gelu', 'gelu_new', 'gelu_pytorch_tanh'] as const) {
    test(`hidden_act ${act}`, async () => {
      const c = parseCLIPTextConfig({ ...raw, hidden_act: act }, 'x', quiet.warn);
      const model = CLIPTextModel.fromSource(c, source);
      const out = await model.forward(ids([bird]));
      compare(out.lastHiddenState, referenceForward(file, c, bird, null).last, 0, act);
      await model.release();
    });
  }
});

test('fp16 variant: initializers stay FLOAT16 in their file, outputs are float32 near the fp32 reference', async (t) => {
  const ref = loadSafetensorsSync(fixture('tiny-sd-cnxs', 'reference-text', 'tensors.safetensors'));
  const m16 = await CLIPTextModel.fromPretrained(SD_TE, { ...quiet, variant: 'fp16' });
  const init = m16.toOnnx().graph.initializers.find((t) => t.name === 'text_model.embeddings.token_embedding.weight')!;
  assert.equal(init.dataType, OnnxDataType.FLOAT16);
  assert.ok(init.external?.location.endsWith('model.fp16.safetensors'));
  const out = await m16.forward(ref.read('text_encoder.input_ids'), { outputHiddenStates: true });
  assert.equal(out.lastHiddenState.dtype, 'float32');
  // fp16 rounding of the weights (2^-11 relative) through 3 layers of a width-32 model gives ≈3.5e-3
  // on |x| ≲ 4; the bound leaves about 3× room.
  const FP16_TOL = 1e-2;
  assertClose(out.lastHiddenState, ref.read('text_encoder.last_hidden_state'), FP16_TOL, 'fp16 last_hidden_state');
  assertClose(out.poolerOutput, ref.read('text_encoder.pooler_output'), FP16_TOL, 'fp16 pooler_output');
  assertClose(out.hiddenStates![3]!, ref.read('text_encoder.hidden_states.3'), FP16_TOL, 'fp16 hidden_states.3');
  const d = maxAbsDiff(out.lastHiddenState, ref.read('text_encoder.last_hidden_state'));
  assert.ok(d > 1e-6, 'fp16 weights should differ from fp32 at all');
  t.diagnostic(`fp16 last_hidden_state max abs diff ${d.toExponential(2)} (tol ${FP16_TOL}), pooler_output ${maxAbsDiff(out.poolerOutput, ref.read('text_encoder.pooler_output')).toExponential(2)}`);
  await m16.release();
});

// ---- checkpoints on disk with edited key sets ---------------------------------------------------

/** Write a safetensors file: every tensor of `from` except `drop`, plus `extra` (name → dtype, shape, bytes). */
function writeEdited(path: string, from: SafetensorsFile, drop: string[], extra: Record<string, { dtype: string; shape: number[]; bytes: Uint8Array }>): void {
  const entries: [string, { dtype: string; shape: number[]; bytes: Uint8Array }][] = from
    .keys()
    .filter((k) => !drop.includes(k))
    .map((k) => [k, { dtype: from.info(k).dtype, shape: [...from.info(k).shape], bytes: from.readBytes(k) }]);
  entries.push(...Object.entries(extra));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [k, e] of entries) {
    header[k] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([head, Buffer.from(json), ...entries.map(([, e]) => Buffer.from(e.bytes))]));
}

describe('strict loading', () => {
  let tmp: string;
  const file = loadSafetensorsSync(join(SD_TE, 'model.safetensors'));
  const positionIds = { dtype: 'I64', shape: [1, 77], bytes: new Uint8Array(BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)).buffer) };
  const folder = (name: string, drop: string[], extra: Parameters<typeof writeEdited>[3]): string => {
    const d = join(tmp, name);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    copyFileSync(join(SD_TE, 'config.json'), join(d, 'config.json'));
    writeEdited(join(d, 'model.safetensors'), file, drop, extra);
    return d;
  };
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'clip-text-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('a text_model.embeddings.position_ids buffer is accepted and ignored', async () => {
    const ref = loadSafetensorsSync(fixture('tiny-sd-cnxs', 'reference-text', 'tensors.safetensors'));
    const model = await CLIPTextModel.fromPretrained(folder('with-position-ids', [], { 'text_model.embeddings.position_ids': positionIds }), quiet);
    const out = await model.forward(ref.read('text_encoder.input_ids'));
    assertClose(out.lastHiddenState, ref.read('text_encoder.last_hidden_state'), 4e-5, 'with position_ids');
    await model.release();
  });

  test('a missing key is a WeightLoadError naming it', async () => {
    const key = 'text_model.encoder.layers.1.mlp.fc2.bias';
    await assert.rejects(CLIPTextModel.fromPretrained(folder('missing', [key], {}), quiet), (e: Error) => e instanceof WeightLoadError && e.message.includes(key) && /missing/.test(e.message));
  });

  test('an unused key (even one named like a buffer) is a WeightLoadError naming it', async () => {
    const key = 'text_model.embeddings.position_ids_extra';
    await assert.rejects(CLIPTextModel.fromPretrained(folder('unused', [], { [key]: positionIds }), quiet), (e: Error) => e instanceof WeightLoadError && e.message.includes(key) && /unused/.test(e.message));
  });

  test('text_projection.weight: required by WithProjection, unused for CLIPTextModel', async () => {
    await assert.rejects(CLIPTextModel.fromPretrained(XL_TE2, quiet), (e: Error) => e instanceof WeightLoadError && e.message.includes('text_projection.weight'));
    await assert.rejects(CLIPTextModelWithProjection.fromPretrained(SD_TE, quiet), (e: Error) => e instanceof WeightLoadError && e.message.includes('text_projection.weight'));
  });

  test('a mis-shaped key is a WeightLoadError with both shapes', async () => {
    const src = await openWeights(SD_TE, 'model');
    const entries = new Map<string, WeightRef>(src.keys().map((k) => [k, src.get(k)!]));
    const cfg = parseCLIPTextConfig({ intermediate_size: 48, hidden_size: 32, num_attention_heads: 4, num_hidden_layers: 3, hidden_act: 'gelu' }, 'x', quiet.warn);
    assert.throws(() => CLIPTextModel.fromSource(cfg, new WeightSource(entries, 'edited')), (e: Error) => e instanceof WeightLoadError && /mlp\.fc1\.weight: checkpoint has \[64, 32\], model expects \[48, 32\]/.test(e.message));
  });
});

describe('inputs', () => {
  let model: CLIPTextModel;
  before(async () => {
    model = await CLIPTextModel.fromPretrained(SD_TE, quiet);
  });
  after(() => model.release());
  const row = [49406, 320, 49407];
  const isInput = (re: RegExp) => (e: Error) => e instanceof InputError && re.test(e.message);

  test('Float32Array ids are an InputError', async () => {
    await assert.rejects(model.forward({ data: Float32Array.from(row), dims: [1, 3] }), isInput(/BigInt64Array.*Float32Array/));
  });
  test('wrong rank, too long, out-of-vocabulary ids are InputErrors', async () => {
    await assert.rejects(model.forward({ data: BigInt64Array.from(row.map(BigInt)), dims: [3] }), isInput(/\[batch, sequence\]/));
    await assert.rejects(model.forward(ids([Array(78).fill(49407)])), isInput(/78.*max_position_embeddings 77/));
    await assert.rejects(model.forward(ids([[49406, 49408]])), isInput(/inputIds\[0\]\[1\] = 49408/));
    await assert.rejects(model.forward(ids([[49406, -1]])), isInput(/= -1/));
  });
  test('attentionMask of the wrong shape or with values other than 0/1 is an InputError', async () => {
    await assert.rejects(model.forward(ids([row]), { attentionMask: { data: Float32Array.of(1, 1), dims: [1, 2] } }), isInput(/shape of inputIds/));
    await assert.rejects(model.forward(ids([row]), { attentionMask: { data: Float32Array.of(1, 0.5, 1), dims: [1, 3] } }), isInput(/only 0 and 1/));
  });
  test('hiddenStates only when asked', async () => {
    const plain = await model.forward(ids([row]));
    assert.equal(plain.hiddenStates, undefined);
    const all = await model.forward(ids([row]), { outputHiddenStates: true });
    assert.equal(all.hiddenStates!.length, 4);
    assert.deepEqual([...plain.lastHiddenState.data], [...all.lastHiddenState.data]);
  });
});
