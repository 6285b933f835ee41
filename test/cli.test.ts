/** The `cnxs` command line, run as a user would (a child process). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadImage } from '../src/image/load.js';
import { fixture } from './helpers.js';

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), ...args], { encoding: 'utf8' });

test('cnxs canny writes an edge PNG atomically; errors are one line and a non-zero exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cnxs-cli-'));
  const out = join(dir, 'edges.png');
  const r = cli('canny', fixture('canny', 'scene0_64x64.png'), '--out', out);
  assert.equal(r.status, 0, r.stderr);
  const edges = await loadImage(out);
  const expected = await loadImage(fixture('canny', 'scene0_64x64_canny_100_200.png'));
  assert.deepEqual(Buffer.from(edges.data), Buffer.from(expected.data));
  assert.deepEqual(readdirSync(dir), ['edges.png'], 'no temp file left behind');

  const missing = cli('canny', join(dir, 'nope.png'), '--out', out);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^cnxs: .*nope\.png/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);

  const bad = cli('canny', fixture('canny', 'scene0_64x64.png'), '--out', out, '--low', 'abc');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--low must be a number, got "abc"/);
  assert.equal(cli('frobnicate').status, 2);
  assert.equal(existsSync(join(dir, 'nope.png')), false);
});
