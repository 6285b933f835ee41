/** Where a pipeline's files are: a local folder as is, or a Hub repo resolved into the Python-compatible cache. */
import { existsSync, statSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { RuntimeOptions } from '../runtime/session.js';
import type { TraceOptions } from '../graph/builder.js';

export type Device = 'cpu' | 'cuda' | 'webgpu';

export interface PipelineLoadOptions {
  /** Weights variant of every component, e.g. 'fp16'. */
  variant?: string;
  /** Compute dtype; float32 (fp16 checkpoints are cast in-graph). */
  dtype?: 'float32';
  /** Shorthand for the execution provider: 'cpu' (default), 'cuda', 'webgpu'. */
  device?: Device;
  revision?: string;
  cacheDir?: string;
  localFilesOnly?: boolean;
  token?: string;
  endpoint?: string;
  onDownloadProgress?: (p: { file: string; loaded: number; total: number | null }) => void;
  runtime?: RuntimeOptions;
  trace?: Partial<TraceOptions>;
  warn?: (message: string) => void;
}

/** A local pipeline folder. Hub ids are resolved by the hub layer when it is present. */
export async function resolvePipelineDir(idOrDir: string, _options: PipelineLoadOptions): Promise<string> {
  if (existsSync(idOrDir) && statSync(idOrDir).isDirectory()) return idOrDir;
  throw new ConfigError(`${idOrDir}: not a local pipeline folder`);
}

/** A local model folder. Hub ids are resolved by the hub layer when it is present. */
export async function resolveModelDir(idOrDir: string, _options: PipelineLoadOptions): Promise<string> {
  if (existsSync(idOrDir) && statSync(idOrDir).isDirectory()) return idOrDir;
  throw new ConfigError(`${idOrDir}: not a local model folder`);
}
