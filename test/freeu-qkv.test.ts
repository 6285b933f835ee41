/**
 * FreeU and fused QKV projections against diffusers 0.33.1 (test/fixtures/adapters/freeu-qkv): the Fourier
 * filter and `apply_freeu` on their own, the plain and fused UNets with FreeU (control on, off, scaled; 8² and
 * 16² latents, where the window filters for real), fused projections (SD and SDXL), both pipelines' switches,
 * and what switching does to graphs and sessions. Whole tensors; tolerance max(floor, 20 × the case's
 * fp32-vs-fp64 hint).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InputError } from '../src/errors.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { OnnxDataType, encodeModel } from '../src/graph/onnx-proto.js';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel, type UNetControlNetXSForwardArgs } from '../src/models/unet-controlnet-xs.js';
import type { FreeUSettings } from '../src/models/unet-switches.js';
import { FreeUBlock } from '../src/nn/freeu.js';
import { StableDiffusionControlNetXSPipeline, type StableDiffusionControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-controlnet-xs.js';
import { StableDiffusionXLControlNetXSPipeline, type StableDiffusionXLControlNetXSCallArgs } from '../src/pipelines/stable-diffusion-xl-controlnet-xs.js';
import { ModelSession } from '../src/runtime/session.js';
import { schedulerFromConfig } from '../src/schedulers/index.js';
import { Tensor } from '../src/tensor.js';
import { allNodes, assertClose, fixture, maxAbsDiff, unetCaseArgs } from './helpers.js';
import { callArgs, readCases, type PipelineCase } from './pipeline-cases.js';

const A = fixture('adapters', 'freeu-qkv');
const SD = fixture('tiny-sd-cnxs');
const XL = fixture('tiny-sdxl-cnxs');
const { cases, read } = readCases(A);

interface ModuleCase {
  name: string;
  kind: string;
  recipe: { base: 'sd' | 'sdxl'; freeu?: [number, number, number, number] | null; fuse_qkv?: boolean };
  settings: Record<string, number>;
  inputs: Record<string, string | number | boolean | Record<string, string>>;
  outputs: Record<string, string>;
  max_abs_diff_fp32_vs_fp64: Record<string, number> | number;
}
const all = cases as unknown as ModuleCase[];
const byName = (name: string) => all.find((c) => c.name === name)!;
const hint = (c: ModuleCase, what: string) => (typeof c.max_abs_diff_fp32_vs_fp64 === 'number' ? c.max_abs_diff_fp32_vs_fp64 : (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));
const tol = (c: ModuleCase, what: string, floor: number) => Math.max(floor, 20 * hint(c, what));
const freeuOf = (f: readonly number[]): FreeUSettings => ({ s1: f[0]!, s2: f[1]!, b1: f[2]!, b2: f[3]! });
const SD_FREEU = freeuOf([0.9, 0.2, 1.2, 1.4]);

function forwardArgs(c: ModuleCase): UNetControlNetXSForwardArgs {
  return unetCaseArgs(c.inputs, read);
}

/** Count `release` calls on a model (each switch that changes the graph drops the session once). */
function countReleases(m: { release(): Promise<void> }): { readonly count: number } {
  const counter = { count: 0 };
  const release = m.release.bind(m);
  m.release = () => {
    counter.count++;
    return release();
  };
  return counter;
}

const graphBytes = (m: UNetControlNetXSModel | UNet2DConditionModel) => Buffer.from(encodeModel(m.toOnnx()));

