/**
 * CLIPTokenizer against transformers' slow CLIPTokenizer (no ftfy): the reference cases in
 * test/fixtures/clip-tokenizer/ (SD 1.x configs, and SD 2.x "pad-bang" configs whose pad token is `!`), and the
 * input_ids stored with the tiny pipelines' text-encoder references.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it, before } from 'node:test';
import { ConfigError, InputError } from '../src/errors.js';
import { CLIPTokenizer, readTokenizerFiles } from '../src/tokenizer/index.js';
import { loadSafetensorsSync } from '../src/weights/safetensors.js';
import { fixture } from './helpers.js';

interface ReferenceCase {
  text: string;
  input_ids: number[];
  attention_mask: number[];
  untruncated_length?: number;
}

interface TextEncoderCase {
  name: string;
  tokenizer: string;
  prompts: string[];
  inputs: { input_ids: string };
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** Load the SD 2.x variant: the shared vocab/merges with the configs of pad-bang/. */
async function loadPadBang(): Promise<CLIPTokenizer> {
  const base = await readTokenizerFiles(fixture('clip-tokenizer'));
  return new CLIPTokenizer({
    ...base,
    tokenizerConfig: readJson(fixture('clip-tokenizer', 'pad-bang', 'tokenizer_config.json')),
    specialTokensMap: readJson(fixture('clip-tokenizer', 'pad-bang', 'special_tokens_map.json')),
    source: fixture('clip-tokenizer', 'pad-bang'),
  });
}

function checkCases(tokenizer: () => CLIPTokenizer, cases: ReferenceCase[]): void {
  for (const [i, c] of cases.entries()) {
    it(`case ${i}: ${JSON.stringify(c.text).slice(0, 60)}`, () => {
      const tok = tokenizer();
      const got = tok.encode(c.text, { padding: 'max_length', maxLength: 77, truncation: true });
      assert.deepEqual(got.inputIds, c.input_ids);
      assert.deepEqual(got.attentionMask, c.attention_mask);
      if (c.untruncated_length !== undefined) {
        assert.equal(tok.encode(c.text).inputIds.length, c.untruncated_length);
      }
    });
  }
}

describe('CLIPTokenizer: reference cases (SD 1.x configs)', () => {
  let tok: CLIPTokenizer;
  before(async () => {
    tok = await CLIPTokenizer.fromPretrained(fixture('clip-tokenizer'));
  });
  const cases = readJson<ReferenceCase[]>(fixture('clip-tokenizer', 'cases.json'));
  it('has the 59 reference cases', () => assert.equal(cases.length, 59));
  checkCases(() => tok, cases);
});

describe('CLIPTokenizer: reference cases (SD 2.x configs, pad token "!")', () => {
  let tok: CLIPTokenizer;
  before(async () => {
    tok = await loadPadBang();
  });
  const cases = readJson<ReferenceCase[]>(fixture('clip-tokenizer', 'cases-pad-bang.json'));
  it('has the 8 reference cases', () => assert.equal(cases.length, 8));
  checkCases(() => tok, cases);
  it('pads with id 0', () => assert.equal(tok.padTokenId, 0));
});

