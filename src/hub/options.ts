/** Options shared by `hubDownload`, `snapshotDownload` and `resolvePretrained`. */

/** Bytes of one file received so far; `total` is null when the server did not say. */
export interface HubProgress {
  /** Path of the file in the repo, e.g. `unet/diffusion_pytorch_model.safetensors`. */
  file: string;
  loaded: number;
  total: number | null;
}

export interface HubOptions {
  /** Branch, tag or commit hash; default `main`. */
  revision?: string;
  /** Cache root; default `HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`, `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Hub address; default `HF_ENDPOINT` or `https://huggingface.co`. */
  endpoint?: string;
  /** Access token; default `HF_TOKEN`, then the token file (`HF_TOKEN_PATH`, `$HF_HOME/token`). `false` sends none. */
  token?: string | false;
  /** Never ask the Hub: answer from the cache or fail (also on with `HF_HUB_OFFLINE=1`). */
  localFilesOnly?: boolean;
  /** Called as bytes arrive; `loaded` counts bytes resumed from an earlier, interrupted download. */
  onProgress?: (progress: HubProgress) => void;
  signal?: AbortSignal;
  /** `fetch` to use; default the global one. */
  fetch?: typeof fetch;
  /** Environment the `HF_*` variables are read from; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /** ms a request may stay silent (overrides `HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT`, 10 s each). */
  timeoutMs?: number;
  /** Times a download cut mid-file is resumed within one call (default 5, as huggingface_hub). */
  retries?: number;
  /** Receives non-fatal notices (variant fallbacks); default `console.warn`. */
  warn?: (message: string) => void;
}