describe('the Fourier filter and apply_freeu equal diffusers', () => {
  /** One FreeUBlock over `skip`-shaped inputs: returns the scaled h and the filtered skip. */
  async function runFreeU(h: Tensor, skip: Tensor, b: number, s: number): Promise<{ h: Tensor; skip: Tensor }> {
    const op = GraphBuilder.create(null);
    const F = OnnxDataType.FLOAT;
    const hIn = op.input('h', F, ['b', h.dims[1]!, 'y', 'x']);
    const skipIn = op.input('skip', F, ['b', 'c', 'y', 'x']);
    const fu = FreeUBlock.create(op, 'up_blocks.0.freeu', skipIn, { b: op.input('b', F, []), s: op.input('s', F, []) });
    const out = fu.apply(hIn, h.dims[1]!, skipIn);
    op.output(out.h, 'h_out');
    op.output(out.skip, 'skip_out');
    const session = await ModelSession.create(op.toModel('freeu'));
    try {
      const r = await session.run({ h, skip, b, s });
      return { h: r['h_out']!, skip: r['skip_out']! };
    } finally {
      await session.release();
    }
  }

  for (const c of all.filter((x) => x.kind === 'fourier_filter')) {
    test(c.name, async () => {
      const x = read(c.inputs['x'] as string);
      const { h, skip } = await runFreeU(x, x, 1, c.settings['scale']!);
      assertClose(skip, read(c.outputs['y']!), tol(c, 'y', 1e-6), c.name);
      assert.equal(maxAbsDiff(h, x), 0, 'b = 1 leaves the backbone features as they are');
    });
  }

  test('axes of length 1 and odd lengths, against the definition in float64 (Python slice semantics included)', async () => {
    // fftshift(fft2(x)), window [H//2−1 : H//2+1, W//2−1 : W//2+1] × s as Python slices it (start −1 is the last
    // row, so a length-1 axis keeps its one row), ifftshift, ifft2, real part: literally, with naive DFTs.
    const definition = (x: Float32Array, [B, C, H, W]: number[], s: number): Float32Array => {
      const y = new Float32Array(x.length);
      const window = (n: number) => {
        const start = Math.floor(n / 2) - 1;
        return { from: start < 0 ? start + n : start, to: Math.min(Math.floor(n / 2) + 1, n) };
      };
      const [rows, cols] = [window(H!), window(W!)];
      for (let bc = 0; bc < B! * C!; bc++) {
        const off = bc * H! * W!;
        const re = new Float64Array(H! * W!);
        const im = new Float64Array(H! * W!);
        for (let k = 0; k < H!; k++) for (let l = 0; l < W!; l++) {
          for (let j = 0; j < H!; j++) for (let m = 0; m < W!; m++) {
            const a = -2 * Math.PI * ((k * j) / H! + (l * m) / W!);
            re[k * W! + l]! += x[off + j * W! + m]! * Math.cos(a);
            im[k * W! + l]! += x[off + j * W! + m]! * Math.sin(a);
          }
          // shifted position of frequency (k, l): fftshift moves index k to (k + n//2) mod n
          const i = (k + Math.floor(H! / 2)) % H!;
          const jj = (l + Math.floor(W! / 2)) % W!;
          if (i >= rows.from && i < rows.to && jj >= cols.from && jj < cols.to) {
            re[k * W! + l]! *= s;
            im[k * W! + l]! *= s;
          }
        }
        for (let j = 0; j < H!; j++) for (let m = 0; m < W!; m++) {
          let v = 0;
          for (let k = 0; k < H!; k++) for (let l = 0; l < W!; l++) {
            const a = 2 * Math.PI * ((k * j) / H! + (l * m) / W!);
            v += re[k * W! + l]! * Math.cos(a) - im[k * W! + l]! * Math.sin(a);
          }
          y[off + j * W! + m] = v / (H! * W!);
        }
      }
      return y;
    };
    for (const dims of [[1, 2, 1, 1], [1, 1, 1, 4], [1, 2, 3, 1], [2, 1, 1, 2], [1, 1, 7, 3], [1, 1, 2, 5]]) {
      const x = new Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 1.7 + 0.3) * 2), dims);
      const { skip } = await runFreeU(x, x, 1, 0.3);
      assertClose(skip, new Tensor('float32', definition(x.data as Float32Array, dims, 0.3), dims), 1e-6, `[${dims.join(', ')}]`);
    }
  });

  for (const c of all.filter((x) => x.kind === 'apply_freeu')) {
    test(c.name, async () => {
      const r = c.settings['resolution_idx']!;
      const [b, s] = r === 0 ? [c.settings['b1']!, c.settings['s1']!] : [c.settings['b2']!, c.settings['s2']!];
      const out = await runFreeU(read(c.inputs['hidden_states'] as string), read(c.inputs['res_hidden_states'] as string), b, s);
      // the backbone scaling is one multiplication per element: exact
      assertClose(out.h, read(c.outputs['hidden_states']!), 0, `${c.name} hidden_states`);
      assertClose(out.skip, read(c.outputs['res_hidden_states']!), tol(c, 'fourier_filter_out', 1e-5), `${c.name} res_hidden_states`);
    });
  }
});

