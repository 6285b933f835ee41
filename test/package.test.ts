/** The published shape: `import … from 'controlnet-xs'` from plain Node ESM (built dist/, package exports), and the bin. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

test("plain Node ESM imports the package by name and the cnxs bin runs", () => {
  const script = `import { UNetControlNetXSModel, StableDiffusionControlNetXSPipeline, Generator, loadSafetensors, Tensor, CLIPTokenizer, DDIMScheduler } from 'controlnet-xs';
const g = new Generator().manualSeed(0);
console.log([typeof UNetControlNetXSModel.fromUnet, typeof StableDiffusionControlNetXSPipeline.fromPretrained, typeof loadSafetensors, typeof CLIPTokenizer.fromPretrained, typeof DDIMScheduler.fromConfig, g.randn([2]).dims.join(), new Tensor('float32', new Float32Array(1), [1]).size].join(' '));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'function function function function function 2 1');
  const bin = spawnSync(process.execPath, ['dist/cli/main.js', 'help'], { encoding: 'utf8' });
  assert.equal(bin.status, 0, bin.stderr);
  assert.match(bin.stdout, /^usage: cnxs <command>/);
});
