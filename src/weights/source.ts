/**
 * A weight source: checkpoint keys → where their bytes live. The only seam between checkpoint files
 * and models. `bindStrict` checks a module tree against it both ways: every parameter present with
 * the right shape, every checkpoint key used.
 */
import { WeightLoadError } from '../errors.js';
import type { SafetensorsFile, TensorInfo } from './safetensors.js';
import type { WeightFile } from './weight-file.js';

export type { WeightFile } from './weight-file.js';

/** How the model's tensor is made from the stored bytes when it is not them as they are. */
export type WeightView =
  /** Stored contiguous as `info.shape`; the model's tensor is `transpose(stored, perm)` (ONNX Transpose's perm). */
  | { readonly kind: 'transpose'; readonly perm: readonly number[] }
  /** torch's `as_strided(shape, strides, offset)` over `info`'s region read as a flat array, in elements. */
  | { readonly kind: 'strided'; readonly shape: readonly number[]; readonly strides: readonly number[]; readonly offset: number };

/**
 * One checkpoint tensor: `info` says which bytes of `file` are stored (the external data onnxruntime
 * maps), `view` how the model's tensor is made of them. Without a view the stored bytes are the
 * tensor (row slices and squeezes need none: a TensorInfo with its own offset, length and shape).
 */
export interface WeightRef {
  readonly file: WeightFile;
  readonly info: TensorInfo;
  readonly view?: WeightView;
}

/** The shape the model sees. */
export function weightShape(ref: WeightRef): readonly number[] {
  const v = ref.view;
  if (v === undefined) return ref.info.shape;
  if (v.kind === 'strided') return v.shape;
  return v.perm.map((p) => {
    const d = ref.info.shape[p];
    if (d === undefined) throw new WeightLoadError(`"${ref.info.name}": transpose perm [${v.perm.join(', ')}] does not fit rank ${ref.info.shape.length}`);
    return d;
  });
}

/** A file that knows its tensors as refs already (a torch checkpoint: views into shared storages). */
export interface RefFile {
  readonly path: string;
  readonly refs: ReadonlyMap<string, WeightRef>;
}

/** What a module tree declares: a checkpoint key and the shape it expects there. */
export interface ParameterSpec {
  readonly key: string;
  readonly shape: readonly number[];
}

export class WeightSource {
  /** Where the weights came from, for error messages (a folder or file). */
  readonly origin: string;
  private readonly entries: ReadonlyMap<string, WeightRef>;

  constructor(entries: ReadonlyMap<string, WeightRef>, origin: string) {
    this.entries = entries;
    this.origin = origin;
  }

  /** All tensors of several files (shards), refusing a key that appears twice. */
  static fromFiles(files: readonly (SafetensorsFile | RefFile)[], origin: string): WeightSource {
    const map = new Map<string, WeightRef>();
    for (const file of files) {
      const refs: Iterable<[string, WeightRef]> =
        'refs' in file ? file.refs : [...file.tensors.values()].map((info): [string, WeightRef] => [info.name, { file, info }]);
      for (const [key, ref] of refs) {
        const prev = map.get(key);
        if (prev) {
          throw new WeightLoadError(`${origin}: key "${key}" appears in both ${prev.file.path} and ${file.path}`);
        }
        map.set(key, ref);
      }
    }
    return new WeightSource(map, origin);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  get(key: string): WeightRef | undefined {
    return this.entries.get(key);
  }

  /** The sub-source under `prefix.` with the prefix removed (candle's `vs.pp`). */
  prefixed(prefix: string): WeightSource {
    const map = new Map<string, WeightRef>();
    const p = `${prefix}.`;
    for (const [k, v] of this.entries) if (k.startsWith(p)) map.set(k.slice(p.length), v);
    return new WeightSource(map, `${this.origin} [${prefix}]`);
  }

  /**
   * Bind a module tree's parameters strictly: a missing key, an unused key or a shape mismatch is
   * an error that names every offending key.
   */
  bindStrict(params: Iterable<ParameterSpec>): BoundWeights {
    const missing: string[] = [];
    const misShaped: string[] = [];
    const bound = new Map<string, WeightRef>();
    for (const p of params) {
      const ref = this.entries.get(p.key);
      if (ref === undefined) {
        missing.push(p.key);
        continue;
      }
      const shape = weightShape(ref);
      if (!sameShape(shape, p.shape)) {
        misShaped.push(`${p.key}: checkpoint has [${shape.join(', ')}], model expects [${p.shape.join(', ')}]`);
        continue;
      }
      bound.set(p.key, ref);
    }
    const unused = [...this.entries.keys()].filter((k) => !bound.has(k) && !misShaped.some((m) => m.startsWith(`${k}:`)));
    if (missing.length || misShaped.length || unused.length) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing keys (${missing.length}): ${list(missing)}`);
      if (unused.length) parts.push(`unused keys (${unused.length}): ${list(unused)}`);
      if (misShaped.length) parts.push(`mis-shaped keys (${misShaped.length}): ${list(misShaped)}`);
      throw new WeightLoadError(`${this.origin}: weights do not match the model\n  ${parts.join('\n  ')}`);
    }
    return new BoundWeights(bound);
  }
}

/** Weights validated against one module tree. */
export class BoundWeights {
  constructor(private readonly refs: ReadonlyMap<string, WeightRef>) {}

  has(key: string): boolean {
    return this.refs.has(key);
  }

  get(key: string): WeightRef {
    const r = this.refs.get(key);
    if (r === undefined) throw new WeightLoadError(`no weight bound for "${key}"`);
    return r;
  }

  entries(): IterableIterator<[string, WeightRef]> {
    return this.refs.entries();
  }

  get size(): number {
    return this.refs.size;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function list(keys: string[]): string[] | string {
  const shown = keys.slice(0, 12).join(', ');
  return keys.length > 12 ? `${shown}, … (${keys.length - 12} more)` : shown;
}