describe('CLIPTokenizer: API', () => {
  let tok: CLIPTokenizer;
  before(async () => {
    tok = await CLIPTokenizer.fromPretrained(fixture('clip-tokenizer'));
  });

  it('exposes the config', () => {
    assert.equal(tok.modelMaxLength, 77);
    assert.equal(tok.bosTokenId, 49406);
    assert.equal(tok.eosTokenId, 49407);
    assert.equal(tok.padTokenId, 49407);
    assert.equal(tok.vocabSize, 49408);
  });

  it('does not pad or truncate by default', () => {
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    const enc = tok.encode(long);
    assert.equal(enc.inputIds.length, 102);
    assert.ok(enc.attentionMask.every((m) => m === 1));
    const short = tok.encode('a photo of a cat');
    assert.deepEqual(short.inputIds, [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert.deepEqual(short.attentionMask, [1, 1, 1, 1, 1, 1, 1]);
  });

  it('truncates keeping BOS and EOS; maxLength alone turns truncation on', () => {
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    for (const enc of [tok.encode(long, { truncation: true }), tok.encode(long, { maxLength: 77 })]) {
      assert.equal(enc.inputIds.length, 77);
      assert.equal(enc.inputIds[0], 49406);
      assert.equal(enc.inputIds[76], 49407);
      assert.equal(enc.inputIds[75], 2368);
    }
    assert.equal(tok.encode(long, { padding: 'max_length', maxLength: 77 }).inputIds.length, 102);
    assert.deepEqual(tok.encode('a photo of a cat', { maxLength: 4 }).inputIds, [49406, 320, 1125, 49407]);
    assert.deepEqual(tok.encode('a photo', { maxLength: 2 }).inputIds, [49406, 49407]);
  });

  it("pads a batch to the longest with padding 'longest'", () => {
    const out = tok.call(['a photo of a cat', 'a cat', ''], { padding: 'longest' });
    assert.deepEqual([...out.inputIds.dims], [3, 7]);
    assert.equal(out.inputIds.dtype, 'int64');
    assert.equal(out.attentionMask.dtype, 'int64');
    const ids = Array.from(out.inputIds.data, Number);
    const mask = Array.from(out.attentionMask.data, Number);
    assert.deepEqual(ids.slice(0, 7), [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert.deepEqual(ids.slice(7, 14), [49406, 320, 2368, 49407, 49407, 49407, 49407]);
    assert.deepEqual(ids.slice(14), [49406, 49407, 49407, 49407, 49407, 49407, 49407]);
    assert.deepEqual(mask.slice(7, 14), [1, 1, 1, 1, 0, 0, 0]);
    assert.deepEqual(mask.slice(14), [1, 1, 0, 0, 0, 0, 0]);
  });

  it("pads a batch to modelMaxLength with padding 'max_length' and no maxLength", () => {
    const out = tok.call(['a cat', 'a dog'], { padding: 'max_length', truncation: true });
    assert.deepEqual([...out.inputIds.dims], [2, 77]);
    const single = tok.call('a cat', { padding: 'max_length' });
    assert.deepEqual([...single.inputIds.dims], [1, 77]);
  });

  it('without padding, a batch must encode to one length', () => {
    const same = tok.call(['a cat', 'a dog']);
    assert.deepEqual([...same.inputIds.dims], [2, 4]);
    assert.ok(Array.from(same.attentionMask.data).every((m) => m === 1n));
    assert.throws(() => tok.call(['a cat', 'a photo of a cat']), InputError);
  });

  it('decodes an ordinary prompt back', () => {
    const prompt = 'a photograph of an astronaut riding a horse, highly detailed';
    const { inputIds } = tok.encode(prompt, { padding: 'max_length', maxLength: 77 });
    assert.equal(tok.decode(inputIds, { skipSpecialTokens: true }), prompt);
    assert.equal(
      tok.decode(tok.encode('a photo of a cat').inputIds),
      '<|startoftext|>a photo of a cat <|endoftext|>',
    );
    const batch = tok.call(['a cat', 'a dog'], { padding: 'max_length' });
    assert.deepEqual(tok.batchDecode(batch.inputIds, { skipSpecialTokens: true }), ['a cat', 'a dog']);
    assert.deepEqual(tok.batchDecode([[320, 2368], [320, 1929]]), ['a cat', 'a dog']);
    // transformers' clean-up knows " n't" but not " 't", and CLIP splits "isn't" as "isn" + "'t".
    assert.equal(tok.decode(tok.encode("It's café, isn't it?").inputIds, { skipSpecialTokens: true }), "it's café, isn 't it?");
    assert.equal(
      tok.decode(tok.encode("it's a cat.").inputIds, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }),
      "it 's a cat .",
    );
    // CJK ideographs were made separate words, so they come back space-separated.
    assert.equal(tok.decode(tok.encode('日本語の猫').inputIds, { skipSpecialTokens: true }), '日 本 語 の 猫');
  });

  it('rejects bad options', () => {
    assert.throws(() => tok.encode('a', { maxLength: 1 }), InputError);
    assert.throws(() => tok.encode('a', { maxLength: 7.5 }), InputError);
    assert.throws(() => tok.encode('a', { padding: 'sideways' as unknown as 'longest' }), InputError);
    assert.throws(() => tok.call([]), InputError);
    assert.throws(() => tok.decode([1e9]), InputError);
  });

  it('caches per instance, and results do not change with the cache warm', () => {
    const a = tok.encode('a cute corgi wearing a tiny wizard hat').inputIds;
    const b = tok.encode('a cute corgi wearing a tiny wizard hat').inputIds;
    assert.deepEqual(a, b);
  });

  it('tokenizes 10,000 typical prompts quickly', async () => {
    const fresh = await CLIPTokenizer.fromPretrained(fixture('clip-tokenizer'));
    const subjects = ['a cat', 'an astronaut', 'a red fox', 'an old fisherman', 'a castle', 'a cyberpunk city', 'a corgi'];
    const styles = ['oil painting', 'highly detailed', '8k', 'studio lighting', 'by greg rutkowski', 'trending on artstation'];
    const places = ['in the snow', 'on the moon', 'at sunset', 'in a forest', 'under the sea'];
    const prompts = Array.from(
      { length: 10_000 },
      (_, i) =>
        `${subjects[i % 7]} ${places[(i * 3) % 5]}, ${styles[i % 6]}, ${styles[(i * 5 + 1) % 6]}, (masterpiece:1.${i % 10}), seed ${i}`,
    );
    const t0 = performance.now();
    let total = 0;
    for (const p of prompts) total += fresh.encode(p, { padding: 'max_length', maxLength: 77, truncation: true }).inputIds.length;
    const ms = performance.now() - t0;
    console.log(`CLIPTokenizer: 10,000 prompts in ${ms.toFixed(1)} ms (cold cache, padding to 77)`);
    assert.equal(total, 770_000);
  });
});

describe('CLIPTokenizer: added tokens', () => {
  /** The SD 1.x files plus a textual-inversion style token and a single-word token after the vocabulary. */
  async function withExtraTokens(): Promise<CLIPTokenizer> {
    const base = await readTokenizerFiles(fixture('clip-tokenizer'));
    const decoder = base.tokenizerConfig.added_tokens_decoder as Record<string, unknown>;
    const token = (content: string, singleWord: boolean) => ({
      content,
      lstrip: false,
      rstrip: false,
      normalized: true,
      single_word: singleWord,
      special: false,
    });
    return new CLIPTokenizer({
      ...base,
      tokenizerConfig: {
        ...base.tokenizerConfig,
        added_tokens_decoder: { ...decoder, '49408': token('<cat-toy>', false), '49409': token('<solo>', true) },
      },
    });
  }

  it('splits added tokens out before BPE and decodes them as they are', async () => {
    const tok = await withExtraTokens();
    const ids = tok.encode('a <cat-toy> on a table').inputIds;
    assert.deepEqual(ids, [49406, 320, 49408, 525, 320, 2175, 49407]);
    assert.equal(tok.encode('a<cat-toy>table').inputIds[2], 49408);
    assert.equal(tok.decode(ids, { skipSpecialTokens: false }), '<|startoftext|>a <cat-toy> on a table <|endoftext|>');
    // Non-special added tokens are skipped too when special tokens are, as in transformers.
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'a on a table');
    assert.equal(tok.vocabSize, 49408);
  });

  it('leaves a single_word token inside a word for BPE', async () => {
    const tok = await withExtraTokens();
    assert.ok(tok.encode('a <solo> b').inputIds.includes(49409));
    assert.ok(!tok.encode('a<solo>b').inputIds.includes(49409));
  });
});

describe('CLIPTokenizer: loading', () => {
  it('missing vocab.json throws ConfigError naming the file', async () => {
    await assert.rejects(CLIPTokenizer.fromPretrained(fixture('clip-tokenizer', 'pad-bang')), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /pad-bang[/\\]vocab\.json/);
      return true;
    });
    await assert.rejects(CLIPTokenizer.fromPretrained(fixture('no-such-folder')), ConfigError);
  });

  for (const [pipeline, folder] of [
    ['tiny-sd-cnxs', 'tokenizer'],
    ['tiny-sdxl-cnxs', 'tokenizer_2'],
  ] as const) {
    it(`${pipeline}/${folder} reproduces the stored text-encoder input_ids`, async () => {
      const tok = await CLIPTokenizer.fromPretrained(fixture(pipeline), { subfolder: folder });
      const cases = readJson<TextEncoderCase[]>(fixture(pipeline, 'reference-text', 'cases.json'));
      const tensors = loadSafetensorsSync(fixture(pipeline, 'reference-text', 'tensors.safetensors'));
      const matching = cases.filter((c) => c.tokenizer === folder);
      assert.ok(matching.length > 0, `no reference case uses ${folder}`);
      for (const c of matching) {
        const expected = tensors.read(c.inputs.input_ids);
        assert.ok(expected.data instanceof BigInt64Array);
        const got = tok.call(c.prompts, { padding: 'max_length', maxLength: tok.modelMaxLength, truncation: true });
        assert.deepEqual([...got.inputIds.dims], [...expected.dims]);
        assert.deepEqual(Array.from(got.inputIds.data), Array.from(expected.data));
      }
    });
  }
});
