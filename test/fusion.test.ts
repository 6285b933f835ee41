/**
 * The ControlNet-XS fusion table against diffusers' `test_from_unet` rules: every UNet and adapter
 * key lands where diffusers puts it, the fused key set is exactly the fused module tree, and a saved
 * fused folder holds the very same bytes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ControlNetXSAdapter } from '../src/models/controlnet-xs-adapter.js';
import { fusedKey, fuseWeights } from '../src/models/controlnet-xs-fusion.js';
import { UNet2DConditionModel } from '../src/models/unet-2d-condition.js';
import { UNetControlNetXSModel } from '../src/models/unet-controlnet-xs.js';
import { fixture } from './helpers.js';

const D = fixture('tiny-sd-cnxs');

/** diffusers' test_from_unet, as (source prefix → fused prefix) rules with block indices. */
const UNET_RULES: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^(time_embedding|conv_in|conv_norm_out|conv_out|add_time_proj|add_embedding)\./, (m) => `base_${m[1]}.`],
  [/^down_blocks\.(\d+)\.resnets\./, (m) => `down_blocks.${m[1]}.base_resnets.`],
  [/^down_blocks\.(\d+)\.attentions\./, (m) => `down_blocks.${m[1]}.base_attentions.`],
  [/^down_blocks\.(\d+)\.downsamplers\.0\./, (m) => `down_blocks.${m[1]}.base_downsamplers.`],
  [/^mid_block\./, () => 'mid_block.base_midblock.'],
  [/^up_blocks\.(\d+)\.resnets\./, (m) => `up_blocks.${m[1]}.resnets.`],
  [/^up_blocks\.(\d+)\.attentions\./, (m) => `up_blocks.${m[1]}.attentions.`],
  [/^up_blocks\.(\d+)\.upsamplers\.0\./, (m) => `up_blocks.${m[1]}.upsamplers.`],
];
const CONTROLNET_RULES: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^controlnet_cond_embedding\./, () => 'controlnet_cond_embedding.'],
  [/^conv_in\./, () => 'ctrl_conv_in.'],
  [/^control_to_base_for_conv_in\./, () => 'control_to_base_for_conv_in.'],
  [/^time_embedding\./, () => 'ctrl_time_embedding.'],
  [/^down_blocks\.(\d+)\.resnets\./, (m) => `down_blocks.${m[1]}.ctrl_resnets.`],
  [/^down_blocks\.(\d+)\.base_to_ctrl\./, (m) => `down_blocks.${m[1]}.base_to_ctrl.`],
  [/^down_blocks\.(\d+)\.ctrl_to_base\./, (m) => `down_blocks.${m[1]}.ctrl_to_base.`],
  [/^down_blocks\.(\d+)\.attentions\./, (m) => `down_blocks.${m[1]}.ctrl_attentions.`],
  [/^down_blocks\.(\d+)\.downsamplers\./, (m) => `down_blocks.${m[1]}.ctrl_downsamplers.`],
  [/^mid_block\.base_to_ctrl\./, () => 'mid_block.base_to_ctrl.'],
  [/^mid_block\.midblock\./, () => 'mid_block.ctrl_midblock.'],
  [/^mid_block\.ctrl_to_base\./, () => 'mid_block.ctrl_to_base.'],
  [/^up_connections\.(\d+)\.ctrl_to_base\./, (m) => `up_blocks.${m[1]}.ctrl_to_base.`],
];

function expected(rules: typeof UNET_RULES, key: string): string {
  for (const [re, to] of rules) {
    const m = re.exec(key);
    if (m) return to(m) + key.slice(m[0].length);
  }
  throw new Error(`no test_from_unet rule for ${key}`);
}

for (const name of ['tiny-sd-cnxs', 'tiny-sdxl-cnxs']) {
  test(`${name}: every key follows test_from_unet and the fused tree is covered exactly`, async () => {
    const dir = fixture(name);
    const unet = await UNet2DConditionModel.fromPretrained(`${dir}/unet`);
    const adapter = await ControlNetXSAdapter.fromPretrained(`${dir}/controlnet`);
    for (const k of unet.source.keys()) assert.equal(fusedKey('unet', k), expected(UNET_RULES, k), k);
    for (const k of adapter.source.keys()) assert.equal(fusedKey('controlnet', k), expected(CONTROLNET_RULES, k), k);
    const model = await UNetControlNetXSModel.fromUnet(unet, adapter);
    const fusedKeys = new Set([...model.net.parameters()].map((p) => p.key));
    const mapped = fuseWeights(unet.source, adapter.source).keys();
    assert.equal(mapped.length, unet.source.keys().length + adapter.source.keys().length, 'no two keys collide');
    assert.deepEqual(new Set(mapped), fusedKeys);
  });
}

test('a saved fused folder holds the same tensors as fromUnet’s re-keyed sources', async () => {
  const unet = await UNet2DConditionModel.fromPretrained(`${D}/unet`);
  const adapter = await ControlNetXSAdapter.fromPretrained(`${D}/controlnet`);
  const fused = await UNetControlNetXSModel.fromPretrained(`${D}/unet_controlnet_xs`);
  const viaUnet = fuseWeights(unet.source, adapter.source);
  const saved = [...fused.weights.entries()];
  assert.equal(saved.length, viaUnet.keys().length);
  for (const [key, ref] of saved) {
    const mine = viaUnet.get(key);
    assert.ok(mine, `fromUnet has no ${key}`);
    assert.deepEqual(mine.info.shape, ref.info.shape, key);
    assert.ok(Buffer.from(mine.file.readBytes(mine.info.name)).equals(Buffer.from(ref.file.readBytes(ref.info.name))), `${key} bytes differ`);
  }
});
