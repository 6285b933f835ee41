/**
 * Opening a single file: a safetensors file or a torch checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin`,
 * told apart by their first bytes, not their names), as a WeightSource under the keys it stores,
 * plus what its keys say it is. Only headers (and a torch file's pickle) are read.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { SafetensorsError } from '../../errors.js';
import { loadSafetensors } from '../../weights/safetensors.js';
import { WeightSource, weightShape } from '../../weights/source.js';
import { loadTorchCheckpoint } from '../../weights/torch-archive.js';
import { inspectSingleFile, type SingleFileInspection } from './detect.js';

export interface SingleFile {
  readonly path: string;
  /** The tensors under the keys the file stores (LDM / SGM names). */
  readonly source: WeightSource;
  readonly inspection: SingleFileInspection;
  /** A torch checkpoint's `global_step` (LDM's training step), null when it has none (safetensors never do). */
  readonly globalStep: number | null;
}

/** Is this path a file (as opposed to a model folder or a Hub id)? */
export function isSingleFilePath(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The first bytes of a file, to tell a torch archive (zip) or pickle from safetensors. */
function sniff(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError(`${path}: cannot open single-file checkpoint (${(e as Error).message})`, { cause: e });
  }
  try {
    const head = Buffer.alloc(4);
    const n = readSync(fd, head, 0, 4, 0);
    return head.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export async function openSingleFile(path: string): Promise<SingleFile> {
  const head = sniff(path);
  const isZip = head.length === 4 && head.readUInt32LE(0) === 0x04034b50;
  const isPickle = head.length >= 1 && head[0] === 0x80;
  let source: WeightSource;
  let globalStep: number | null = null;
  if (isZip || isPickle) {
    const ckpt = await loadTorchCheckpoint(path);
    source = new WeightSource(ckpt.refs, path);
    const step = ckpt.others.get('global_step');
    if (typeof step === 'number' || typeof step === 'bigint') globalStep = Number(step);
  } else {
    source = WeightSource.fromFiles([await loadSafetensors(path)], path);
  }
  const shapes = new Map(source.keys().map((k) => [k, weightShape(source.get(k)!)] as const)); // bounds: k from keys()
  return { path, source, inspection: inspectSingleFile(shapes), globalStep };
}
