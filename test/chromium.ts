/**
 * Debian's Chromium, headless, through playwright-core: the browser the UI test and the README screenshot
 * use. Never a downloaded browser; playwright gives each launch a fresh temporary profile (user-data dir)
 * and removes it on close.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** No GPU, no network of its own (updates, sync, QUIC), no first-run UI: a quiet, reproducible page. */
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the web UI is driven with Debian's chromium, headless (apt-get install chromium; .ci/run installs it)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}