let sdUnet: UNet2DConditionModel;
let sdFused: UNetControlNetXSModel;
let xlFused: UNetControlNetXSModel;
before(async () => {
  sdUnet = await UNet2DConditionModel.fromPretrained(join(SD, 'unet'));
  sdFused = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')));
  const xlUnet = await UNet2DConditionModel.fromPretrained(join(XL, 'unet'));
  xlFused = UNetControlNetXSModel.fuse(xlUnet, await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet')));
});
after(async () => {
  await Promise.all([sdUnet.release(), sdFused.release(), xlFused.release()]);
});

describe('the UNets with FreeU or fused projections equal diffusers', () => {
  for (const c of all.filter((x) => x.kind === 'unet_cnxs_forward' || x.kind === 'unet2d_forward')) {
    test(c.name, async () => {
      const m = c.kind === 'unet2d_forward' ? sdUnet : c.recipe.base === 'sd' ? sdFused : xlFused;
      if (c.recipe.freeu) m.enableFreeu(freeuOf(c.recipe.freeu));
      else m.disableFreeu();
      if (c.recipe.fuse_qkv) m.fuseQkvProjections();
      else m.unfuseQkvProjections();
      const { sample } = await (m as UNetControlNetXSModel).forward(forwardArgs(c));
      assertClose(sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), c.name);
    });
  }
});

