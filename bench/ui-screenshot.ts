/**
 * The README's screenshot of the web UI (docs/images/ui.png, 1280×800): `cnxs serve`'s server on the tiny
 * checkpoint, Debian's Chromium headless, one generation through the page (control image with its Canny
 * preview, the live preview, the result in the gallery). Not a test; rerun it when the page changes.
 *
 *   node --import tsx bench/ui-screenshot.ts [--out docs/images/ui.png] [--dark]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EmbeddedQueue } from '../src/server/embedded-queue.js';
import { startServer } from '../src/server/http.js';
import { DEFAULT_LIMITS } from '../src/server/request.js';
import { createPipelineRunner } from '../src/server/runner.js';
import { launchChromium } from '../test/chromium.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
// relative to the repository, so the parameters text in the picture names no folder of this machine
const MODEL = 'test/fixtures/tiny-sd-cnxs';
process.chdir(ROOT);

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(ROOT, 'docs', 'images', 'ui.png') },
    dark: { type: 'boolean', default: false },
  },
});

// the tiny model's optimized graphs go to a folder of this run, not the user's cache
const graphs = mkdtempSync(join(tmpdir(), 'cnxs-ui-shot-'));
const runner = await createPipelineRunner({ model: MODEL, controlnet: join(MODEL, 'controlnet'), offline: true, graphCacheDir: graphs });
const queue = new EmbeddedQueue({ runner, maxQueue: 4, resultTtlSeconds: 600 });
const server = await startServer({ queue, limits: DEFAULT_LIMITS, host: '127.0.0.1', port: 0 });
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: values.dark ? 'dark' : 'light' });
  await page.goto(server.url);
  await page.locator('#control-file').setInputFiles(join(ROOT, MODEL, 'pipeline', 'control_128.png'));
  await page.locator('#use-canny').check();
  await page.locator('#canny-caption').filter({ hasText: /^Canny edges \(/ }).waitFor();
  await page.locator('#prompt').fill('a photo of a bird, sharp focus');
  await page.locator('#negative-prompt').fill('blurry');
  await page.locator('#steps').fill('12');
  await page.locator('#seed').fill('42');
  await page.locator('#num-images').fill('2');
  await page.locator('#generate').click();
  await page.locator('#gallery li.result').first().waitFor({ timeout: 120_000 });
  await page.locator('#status').filter({ hasText: /^Done in / }).waitFor();
  mkdirSync(dirname(values.out), { recursive: true });
  await page.screenshot({ path: values.out });
  console.log(`wrote ${values.out}`);
} finally {
  await browser.close();
  await server.close();
  await queue.close();
  rmSync(graphs, { recursive: true, force: true });
}
