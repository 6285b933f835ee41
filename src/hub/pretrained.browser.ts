/**
 * The browser build's `pretrained.ts`: nothing is downloaded ahead into a cache folder. A model or
 * pipeline is a URL (absolute, or relative to the page: a static host's folder, or a Hub repo's
 * `https://huggingface.co/<org>/<name>/resolve/<revision>`), and each file is fetched (and kept in
 * Cache Storage) when loading reads it, by `platform/files.browser.ts`.
 */
import { ConfigError } from '../errors.js';
import { absoluteUrl, joinPath } from '../platform/files.browser.js';
import type { PretrainedHubOptions } from './pretrained.js';

export type { PretrainedHubOptions } from './pretrained.js';

/** The folder URL of the model or pipeline (with the model's subfolder appended). */
export async function resolvePretrained(idOrPath: string, options: PretrainedHubOptions = {}): Promise<string> {
  const sub = options.files !== 'pipeline' && options.subfolder ? options.subfolder : '';
  const url = absoluteUrl(idOrPath);
  return sub ? joinPath(url, sub) : url;
}

/** Needs a local model_index.json; in the browser, read it by URL with `loadModelIndex` instead. */
export function pipelineComponents(indexPath: string): string[] {
  throw new ConfigError(`${indexPath}: reading a local model_index.json is not available in the browser build`);
}
