/**
 * Hugging Face Hub client: resolve repo ids into huggingface_hub's cache layout, so checkpoints
 * downloaded by Python's diffusers are reused here and the other way round.
 */
export { hubDownload } from './download.js';
export { snapshotDownload, type SnapshotOptions } from './snapshot.js';
export { resolvePretrained, type PretrainedHubOptions } from './pretrained.js';
export type { HubOptions, HubProgress } from './options.js';
export { resolveHubSettings, type HubSettings } from './settings.js';
export { repoFolderName } from './cache.js';
export {
  HubAuthError,
  HubEntryNotFoundError,
  HubError,
  HubGatedRepoError,
  HubNotCachedError,
  HubProtocolError,
  HubRepoNotFoundError,
  HubRevisionNotFoundError,
} from './errors.js';
