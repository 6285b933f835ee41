/**
 * Textual inversion against diffusers 0.33.1 (test/fixtures/adapters/ti: the reference's `ti.*`, `file.ti/*`
 * and `pipe.*.ti` cases and files): added tokens and ids, the new embedding rows, `maybe_convert_prompt`
 * strings and their tokenization (diffusers' `emb_params` and `T_1` pitfalls included), the converted
 * prompts' ids, `encode_prompt` embeddings, whole pipeline runs; then bad input (each a named error that
 * leaves the pipeline as it was), unloading, the Hub, and `cnxs generate --embedding`.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HELP, generate, parseEmbeddingOption, parseGenerateArgs, type GenerateOptions } from '../src/cli/generate.js';
import { UsageError } from '../src/cli/usage.js';
import { InputError, MissingWeightsError, SecurityError } from '../src/errors.js';
import { loadImage } from '../src/image/load.js';
import { ADDED_TOKEN_EMBEDDINGS, CLIPTextModel, CLIPTextModelWithProjection } from '../src/models/clip-text-model.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline, type StableDiffusionXLControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import {
  TextualInversionDimensionError,
  TextualInversionError,
  TextualInversionFormatError,
  TextualInversionTokenError,
} from '../src/pipelines/textual-inversion.js';
import { Generator } from '../src/random/index.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor, type TensorLike } from '../src/tensor.js';
import { CLIPTokenizer } from '../src/tokenizer/index.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { startHub } from './fake-hub.js';
import { assertClose, fixture, maxAbsDiff, tempDir } from './helpers.js';
import { callArgs, readCases, tolerance, type PipelineCase } from './pipeline-cases.js';

const A = fixture('adapters', 'ti');
const SD = fixture('tiny-sd-cnxs');
const XL = fixture('tiny-sdxl-cnxs');
const { cases, read } = readCases(A);
/** A file of the reference's adapters folder, by the path its cases give (`ti/sd/…`). */
const file = (path: string) => join(fixture('adapters'), path);
const quiet = { warn: () => {} };

interface TokenizerCase {
  len_tokenizer: number;
  added_tokens: Record<string, number>;
  embedding_rows: number;
  maybe_convert_prompt: string[];
  tokenize_converted: string[][];
}
interface TiCase {
  name: string;
  recipe: { ti: { path: string; token: string | null; key?: string; target?: string }[] };
  prompts: string[];
  tokenizers: Record<string, TokenizerCase>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number>;
}
const tiCase = (name: string) => cases.find((c) => c.name === name) as unknown as TiCase;
const pipeCase = (name: string) => cases.find((c) => c.name === name) as PipelineCase & { recipe: TiCase['recipe'] };
const embTol = (c: { max_abs_diff_fp32_vs_fp64: Record<string, number> }, what: string) => Math.max(1e-5, 20 * (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));