describe('switching', () => {
  test('with both switches off the graph is byte for byte the one of a model never switched', async () => {
    const fresh = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')));
    const before = graphBytes(fresh);
    fresh.enableFreeu(SD_FREEU);
    fresh.fuseQkvProjections();
    assert.notDeepEqual(graphBytes(fresh), before);
    fresh.disableFreeu();
    fresh.unfuseQkvProjections();
    assert.deepEqual(graphBytes(fresh), before);
    assert.equal(fresh.freeu, null);
    assert.equal(fresh.qkvProjectionsFused, false);
  });

  test('FreeU: its factors are graph inputs, so only turning it on or off opens a new session', async () => {
    const m = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')));
    const releases = countReleases(m);
    const inputs = () => m.toOnnx().graph.inputs.map((i) => i.name);
    assert.ok(!inputs().some((n) => n.startsWith('freeu_')));
    const c = byName('unet_cnxs.sd.freeu');
    const base = byName('unet_cnxs.sd.base');
    await m.forward(forwardArgs(base));
    m.enableFreeu({ s1: 0.5, s2: 0.5, b1: 1, b2: 1 });
    assert.equal(releases.count, 1);
    assert.deepEqual(inputs().filter((n) => n.startsWith('freeu_')), ['freeu_s1', 'freeu_s2', 'freeu_b1', 'freeu_b2']);
    const other = (await m.forward(forwardArgs(c))).sample;
    m.enableFreeu(SD_FREEU); // new factors, same graph and session
    assert.equal(releases.count, 1);
    assert.deepEqual(m.freeu, SD_FREEU);
    const { sample } = await m.forward(forwardArgs(c));
    assertClose(sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), 'after new factors');
    assert.ok(maxAbsDiff(other, sample) > 0.05, 'the factors reach the graph');
    m.disableFreeu();
    assert.equal(releases.count, 2);
    assertClose((await m.forward(forwardArgs(base))).sample, read(base.outputs['sample']!), tol(base, 'sample', 1e-4), 'FreeU off again');
    m.disableFreeu(); // already off: nothing to do
    assert.equal(releases.count, 2);
    await m.release();
  });

  test('FreeU: a factor of 0 turns all of it off, as diffusers tests `s1 and s2 and b1 and b2`', async () => {
    const m = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')));
    const plain = graphBytes(m);
    m.enableFreeu({ ...SD_FREEU, s2: 0 });
    assert.equal(m.freeuActive, false);
    assert.deepEqual(graphBytes(m), plain);
    const base = byName('unet_cnxs.sd.base');
    assertClose((await m.forward(forwardArgs(base))).sample, read(base.outputs['sample']!), tol(base, 'sample', 1e-4), 's2 = 0');
    await m.release();
  });

  test('FreeU: factors must be finite numbers', () => {
    for (const bad of [NaN, Infinity, '1.2' as unknown as number]) {
      assert.throws(() => sdFused.enableFreeu({ ...SD_FREEU, b1: bad }), (e: unknown) => e instanceof InputError && /b1 must be a finite number/.test((e as Error).message));
    }
  });

  test('fused projections: one matmul per attention over concatenated weights, in both trace forms', async () => {
    const m = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')), { trace: { fuseQkv: true } });
    assert.equal(m.qkvProjectionsFused, true);
    const attentions = [...m.net.parameters()].filter((p) => /\.attn[12]\.to_q\.weight$/.test(p.key)).map((p) => p.key.replace(/\.to_q\.weight$/, ''));
    assert.ok(attentions.some((a) => a.includes('ctrl_')), 'control attentions are fused too');
    const model = m.toOnnx();
    const concats = model.graph.nodes.filter((n) => n.opType === 'Concat' && /\.to_(qkv|kv)\.weight\//.test(n.name)).map((n) => n.name.replace(/\.weight\/Concat_\d+$/, ''));
    const want = attentions.map((a) => `${a}.${a.endsWith('attn1') ? 'to_qkv' : 'to_kv'}`);
    assert.deepEqual([...concats].sort(), [...want].sort());
    // no separate q/k/v projection is left: the only to_q matmuls are the cross-attentions' queries
    const toQ = allNodes(model.graph).filter((n) => /\.to_[qkv]\//.test(n.name)).map((n) => n.name.replace(/\/.*$/, ''));
    assert.deepEqual([...new Set(toQ)].sort(), attentions.filter((a) => a.endsWith('attn2')).map((a) => `${a}.to_q`).sort());
    const c = byName('unet_cnxs.sd.fuse_qkv');
    assertClose((await m.forward(forwardArgs(c))).sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), 'fused, trace option');
    // the standard-ops form (execution providers without the contrib kernels): MatMul on a transposed concatenation
    const plain = UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')), { trace: { attention: 'plain', linear: 'plain' } });
    plain.fuseQkvProjections();
    assert.ok(plain.toOnnx().graph.nodes.some((n) => /\.to_qkv\.weight\/Transpose_\d+$/.test(n.name)));
    assertClose((await plain.forward(forwardArgs(c))).sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), 'fused, plain ops');
    m.unfuseQkvProjections();
    assert.deepEqual(graphBytes(m), graphBytes(UNetControlNetXSModel.fuse(sdUnet, await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')))));
    await Promise.all([m.release(), plain.release()]);
  });

  test('FreeU and fused projections together', async () => {
    const c = byName('unet_cnxs.xl.freeu_16x16');
    xlFused.enableFreeu(freeuOf(c.recipe.freeu!));
    xlFused.fuseQkvProjections();
    assertClose((await xlFused.forward(forwardArgs(c))).sample, read(c.outputs['sample']!), tol(c, 'sample', 1e-4), c.name);
    xlFused.disableFreeu();
    xlFused.unfuseQkvProjections();
  });
});

/** Run a pipeline case, checking the latents after every step and the images. */
async function assertPipelineCase(p: StableDiffusionControlNetXSPipeline | StableDiffusionXLControlNetXSPipeline, c: PipelineCase, args: object): Promise<void> {
  const steps: Tensor<'float32'>[] = [];
  const out = await (p as StableDiffusionControlNetXSPipeline).run({
    ...(args as StableDiffusionControlNetXSCallArgs),
    callbackOnStepEnd: (_p, _i, _t, { latents }) => void steps.push(latents),
  });
  const T = (name: string) => read(c.tensors[name]!);
  const tolerance = (what: string, floor: number) => Math.max(floor, 20 * (c.max_abs_diff_fp32_vs_fp64[what] ?? 0));
  const each = T('latents_after_each_step');
  const per = each.data.length / each.dims[0]!;
  assert.equal(steps.length, each.dims[0]);
  steps.forEach((s, i) =>
    assertClose(s, new Tensor('float32', (each.data as Float32Array).subarray(i * per, (i + 1) * per), each.dims.slice(1)), tolerance('latents_final', 1e-4), `${c.name}: latents after step ${i}`),
  );
  assertClose(out.images as Tensor, T('images'), tolerance('images', 1e-4), `${c.name}: images`);
}

const pipelineCase = (name: string) => cases.find((c) => c.name === name)!;

test('StableDiffusionControlNetXSPipeline: enableFreeu / disableFreeu equal diffusers (16² latents)', async () => {
  const loaded = await StableDiffusionControlNetXSPipeline.fromPretrained(SD, { controlnet: await ControlNetXSAdapter.fromPretrained(join(SD, 'controlnet')) });
  const on = pipelineCase('pipe.sd.freeu_128');
  const off = pipelineCase('pipe.sd.base_128');
  const p = new StableDiffusionControlNetXSPipeline({ ...loaded.components, scheduler: schedulerFromConfig(on.scheduler.config) });
  p.enableFreeu(SD_FREEU);
  assert.deepEqual(p.unet.freeu, SD_FREEU);
  await assertPipelineCase(p, on, callArgs<StableDiffusionControlNetXSCallArgs>(on, join(SD, 'pipeline'), read));
  p.disableFreeu();
  await assertPipelineCase(p, off, callArgs<StableDiffusionControlNetXSCallArgs>(off, join(SD, 'pipeline'), read));
  await p.unet.release();
});

test('StableDiffusionXLControlNetXSPipeline: enableFreeu (diffusers: pipe.unet.enable_freeu), fused projections', async () => {
  const loaded = await StableDiffusionXLControlNetXSPipeline.fromPretrained(XL, { controlnet: await ControlNetXSAdapter.fromPretrained(join(XL, 'controlnet')) });
  const on = pipelineCase('pipe.xl.freeu');
  const off = pipelineCase('pipe.xl.base_seed2');
  const p = new StableDiffusionXLControlNetXSPipeline({ ...loaded.components, scheduler: schedulerFromConfig(on.scheduler.config) });
  // the cases' control_xl.png is the SDXL fixtures' control.png
  const argsOf = (c: PipelineCase) => ({ ...callArgs<StableDiffusionXLControlNetXSCallArgs>(c, join(XL, 'pipeline'), read), image: join(XL, 'pipeline', 'control.png') });
  p.enableFreeu(freeuOf([0.6, 0.4, 1.1, 1.2]));
  await assertPipelineCase(p, on, argsOf(on));
  p.disableFreeu();
  p.fuseQkvProjections();
  assert.equal(p.unet.qkvProjectionsFused, true);
  await assertPipelineCase(p, off, argsOf(off));
  p.unfuseQkvProjections();
  assert.equal(p.unet.qkvProjectionsFused, false);
  await p.unet.release();
});
