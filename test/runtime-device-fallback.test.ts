/**
 * A provider that cannot run a model is reported once, in a structured form (`onDeviceFallback`) or
 * one line (`warn`), and onnxruntime's own log stays off stderr. The stderr checks run sessions in a
 * child process, where native output can be counted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { OnnxDataType, type ModelProto } from '../src/graph/onnx-proto.js';
import { oneNodeModel, runNodeScript } from './helpers.js';
import { CUDA_INSTALL_COMMAND, describeStartFailure, formatDeviceFallback, type DeviceFallback } from '../src/runtime/device-fallback.js';
import { conciseError } from '../src/runtime/messages.js';
import { ModelSession } from '../src/runtime/session.js';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function relu(name: string, unusedInitializer = false): ModelProto {
  const unused = { name: 'unused', dataType: OnnxDataType.FLOAT, dims: [1], raw: new Uint8Array(4) };
  return oneNodeModel({ name, opType: 'Relu', shape: [2], initializers: unusedInitializer ? [unused] : [] });
}

/** Sessions on `providers` lists in a child process: its fallbacks (JSON lines on stdout) and its stderr. */
async function childSessions(providerLists: string[][], extra = ''): Promise<{ reports: (DeviceFallback & { opened: string })[]; stderr: string }> {
  const code = `
    const { ModelSession } = await import(${JSON.stringify(join(SRC, 'runtime', 'session.ts'))});
    const m = (name, unused) => ({ irVersion: 10, opsets: [{ domain: '', version: 21 }], producerName: 't', graph: { name,
      nodes: [{ name: 'n', opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      initializers: unused ? [{ name: 'unused', dataType: 1, dims: [1], raw: new Uint8Array(4) }] : [],
      inputs: [{ name: 'x', type: { elemType: 1, shape: [2] } }], outputs: [{ name: 'y', type: { elemType: 1, shape: [2] } }] } });
    for (const providers of ${JSON.stringify(providerLists)}) {
      const seen = [];
      const s = await ModelSession.create(m(providers.join('+'), true), { executionProviders: providers, onDeviceFallback: (f) => seen.push(f) });
      await s.run({ x: { data: Float32Array.of(-1, 1), dims: [2] } });
      for (const f of seen) console.log(JSON.stringify({ ...f, opened: s.executionProvider }));
      await s.release();
    }
    ${extra}`;
  // No Vulkan driver for the child (where Mesa's llvmpipe is installed, WebGPU would start): 'webgpu' cannot start.
  const { exit, stdout, stderr } = await runNodeScript(code, { timeoutMs: 120_000, env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' } });
  assert.equal(exit, 0, stderr);
  const reports = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as DeviceFallback & { opened: string });
  return { reports, stderr };
}

/** Lines of stderr that came from onnxruntime's logger (coloured or not). */
const ortLogLines = (stderr: string) => stderr.split('\n').filter((l) => /\[[VIWEF]:onnxruntime|\x1b\[/.test(l));

test('cuda and webgpu that cannot start: one report each, no onnxruntime log on stderr', async () => {
  const { reports, stderr } = await childSessions([['cuda', 'cpu'], ['webgpu', 'cpu'], ['tpu', 'cpu'], ['cpu']]);
  assert.deepEqual(ortLogLines(stderr), [], stderr);
  // What may remain: Dawn (WebGPU's implementation) and the Vulkan loader print warnings of their own
  // ("Warning: Couldn't load Vulkan…" without a loader; "Warning: vkCreateInstance: Found no drivers!" and the
  // like with a loader but no driver), once per process, with no switch to turn them off.
  const other = stderr.split('\n').filter((l) => l.trim() !== '' && !/^Warning: (Couldn't load Vulkan|loader_|vkCreateInstance)|^\s+at .*dawn/.test(l));
  assert.deepEqual(other, [], stderr);

  const byModel = new Map(reports.map((r) => [r.model, r]));
  const cuda = byModel.get('cuda+cpu');
  if (cuda) {
    assert.equal(cuda.opened, 'cpu');
    assert.deepEqual({ requested: cuda.requested, kind: cuda.kind, running: cuda.running }, { requested: 'cuda', kind: 'failed-to-start', running: 'cpu' });
    assert.ok(cuda.reason.length < 120 && !cuda.reason.includes('\n'), cuda.reason);
    if (/not installed/.test(cuda.reason)) assert.equal(cuda.hint, `Install them with: ${CUDA_INSTALL_COMMAND}`);
    assert.match(cuda.detail, /Cuda|CUDA/);
  }
  const webgpu = byModel.get('webgpu+cpu');
  if (webgpu) {
    assert.equal(webgpu.opened, 'cpu');
    assert.equal(webgpu.kind, 'failed-to-start');
    assert.ok(webgpu.reason.length < 120, webgpu.reason);
  }
  const tpu = byModel.get('tpu+cpu')!;
  assert.deepEqual(
    { requested: tpu.requested, kind: tpu.kind, running: tpu.running, opened: tpu.opened },
    { requested: 'tpu', kind: 'not-in-build', running: 'cpu', opened: 'cpu' },
  );
  assert.equal(byModel.get('cpu'), undefined, 'nothing to report on the CPU');
});

test("logSeverityLevel brings onnxruntime's session log back", async () => {
  // The default (3) keeps onnxruntime's warnings (here: an unused initializer) off stderr; 2 shows them.
  const quiet = await childSessions([['cpu']]);
  assert.deepEqual(ortLogLines(quiet.stderr), []);
  const loud = await childSessions(
    [],
    `const s = await ModelSession.create(m('loud', true), { logSeverityLevel: 2 }); await s.release();`,
  );
  assert.match(ortLogLines(loud.stderr).join('\n'), /Removing initializer 'unused'/);
});

test('without onDeviceFallback, each fallback is one warn line in the established wording', async () => {
  const warnings: string[] = [];
  const s = await ModelSession.create(relu('m'), { executionProviders: ['tpu', 'cpu'], warn: (w) => warnings.push(w) });
  assert.equal(s.executionProvider, 'cpu');
  await s.release();
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /^m: execution provider tpu is not in this onnxruntime-node build \(it has cpu(, \w+)*\); running on the CPU$/);

  const seen: DeviceFallback[] = [];
  const quiet = await ModelSession.create(relu('m'), { executionProviders: ['tpu', 'cpu'], warn: (w) => assert.fail(w), onDeviceFallback: (f) => seen.push(f) });
  await quiet.release();
  assert.equal(seen.length, 1);
});

test('fallback lines and reasons: short, one line, with the fix', (t) => {
  const base: DeviceFallback = {
    model: 'UNetControlNetXSModel',
    requested: 'cuda',
    kind: 'failed-to-start',
    reason: "onnxruntime-node's CUDA libraries are not installed",
    hint: `Install them with: ${CUDA_INSTALL_COMMAND}`,
    running: 'cpu',
    detail: 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library',
  };
  assert.equal(
    formatDeviceFallback(base),
    `UNetControlNetXSModel: execution provider cuda is not available here (onnxruntime-node's CUDA libraries are not installed); running on the CPU. Install them with: ${CUDA_INSTALL_COMMAND}`,
  );
  const { hint: _hint, ...noHint } = base;
  assert.equal(
    formatDeviceFallback({ ...noHint, model: '', requested: 'webgpu', reason: 'no WebGPU adapter found', running: 'cpu' }),
    'execution provider webgpu is not available here (no WebGPU adapter found); running on the CPU',
  );

  // onnxruntime's errors as 1.30 throws them
  const webgpu = new Error(
    "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n",
  );
  assert.equal(describeStartFailure('webgpu', webgpu, null).reason, 'no WebGPU adapter found');
  const cuda = new Error('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library');
  assert.deepEqual(describeStartFailure('cuda', cuda, '/nonexistent'), {
    reason: "onnxruntime-node's CUDA libraries are not installed",
    hint: `Install them with: ${CUDA_INSTALL_COMMAND}`,
    detail: cuda.message,
  });
  // with onnxruntime's CUDA provider installed, what failed to load is CUDA's or cuDNN's own libraries
  const installed = mkdtempSync(join(tmpdir(), 'cnxs-cuda-'));
  t.after(() => rmSync(installed, { recursive: true, force: true }));
  writeFileSync(join(installed, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'), '');
  assert.match(describeStartFailure('cuda', cuda, installed).reason, /did not load/);
  assert.equal(
    conciseError(
      new Error(
        '/onnxruntime_src/onnxruntime/core/graph/graph.cc:5355 onnx::GraphProto onnxruntime::Graph::ToGraphProtoWithExternalInitializers(const std::filesystem::__cxx11::path&) const [ONNXRuntimeError] : 1 : FAIL : graph.cc:5280 AddExternalInitializersToGraphProtoImpl Failed to write external initializers to file: "/x/model.data"\n',
      ),
    ),
    'Failed to write external initializers to file: "/x/model.data"',
  );
  assert.equal(conciseError(new Error("ENOENT: no such file or directory, mkdir '/proc/x'")), "ENOENT: no such file or directory, mkdir '/proc/x'");
  assert.ok(conciseError(new Error('x'.repeat(400))).length <= 160);
});