let sdBase: StableDiffusionControlNetXSPipeline;
let xlBase: StableDiffusionXLControlNetXSPipeline;
before(async () => {
  sdBase = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')) });
  xlBase = await StableDiffusionXLControlNetXSPipeline.fromPretrained(XL, { controlnet: await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet')) });
});

/** An SD pipeline with a text encoder and tokenizer of its own (textual inversion changes both). */
async function freshSD(): Promise<StableDiffusionControlNetXSPipeline> {
  return new StableDiffusionControlNetXSPipeline({
    ...sdBase.components,
    textEncoder: await CLIPTextModel.fromPretrained(join(SD, 'text_encoder')),
    tokenizer: await CLIPTokenizer.fromPretrained(SD, { subfolder: 'tokenizer' }),
  });
}

async function freshXL(): Promise<StableDiffusionXLControlNetXSPipeline> {
  return new StableDiffusionXLControlNetXSPipeline({
    ...xlBase.components,
    textEncoder: await CLIPTextModel.fromPretrained(join(XL, 'text_encoder')),
    textEncoder2: await CLIPTextModelWithProjection.fromPretrained(join(XL, 'text_encoder_2')),
    tokenizer: await CLIPTokenizer.fromPretrained(XL, { subfolder: 'tokenizer' }),
    tokenizer2: await CLIPTokenizer.fromPretrained(XL, { subfolder: 'tokenizer_2' }),
  });
}

/** Row i of a [N, …] tensor. */
function row(t: TensorLike, i: number): Tensor<'float32'> {
  const per = t.data.length / t.dims[0]!;
  return new Tensor('float32', (t.data as Float32Array).slice(i * per, (i + 1) * per), t.dims.slice(1));
}

/** Everything a `ti_prompt` case pins for one tokenizer / text encoder, exactly. */
function checkTokenizer(c: TiCase, key: 'tokenizer' | 'tokenizer_2', tokenizer: CLIPTokenizer, encoder: CLIPTextModel | CLIPTextModelWithProjection, convert: (p: string) => string): void {
  const ref = c.tokenizers[key]!;
  const encoderName = key === 'tokenizer' ? 'text_encoder' : 'text_encoder_2';
  assert.equal(tokenizer.length, ref.len_tokenizer, `${key}: len(tokenizer)`);
  assert.deepEqual(Object.fromEntries(tokenizer.runtimeTokens.map((t) => [t, tokenizer.tokenId(t)])), ref.added_tokens, `${key}: added tokens and ids`);
  assert.equal(encoder.numTokenEmbeddings, ref.embedding_rows, `${encoderName}: embedding rows`);
  // the new rows are the file's vectors, copied: bit for bit
  assertClose(encoder.addedTokenEmbeddings!, read(c.outputs[`${encoderName}.new_embedding_rows`]!), 0, `${encoderName}: new rows`);
  const ids = read(c.outputs[`input_ids.${key}`]!);
  c.prompts.forEach((p, i) => {
    const converted = convert(p);
    assert.equal(converted, ref.maybe_convert_prompt[i], `${key}: maybe_convert_prompt(${JSON.stringify(p)})`);
    assert.deepEqual(tokenizer.tokenize(converted), ref.tokenize_converted[i], `${key}: tokenize(${JSON.stringify(converted)})`);
    const got = tokenizer.call(converted, { padding: 'max_length', maxLength: 77, truncation: true }).inputIds;
    assert.deepEqual([...got.data], [...row(ids, i).data].map(BigInt), `${key}: input ids of ${JSON.stringify(converted)}`);
  });
}

/** diffusers' recipe: one load per entry, as `gen_adapters` does. */
async function loadRecipe(pipe: StableDiffusionControlNetXSPipeline, c: { recipe: TiCase['recipe'] }): Promise<void> {
  for (const t of c.recipe.ti) await pipe.loadTextualInversion(file(t.path), { ...(t.token !== null ? { token: t.token } : {}), ...quiet });
}

describe('SD: the reference token cases', () => {
  for (const name of ['ti.sd', 'ti.sd_from_emb_params']) {
    test(`${name}: tokens, ids, rows, converted prompts, their ids and encode_prompt`, async () => {
      const c = tiCase(name);
      const pipe = await freshSD();
      await loadRecipe(pipe, c);
      checkTokenizer(c, 'tokenizer', pipe.tokenizer, pipe.textEncoder, (p) => pipe.maybeConvertPrompt(p, pipe.tokenizer));
      const out = await pipe.encodePrompt(c.prompts[0], { numImagesPerPrompt: 1, doClassifierFreeGuidance: true, negativePrompt: c.prompts[1]! });
      assertClose(out.promptEmbeds, read(c.outputs['prompt_embeds']!), embTol(c, 'prompt_embeds'), 'prompt_embeds');
      assertClose(out.negativePromptEmbeds!, read(c.outputs['negative_prompt_embeds']!), embTol(c, 'negative_prompt_embeds'), 'negative_prompt_embeds');
    });
  }

  test('the files: diffusers format (token = key), A1111 .pt (token = name, read without running the pickle), A1111 safetensors (token "emb_params")', async () => {
    const rows = read(tiCase('ti.sd').outputs['text_encoder.new_embedding_rows']!);
    const one = await freshSD();
    assert.deepEqual(await one.loadTextualInversion(file('ti/sd/learned_embeds.safetensors')), [{ textEncoder: 'text_encoder', tokens: ['<cat-toy>'], ids: [49408] }]);
    const pt = await freshSD();
    assert.deepEqual((await pt.loadTextualInversion(file('ti/sd/neg-emb.pt')))[0]!.tokens, ['neg-emb', 'neg-emb_1', 'neg-emb_2']);
    assertClose(pt.textEncoder.addedTokenEmbeddings!, new Tensor('float32', (rows.data as Float32Array).slice(32), [3, 32]), 0, 'A1111 .pt rows');

    // diffusers' first pitfall: a one-key {'emb_params': …} file is "diffusers format", so its token is the key
    const warnings: string[] = [];
    const st = await freshSD();
    const loaded = await st.loadTextualInversion(file('ti/sd/neg-emb.safetensors'), { warn: (m) => warnings.push(m) });
    assert.deepEqual(loaded[0]!.tokens, ['emb_params', 'emb_params_1', 'emb_params_2']); // the README's probe
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /literal token "emb_params".*pass token/);
    assert.equal(st.maybeConvertPrompt('emb_params, blurry', st.tokenizer), 'emb_params emb_params_1 emb_params_2, blurry');
    assertClose(st.textEncoder.addedTokenEmbeddings!, pt.textEncoder.addedTokenEmbeddings!, 0, 'same vectors as the .pt');
  });

  test('several sources in one call, tokens per source; a later load continues the ids', async () => {
    const c = tiCase('ti.sd_from_emb_params');
    const pipe = await freshSD();
    await pipe.loadTextualInversion([file('ti/sd/learned_embeds.safetensors'), file('ti/sd/neg-emb.safetensors')], { token: ['<cat-toy>', 'neg-emb'] });
    checkTokenizer(c, 'tokenizer', pipe.tokenizer, pipe.textEncoder, (p) => pipe.maybeConvertPrompt(p, pipe.tokenizer));
    const more = await pipe.loadTextualInversion({ data: new Float32Array(32).fill(0.5), dims: [1, 32] }, { token: '<half>' });
    assert.deepEqual(more[0]!.ids, [49412]);
    assert.equal(pipe.textEncoder.numTokenEmbeddings, 49413);
    assert.deepEqual(pipe.tokenizer.call('<half>').inputIds.data, BigInt64Array.of(49406n, 49412n, 49407n));
  });
});

describe('SDXL: {clip_l, clip_g} into both encoders', () => {
  const c = tiCase('ti.xl');
  const check = async (pipe: StableDiffusionXLControlNetXSPipeline) => {
    checkTokenizer(c, 'tokenizer', pipe.tokenizer, pipe.textEncoder, (p) => pipe.maybeConvertPrompt(p, pipe.tokenizer));
    checkTokenizer(c, 'tokenizer_2', pipe.tokenizer2, pipe.textEncoder2, (p) => pipe.maybeConvertPrompt(p, pipe.tokenizer2));
    const emb = await pipe.encodePrompt({ prompt: c.prompts[0]!, negativePrompt: c.prompts[1]! }, { numImagesPerPrompt: 1, doClassifierFreeGuidance: true });
    assertClose(emb.promptEmbeds, read(c.outputs['prompt_embeds']!), embTol(c, 'prompt_embeds'), 'prompt_embeds');
    assertClose(emb.negativePromptEmbeds!, read(c.outputs['negative_prompt_embeds']!), embTol(c, 'negative_prompt_embeds'), 'negative_prompt_embeds');
    // text_encoder_2 pools at the largest id (eos_token_id 2): an added token's position when the prompt has one
    assertClose(emb.pooledPromptEmbeds, read(c.outputs['pooled_prompt_embeds']!), embTol(c, 'pooled_prompt_embeds'), 'pooled_prompt_embeds');
    assertClose(emb.negativePooledPromptEmbeds!, read(c.outputs['negative_pooled_prompt_embeds']!), embTol(c, 'negative_pooled_prompt_embeds'), 'negative_pooled');
  };

  test('one call with the file and a token splits it', async () => {
    const pipe = await freshXL();
    const loaded = await pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors'), { token: '<xl-style>' });
    assert.deepEqual(loaded.map((l) => l.textEncoder), ['text_encoder', 'text_encoder_2']);
    await check(pipe);
  });

  test('two calls with tensors and textEncoder/tokenizer, as diffusers documents', async () => {
    const pipe = await freshXL();
    const sd = loadSafetensorsSync(file('ti/sdxl/xl_embedding.safetensors'));
    await pipe.loadTextualInversion(sd.read('clip_l'), { token: '<xl-style>', textEncoder: pipe.textEncoder, tokenizer: pipe.tokenizer });
    await pipe.loadTextualInversion(sd.read('clip_g'), { token: '<xl-style>', textEncoder: pipe.textEncoder2, tokenizer: pipe.tokenizer2 });
    await check(pipe);
  });

  test('the file with one encoder named takes that encoder\'s half; without a token it is refused', async () => {
    const pipe = await freshXL();
    await pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors'), { token: '<xl-style>', textEncoder: pipe.textEncoder2 });
    assert.deepEqual(pipe.tokenizer.runtimeTokens, []);
    assert.deepEqual(pipe.tokenizer2.runtimeTokens, ['<xl-style>', '<xl-style>_1']);
    assertClose(pipe.textEncoder2.addedTokenEmbeddings!, read(c.outputs['text_encoder_2.new_embedding_rows']!), 0, 'clip_g rows');
    await assert.rejects(pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors')), (e: unknown) => e instanceof TextualInversionFormatError && /carries no token/.test(e.message));
    // a plain embedding goes to the first encoder only, as diffusers' default tokenizer / text_encoder
    await pipe.loadTextualInversion({ data: new Float32Array(32), dims: [32] }, { token: '<l-only>' });
    assert.deepEqual(pipe.tokenizer.runtimeTokens, ['<l-only>']);
    assert.deepEqual(pipe.tokenizer2.runtimeTokens, ['<xl-style>', '<xl-style>_1']);
  });
});

describe('pipelines equal diffusers with textual inversion loaded', () => {
  const run = async (
    p: StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline,
    c: PipelineCase,
    args: StableDiffusionControlNetXSCallArgs | StableDiffusionXLControlNetXSCallArgs,
  ) => {
    const T = (k: string) => read(c.tensors[k]!);
    const seenIds: Tensor[] = [];
    const te = p.textEncoder;
    const forward = te.forward.bind(te);
    te.forward = (ids, o) => (seenIds.push(Tensor.from(ids)), forward(ids, o));
    let step0: Tensor | undefined;
    const unetForward = p.unet.forward.bind(p.unet);
    p.unet.forward = (a) => ((step0 ??= Tensor.from(a.encoderHiddenStates)), unetForward(a));
    const steps: Tensor<'float32'>[] = [];
    const timesteps: number[] = [];
    const record = (t: number, latents: Tensor<'float32'>) => void (timesteps.push(t), steps.push(latents));
    const out =
      p instanceof StableDiffusionXLControlNetXSPipeline
        ? await p.run({ ...(args as StableDiffusionXLControlNetXSCallArgs), outputType: 'np', callbackOnStepEnd: (_p, _i, t, { latents }) => record(t, latents) })
        : await p.run({ ...(args as StableDiffusionControlNetXSCallArgs), outputType: 'np', callbackOnStepEnd: (_p, _i, t, { latents }) => record(t, latents) });
    assert.deepEqual(timesteps, [...T('timesteps').data].map(Number), 'timesteps');
    assert.deepEqual([...seenIds[0]!.data], [...T('input_ids.text_encoder.prompt').data], 'prompt ids');
    if (c.tensors['input_ids.text_encoder.negative_prompt']) assert.deepEqual([...seenIds[1]!.data], [...T('input_ids.text_encoder.negative_prompt').data], 'negative ids');
    assertClose(step0!, T('unet_step0.encoder_hidden_states'), tolerance(c, 'prompt_embeds', 1e-5), 'encoder_hidden_states at step 0');
    const each = T('latents_after_each_step');
    steps.forEach((s, i) => assertClose(s, row(each, i), tolerance(c, 'latents_final', 1e-4), `latents after step ${i}`));
    assertClose(out.images as Tensor, T('images'), tolerance(c, 'images', 1e-4), 'images');
  };

  for (const name of ['pipe.sd.ti', 'pipe.sd.ti_from_emb_params']) {
    test(name, async () => {
      const c = pipeCase(name);
      const pipe = await freshSD();
      await loadRecipe(pipe, c);
      pipe.scheduler = schedulerFromConfig(c.scheduler.config);
      const args = callArgs<StableDiffusionControlNetXSCallArgs>(c, join(SD, 'pipeline'), read);
      await run(pipe, c, { ...args, image: join(SD, 'pipeline', 'control.png') });
    });
  }

  test('pipe.xl.ti', async () => {
    const c = pipeCase('pipe.xl.ti');
    const pipe = await freshXL();
    await pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors'), { token: '<xl-style>' });
    pipe.scheduler = schedulerFromConfig(c.scheduler.config);
    const args = callArgs<StableDiffusionXLControlNetXSCallArgs>(c, join(XL, 'pipeline'), read);
    const seen2: Tensor[] = [];
    const te2 = pipe.textEncoder2;
    const forward2 = te2.forward.bind(te2);
    te2.forward = (ids, o) => (seen2.push(Tensor.from(ids)), forward2(ids, o));
    // control_xl.png of the reference is byte-identical to tiny-sdxl-cnxs/pipeline/control.png
    await run(pipe, c, { ...args, image: join(XL, 'pipeline', 'control.png') });
    assert.deepEqual([...seen2[0]!.data], [...read(c.tensors['input_ids.text_encoder_2.prompt']!).data], 'tokenizer_2 prompt ids');
  });
});

describe('bad input: a named error, and the pipeline stays as it was', () => {
  /** Tokens, rows and the encoding of a prompt before and after a failed load must be the same. */
  const unchanged = async (pipe: StableDiffusionControlNetXSPipeline, attempt: () => Promise<unknown>, error: (e: unknown) => boolean) => {
    const before = { tokens: [...pipe.tokenizer.runtimeTokens], length: pipe.tokenizer.length, rows: pipe.textEncoder.numTokenEmbeddings };
    const prompt = 'a photo of <cat-toy> on a beach, neg-emb';
    const emb0 = (await pipe.encodePrompt(prompt, { numImagesPerPrompt: 1, doClassifierFreeGuidance: false })).promptEmbeds;
    await assert.rejects(attempt(), error);
    assert.deepEqual({ tokens: [...pipe.tokenizer.runtimeTokens], length: pipe.tokenizer.length, rows: pipe.textEncoder.numTokenEmbeddings }, before);
    const emb1 = (await pipe.encodePrompt(prompt, { numImagesPerPrompt: 1, doClassifierFreeGuidance: false })).promptEmbeds;
    assert.equal(maxAbsDiff(emb1, emb0), 0, 'same embeddings after the failed load');
  };
  const named = (cls: new (...a: never[]) => Error, pattern: RegExp) => (e: unknown) => e instanceof cls && e instanceof Error && pattern.test(e.message);

  test('an embedding whose width is not the text encoder\'s', async () => {
    const pipe = await freshSD();
    await unchanged(pipe, () => pipe.loadTextualInversion({ data: new Float32Array(2 * 16), dims: [2, 16] }, { token: '<wide>' }), named(TextualInversionDimensionError, /16 wide.*32 wide/));
    // several sources: the first is fine, the second too wide — neither is loaded
    await unchanged(
      pipe,
      () => pipe.loadTextualInversion([file('ti/sd/learned_embeds.safetensors'), { data: new Float32Array(48), dims: [48] }], { token: ['<cat-toy>', '<wide>'] }),
      named(TextualInversionDimensionError, /<wide>/),
    );
    // SDXL's clip_g half into SD's encoder (both 32 wide here, so: the one-encoder pipeline refuses the SDXL layout)
    await unchanged(pipe, () => pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors'), { token: '<xl>' }), named(TextualInversionFormatError, /text_encoder_2/));
    // still usable: a good load works afterwards
    await pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors'));
    assert.deepEqual(pipe.tokenizer.runtimeTokens, ['<cat-toy>']);
  });

  test('a token already in the vocabulary (diffusers\' error), vectors T_1 already there, duplicates', async () => {
    const pipe = await freshSD();
    await pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors'));
    await unchanged(
      pipe,
      () => pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors')),
      named(TextualInversionTokenError, /^Token <cat-toy> already in tokenizer vocabulary\. Please choose a different token name or remove <cat-toy> and embedding from the tokenizer and text encoder\.$/),
    );
    // a vocab.json entry counts too ("cat" is one)
    await unchanged(pipe, () => pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors'), { token: 'cat' }), named(TextualInversionTokenError, /^Token cat already in tokenizer vocabulary/));
    await pipe.loadTextualInversion({ data: new Float32Array(32), dims: [32] }, { token: '<m>_1' });
    await unchanged(pipe, () => pipe.loadTextualInversion(file('ti/sd/neg-emb.pt'), { token: '<m>' }), named(TextualInversionTokenError, /^Multi-vector Token \["<m>","<m>_1"\] already in tokenizer vocabulary/));
    await unchanged(
      pipe,
      () => pipe.loadTextualInversion([file('ti/sd/neg-emb.pt'), file('ti/sd/neg-emb.safetensors')], { token: ['x', 'x'] }),
      named(TextualInversionTokenError, /contains duplicates/),
    );
    // the files' own tokens clash within one call
    await unchanged(pipe, () => pipe.loadTextualInversion([file('ti/sd/neg-emb.pt'), file('ti/sd/neg-emb.pt')]), named(TextualInversionTokenError, /duplicates/));
    await unchanged(pipe, () => pipe.loadTextualInversion([file('ti/sd/neg-emb.pt'), file('ti/sd/neg-emb.pt')], { token: ['a'] }), named(TextualInversionTokenError, /same length/));
  });

  test('files and tensors that are not embeddings', async () => {
    const pipe = await freshSD();
    const cases: [() => Promise<unknown>, (e: unknown) => boolean][] = [
      [() => pipe.loadTextualInversion({ data: new Float32Array(32), dims: [32] }), named(TextualInversionFormatError, /bare tensor carries no token/)],
      [() => pipe.loadTextualInversion({ a: { data: new Float32Array(32), dims: [32] }, b: { data: new Float32Array(32), dims: [32] } }), named(TextualInversionFormatError, /single key.*"a", "b"/)],
      [() => pipe.loadTextualInversion({ data: new Float32Array(64), dims: [1, 2, 32] }, { token: '<r3>' }), named(TextualInversionFormatError, /shape \[1, 2, 32\]/)],
      [() => pipe.loadTextualInversion({ data: new Float32Array(0), dims: [0, 32] }, { token: '<empty>' }), named(TextualInversionFormatError, /no vectors/)],
      [() => pipe.loadTextualInversion({ data: new BigInt64Array(32), dims: [32] }, { token: '<int>' }), named(TextualInversionFormatError, /not floats/)],
      [() => pipe.loadTextualInversion({ data: new Float32Array(32).fill(NaN), dims: [32] }, { token: '<nan>' }), named(TextualInversionFormatError, /NaN/)],
      [() => pipe.loadTextualInversion(fixture('tiny-sd-cnxs', 'vae', 'diffusion_pytorch_model.safetensors')), named(TextualInversionFormatError, /not a textual inversion embedding/)],
      [() => pipe.loadTextualInversion(join(A, 'nope.safetensors')), named(MissingWeightsError, /neither a file, a folder nor a Hub repo id/)],
      [() => pipe.loadTextualInversion(join(A, 'sdxl')), named(MissingWeightsError, /learned_embeds\.safetensors or learned_embeds\.bin/)],
      [() => pipe.loadTextualInversion(fixture('single-file', 'malicious', 'malicious-global-os-system.ckpt')), (e) => e instanceof SecurityError],
    ];
    for (const [attempt, error] of cases) await unchanged(pipe, attempt, error);
    assert.ok(new TextualInversionTokenError('x') instanceof TextualInversionError);
  });

  test('folders: learned_embeds.* found, or weightName', async () => {
    const dir = tempDir('cnxs-ti-dir-');
    mkdirSync(join(dir, 'sub'));
    copyFileSync(file('ti/sd/neg-emb.pt'), join(dir, 'sub', 'learned_embeds.bin'));
    copyFileSync(file('ti/sd/learned_embeds.safetensors'), join(dir, 'learned_embeds.safetensors'));
    const pipe = await freshSD();
    await pipe.loadTextualInversion(dir);
    await pipe.loadTextualInversion(dir, { subfolder: 'sub' });
    assert.deepEqual(pipe.tokenizer.runtimeTokens, ['<cat-toy>', 'neg-emb', 'neg-emb_1', 'neg-emb_2']);
    const other = await freshSD();
    await other.loadTextualInversion(join(A, 'sd'), { weightName: 'neg-emb.safetensors', token: 'neg-emb' });
    assert.deepEqual(other.tokenizer.runtimeTokens, ['neg-emb', 'neg-emb_1', 'neg-emb_2']);
  });
});

describe('unloading', () => {
  test('named tokens (with their vectors), then all; ids become dense again and the encodings follow', async () => {
    const c = tiCase('ti.sd');
    const pipe = await freshSD();
    await loadRecipe(pipe, c);
    await pipe.loadTextualInversion({ data: Float32Array.from({ length: 32 }, (_, i) => i / 32), dims: [32] }, { token: '<z>' });
    const zRow = row(pipe.textEncoder.addedTokenEmbeddings!, 4);
    pipe.unloadTextualInversion('neg-emb');
    assert.deepEqual(Object.fromEntries(pipe.tokenizer.runtimeTokens.map((t) => [t, pipe.tokenizer.tokenId(t)])), { '<cat-toy>': 49408, '<z>': 49409 });
    assert.equal(pipe.textEncoder.numTokenEmbeddings, 49410);
    assertClose(row(pipe.textEncoder.addedTokenEmbeddings!, 0), row(read(c.outputs['text_encoder.new_embedding_rows']!), 0), 0, '<cat-toy> row kept');
    assertClose(row(pipe.textEncoder.addedTokenEmbeddings!, 1), zRow, 0, '<z> row moved');
    const prompt = await pipe.encodePrompt(c.prompts[0], { numImagesPerPrompt: 1, doClassifierFreeGuidance: false });
    assertClose(prompt.promptEmbeds, read(c.outputs['prompt_embeds']!), embTol(c, 'prompt_embeds'), '<cat-toy> prompt after unloading neg-emb');
    assert.equal(pipe.maybeConvertPrompt('neg-emb', pipe.tokenizer), 'neg-emb');

    assert.throws(() => pipe.unloadTextualInversion('neg-emb'), (e: unknown) => e instanceof TextualInversionTokenError && /No tokens to remove found/.test(e.message));
    pipe.unloadTextualInversion();
    assert.deepEqual(pipe.tokenizer.runtimeTokens, []);
    assert.equal(pipe.tokenizer.length, 49408);
    assert.equal(pipe.textEncoder.numTokenEmbeddings, 49408);
    const plain = await sdBase.encodePrompt('a photo of a cat', { numImagesPerPrompt: 1, doClassifierFreeGuidance: false });
    assert.equal(maxAbsDiff((await pipe.encodePrompt('a photo of a cat', { numImagesPerPrompt: 1, doClassifierFreeGuidance: false })).promptEmbeds, plain.promptEmbeds), 0);

    // loaded again, in the other order: other ids, the same embeddings
    await pipe.loadTextualInversion(file('ti/sd/neg-emb.pt'));
    await pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors'));
    assert.equal(pipe.tokenizer.tokenId('<cat-toy>'), 49411);
    const out = await pipe.encodePrompt(c.prompts[0], { numImagesPerPrompt: 1, doClassifierFreeGuidance: true, negativePrompt: c.prompts[1]! });
    assertClose(out.promptEmbeds, read(c.outputs['prompt_embeds']!), embTol(c, 'prompt_embeds'), 'prompt_embeds, reloaded');
    assertClose(out.negativePromptEmbeds!, read(c.outputs['negative_prompt_embeds']!), embTol(c, 'negative_prompt_embeds'), 'negative_prompt_embeds, reloaded');
  });

  test('SDXL: from both encoders, or one pair', async () => {
    const pipe = await freshXL();
    await pipe.loadTextualInversion(file('ti/sdxl/xl_embedding.safetensors'), { token: '<xl-style>' });
    pipe.unloadTextualInversion('<xl-style>', { textEncoder: pipe.textEncoder2, tokenizer: pipe.tokenizer2 });
    assert.deepEqual([pipe.tokenizer.runtimeTokens, pipe.tokenizer2.runtimeTokens], [['<xl-style>', '<xl-style>_1'], []]);
    assert.equal(pipe.textEncoder2.numTokenEmbeddings, 49408);
    pipe.unloadTextualInversion();
    assert.deepEqual(pipe.tokenizer.runtimeTokens, []);
  });
});

describe('the text encoder graph and the tokenizer', () => {
  test('only a text encoder that ever had added rows takes them as an input; no Concat copies the table', async () => {
    const te = await CLIPTextModel.fromPretrained(join(SD, 'text_encoder'));
    const inputs = () => te.toOnnx().graph.inputs.map((i) => i.name);
    assert.deepEqual(inputs(), ['input_ids', 'attention_mask']);
    const ids = new Tensor('int64', BigInt64Array.of(49406n, 49408n, 49407n), [1, 3]);
    await assert.rejects(te.forward(ids), (e: unknown) => e instanceof InputError && /49408 is outside the vocabulary \[0, 49408\)/.test(e.message));
    const rows = new Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => Math.cos(i)), [2, 32]);
    te.setAddedTokenEmbeddings(rows);
    assert.deepEqual(inputs(), ['input_ids', 'attention_mask', ADDED_TOKEN_EMBEDDINGS]);
    const nodes = te.toOnnx().graph.nodes;
    assert.ok(!nodes.some((n) => n.opType === 'Concat' && n.inputs.includes(ADDED_TOKEN_EMBEDDINGS)));
    const withRows = await te.forward(ids, { outputHiddenStates: true });
    // the embeddings output (token + position) at position 1 is added row 0 plus position 1's row
    const posTable = loadSafetensorsSync(join(SD, 'text_encoder', 'model.safetensors')).read('text_model.embeddings.position_embedding.weight');
    const expected = Float32Array.from({ length: 32 }, (_, i) => rows.data[i]! + (posTable.data as Float32Array)[32 + i]!);
    assertClose(new Tensor('float32', withRows.hiddenStates![0]!.data.slice(32, 64), [32]), new Tensor('float32', expected, [32]), 1e-6, 'added row 0 + position 1');
    await assert.rejects(te.forward(new Tensor('int64', BigInt64Array.of(49406n, 49410n, 49407n), [1, 3])), /49410 is outside the vocabulary \[0, 49410\)/);
    assert.throws(() => te.setAddedTokenEmbeddings({ data: new Float32Array(16), dims: [1, 16] }), InputError);
    assert.throws(() => te.setAddedTokenEmbeddings({ data: new Float32Array(32).fill(Infinity), dims: [1, 32] }), InputError);
    te.setAddedTokenEmbeddings(null);
    assert.equal(te.numTokenEmbeddings, 49408);
    const plain = await CLIPTextModel.fromPretrained(join(SD, 'text_encoder'));
    const ok = new Tensor('int64', BigInt64Array.of(49406n, 320n, 49407n), [1, 3]);
    assert.equal(maxAbsDiff((await te.forward(ok)).lastHiddenState, (await plain.forward(ok)).lastHiddenState), 0, 'without rows: the plain table');
    await Promise.all([te.release(), plain.release()]);
  });

  test('addTokens / removeTokens / tokenize / length, as transformers\' slow tokenizer', async () => {
    const tok = await CLIPTokenizer.fromPretrained(SD, { subfolder: 'tokenizer' });
    assert.equal(tok.length, 49408);
    assert.equal(tok.addTokens(['<a>', '<a>', '', '<B>']), 2);
    assert.deepEqual([tok.tokenId('<a>'), tok.tokenId('<B>'), tok.length], [49408, 49409, 49410]);
    // exact, case-sensitive, longest first; the rest is BPE as before
    assert.deepEqual(tok.tokenize('x<a><B> <b> Photo'), ['x</w>', '<a>', '<B>', '<</w>', 'b</w>', '></w>', 'photo</w>']);
    assert.equal(tok.addedTokensEncoder.get('<|endoftext|>'), 49407);
    tok.removeTokens(['<a>']);
    assert.deepEqual([tok.tokenId('<a>'), tok.tokenId('<B>'), tok.length], [undefined, 49408, 49409]);
    assert.deepEqual(tok.tokenize('<a>'), ['<</w>', 'a</w>', '></w>']);
    assert.throws(() => tok.removeTokens(['<nope>']), InputError);
    const cat = tok.tokenId('cat');
    assert.ok(cat !== undefined && cat < 49406);
    assert.equal(tok.addTokens(['cat']), 0); // a vocab.json entry keeps its id, and is split out from now on
    assert.equal(tok.tokenId('cat'), cat);
    assert.deepEqual(tok.tokenize('concat'), ['con</w>', 'cat']);
  });
});

test('from a Hub repo: learned_embeds.safetensors, else learned_embeds.bin; weightName', { timeout: 60_000 }, async () => {
  const repo = tempDir('cnxs-ti-repo-');
  copyFileSync(file('ti/sd/neg-emb.pt'), join(repo, 'learned_embeds.bin'));
  copyFileSync(file('ti/sd/learned_embeds.safetensors'), join(repo, 'cat.safetensors'));
  const hub = await startHub(repo);
  const hubOptions = { endpoint: hub.endpoint, cacheDir: join(tempDir('cnxs-ti-cache-'), 'hub'), hubToken: false as const };
  try {
    const pipe = await freshSD();
    await pipe.loadTextualInversion('org/tiny-pipe', hubOptions);
    await pipe.loadTextualInversion('org/tiny-pipe', { ...hubOptions, weightName: 'cat.safetensors' });
    assert.deepEqual(pipe.tokenizer.runtimeTokens, ['neg-emb', 'neg-emb_1', 'neg-emb_2', '<cat-toy>']);
    assert.ok(hub.log.some((l) => l.path.endsWith('/learned_embeds.safetensors')), 'asked for the safetensors file first');
  } finally {
    await hub.stop();
  }
});

describe('cnxs generate --embedding FILE[:TOKEN]', () => {
  test('parsing', () => {
    assert.deepEqual(parseEmbeddingOption('neg.pt'), { source: 'neg.pt', token: undefined });
    assert.deepEqual(parseEmbeddingOption('dir/neg.safetensors:neg-emb'), { source: 'dir/neg.safetensors', token: 'neg-emb' });
    assert.deepEqual(parseEmbeddingOption('sd-concepts-library/cat-toy:<cat-toy>'), { source: 'sd-concepts-library/cat-toy', token: '<cat-toy>' });
    assert.deepEqual(parseEmbeddingOption('C:\\emb\\neg.pt'), { source: 'C:\\emb\\neg.pt', token: undefined });
    assert.throws(() => parseEmbeddingOption('neg.pt:'), UsageError);
    const o = parseGenerateArgs(['-p', 'x', '-c', 'c.png', '--embedding', 'a.pt', '--embedding=b.safetensors:tok']);
    assert.notEqual(o, HELP);
    assert.deepEqual((o as GenerateOptions).embeddings, [{ source: 'a.pt', token: undefined }, { source: 'b.safetensors', token: 'tok' }]);
  });

  test('a generation with embeddings equals the pipeline with them loaded; a bad one fails before generating', async () => {
    const out = join(tempDir('cnxs-ti-cli-'), 'ti.png');
    const argv = ['--model', SD, '--controlnet', join(SD, 'controlnet'), '--control', join(SD, 'pipeline', 'control.png'), '--steps', '2', '--seed', '7', '--graph-cache', 'off'];
    const prompt = ['--prompt', 'a photo of <cat-toy>', '--negative-prompt', 'neg-emb, blurry'];
    const emb = ['--embedding', file('ti/sd/learned_embeds.safetensors'), '--embedding', `${file('ti/sd/neg-emb.safetensors')}:neg-emb`];
    const errors: string[] = [];
    const sink = { write: (s: string) => (errors.push(s), true), isTTY: false } as unknown as NodeJS.WriteStream;
    await generate(parseGenerateArgs([...argv, ...prompt, ...emb, '-o', out]) as GenerateOptions, { stdout: sink, stderr: sink });
    const pipe = await freshSD();
    await pipe.loadTextualInversion(file('ti/sd/learned_embeds.safetensors'));
    await pipe.loadTextualInversion(file('ti/sd/neg-emb.safetensors'), { token: 'neg-emb' });
    const { images } = await pipe.run({ prompt: 'a photo of <cat-toy>', negativePrompt: 'neg-emb, blurry', image: join(SD, 'pipeline', 'control.png'), numInferenceSteps: 2, generator: new Generator().manualSeed(7n), outputType: 'np' });
    const png = await loadImage(out);
    const expected = (images as Tensor<'float32'>).data;
    let worst = 0;
    for (let i = 0; i < png.data.length; i++) worst = Math.max(worst, Math.abs(png.data[i]! - expected[i]! * 255));
    assert.ok(worst <= 0.5 + 1e-3, `pixels off by ${worst}`);

    const bad = parseGenerateArgs([...argv, ...prompt, '--embedding', `${file('ti/sd/learned_embeds.safetensors')}:cat`, '-o', join(tempDir('cnxs-ti-cli-'), 'bad.png')]) as GenerateOptions;
    await assert.rejects(generate(bad, { stdout: sink, stderr: sink }), /Token cat already in tokenizer vocabulary/);
    assert.ok(readFileSync(out).length > 0);
  });
});
