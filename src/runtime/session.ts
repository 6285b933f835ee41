/**
 * The one seam that owns onnxruntime: sessions are created, run and released here and nowhere
 * else. Feeds are validated against the graph's declared inputs (names, dtypes, ranks, fixed and
 * symbolic dims) so a caller's mistake is a readable `InputError`, never an onnxruntime stack.
 */
import * as ort from 'onnxruntime-node';
import { InputError, RuntimeError } from '../errors.js';
import { EXTERNAL_DATA_FOLDER } from '../graph/builder.js';
import { OnnxDataType, encodeModel, type ModelProto, type ValueInfoProto } from '../graph/onnx-proto.js';
import { Tensor, type AnyTypedArray, type DType, type TensorLike } from '../tensor.js';
import { CACHED_DATA, CACHED_MODEL, cacheEntry, ensureDir, graphCacheKey } from './graph-cache.js';
import { join } from 'node:path';

export interface RuntimeOptions {
  /** onnxruntime execution providers in order of preference; default `['cpu']`. */
  executionProviders?: string[];
  /** Threads for one operator; default: onnxruntime's choice (the physical cores). */
  intraOpNumThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Write the optimized graph here (for inspection). */
  optimizedModelFilePath?: string;
  /**
   * Folder of a disk cache of optimized graphs: the first load saves one (the size of the weights
   * again, as external data), later loads skip graph optimisation. Off when unset; CPU sessions only.
   */
  graphCacheDir?: string;
  /** Per-node profiling output prefix. */
  profileFilePrefix?: string;
  /** onnxruntime's CPU memory arena (default on); off returns activation memory to the system after each run. */
  enableCpuMemArena?: boolean;
  /** onnxruntime's memory-pattern planning (default on). */
  enableMemPattern?: boolean;
  /**
   * Receives a notice when an accelerated execution provider (webgpu, cuda, …) cannot start and
   * the session falls back to the CPU; default `console.warn`.
   */
  warn?: (message: string) => void;
}

/** A feed value: a tensor, or a plain JS scalar for 0-d inputs. */
export type Feed = TensorLike | number | boolean;

const ELEM: Partial<Record<OnnxDataType, { dtype: DType; ort: ort.Tensor.Type }>> = {
  [OnnxDataType.FLOAT]: { dtype: 'float32', ort: 'float32' },
  [OnnxDataType.INT64]: { dtype: 'int64', ort: 'int64' },
  [OnnxDataType.BOOL]: { dtype: 'bool', ort: 'bool' },
};

export class ModelSession {
  private released = false;

  private constructor(
    readonly name: string,
    private readonly session: ort.InferenceSession,
    private readonly inputs: readonly ValueInfoProto[],
    /** The execution provider asked for first that started ('cpu' after a fallback). */
    readonly executionProvider: string,
    /** Whether the graph came optimized from the graph cache. */
    readonly fromCache = false,
  ) {}

  /**
   * Serialize `model` and open an onnxruntime session on it; weights stay in their files. When an
   * accelerated provider cannot start, the session opens on the CPU, with `fallback.cpuModel` when
   * the graph for the CPU differs.
   */
  static async create(model: ModelProto, options: RuntimeOptions = {}, fallback: { cpuModel?: () => ModelProto } = {}): Promise<ModelSession> {
    const bytes = encodeModel(model);
    const providers = knownProviders(model.graph.name, options);
    const opts = (executionProviders: string[], extraSession: Record<string, string> = {}): ort.InferenceSession.SessionOptions => ({
      executionProviders,
      graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
      ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      ...(options.optimizedModelFilePath ? { optimizedModelFilePath: options.optimizedModelFilePath } : {}),
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
      ...(options.enableCpuMemArena !== undefined ? { enableCpuMemArena: options.enableCpuMemArena } : {}),
      ...(options.enableMemPattern !== undefined ? { enableMemPattern: options.enableMemPattern } : {}),
      extra: { session: { model_external_initializers_file_folder_path: EXTERNAL_DATA_FOLDER, ...extraSession } },
    });
    const open = async (executionProviders: string[]): Promise<{ session: ort.InferenceSession; fromCache: boolean }> => {
      // Only CPU graphs are cached: a WebGPU session's saved graph did not load again (onnxruntime 1.30 wrote
      // the same name twice inside an If branch), and other providers' saved graphs are untested.
      const cacheable = options.graphCacheDir && executionProviders.every((p) => p === 'cpu');
      if (!cacheable) return { session: await ort.InferenceSession.create(bytes, opts(executionProviders)), fromCache: false };
      return ModelSession.openCached(model, bytes, executionProviders, options, opts);
    };
    try {
      const { session, fromCache } = await open(providers);
      return new ModelSession(model.graph.name, session, model.graph.inputs, providers[0]!, fromCache);
    } catch (e) {
      const accelerated = providers.filter((p) => p !== 'cpu');
      if (accelerated.length === 0) {
        throw new RuntimeError(`${model.graph.name}: onnxruntime could not create a session: ${firstLine(e)}`, { cause: e });
      }
      (options.warn ?? console.warn)(
        `${model.graph.name}: execution provider ${accelerated.join(', ')} is not available here (${firstLine(e)}); running on the CPU`,
      );
      return ModelSession.create(fallback.cpuModel?.() ?? model, { ...options, executionProviders: ['cpu'] });
    }
  }

  /** A session through the optimized-graph cache: load a hit, or optimize now and save the result. */
  private static async openCached(
    model: ModelProto,
    bytes: Uint8Array,
    executionProviders: string[],
    options: RuntimeOptions,
    opts: (ep: string[], extraSession?: Record<string, string>) => ort.InferenceSession.SessionOptions,
  ): Promise<{ session: ort.InferenceSession; fromCache: boolean }> {
    const root = options.graphCacheDir!;
    const settings = { executionProviders, level: options.graphOptimizationLevel ?? 'all', threads: options.intraOpNumThreads ?? null };
    const entry = cacheEntry(root, model.graph.name.replace(/[^\w.-]/g, '_'), graphCacheKey(model, bytes, settings));
    const base = opts(executionProviders);
    if (entry.hit) {
      try {
        return { session: await ort.InferenceSession.create(entry.hit, { ...base, graphOptimizationLevel: 'disabled', extra: {} }), fromCache: true };
      } catch (e) {
        (options.warn ?? console.warn)(`${model.graph.name}: ignoring an unreadable cached graph ${entry.hit} (${firstLine(e)})`);
      }
    }
    ensureDir(entry.write.dir);
    const session = await ort.InferenceSession.create(bytes, {
      ...opts(executionProviders, {
        optimized_model_external_initializers_file_name: CACHED_DATA,
        optimized_model_external_initializers_min_size_in_bytes: '1024',
      }),
      optimizedModelFilePath: join(entry.write.dir, CACHED_MODEL),
      logSeverityLevel: 3, // onnxruntime warns that NCHWc graphs are machine-specific: the cache key says so
    });
    try {
      entry.write.publish();
    } catch (e) {
      entry.write.discard();
      (options.warn ?? console.warn)(`${model.graph.name}: could not save the optimized graph in ${root} (${firstLine(e)})`);
    }
    return { session, fromCache: false };
  }

  /** Validate feeds, run, and return every graph output as a Tensor. */
  async run(feeds: Readonly<Record<string, Feed>>): Promise<Record<string, Tensor>> {
    if (this.released) throw new RuntimeError(`${this.name}: session was released`);
    const ortFeeds = this.validate(feeds);
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(ortFeeds);
    } catch (e) {
      throw new RuntimeError(`${this.name}: onnxruntime failed while running: ${firstLine(e)}`, { cause: e });
    }
    const result: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(out)) {
      result[k] = new Tensor(t.type as DType, t.data as never, t.dims.map(Number));
    }
    return result;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.session.release();
  }

  private validate(feeds: Readonly<Record<string, Feed>>): Record<string, ort.Tensor> {
    const declared = new Set(this.inputs.map((i) => i.name));
    const unknown = Object.keys(feeds).filter((k) => !declared.has(k));
    if (unknown.length) {
      throw new InputError(`${this.name}: unknown input(s) ${unknown.join(', ')}; expected ${[...declared].join(', ')}`);
    }
    const symbols = new Map<string, { value: number; from: string }>();
    const result: Record<string, ort.Tensor> = {};
    for (const spec of this.inputs) {
      const feed = feeds[spec.name];
      if (feed === undefined) throw new InputError(`${this.name}: missing input "${spec.name}"`);
      const elem = ELEM[spec.type.elemType];
      if (!elem) throw new RuntimeError(`${this.name}: input ${spec.name} has an unsupported element type`);
      const t = toTensor(feed);
      const got = t.dtype === 'uint8' && elem.dtype === 'bool' ? 'bool' : t.dtype;
      if (got !== elem.dtype) {
        throw new InputError(`${this.name}: input "${spec.name}" must be ${elem.dtype}, got ${t.dtype}`);
      }
      const shape = spec.type.shape ?? [];
      if (t.dims.length !== shape.length) {
        throw new InputError(
          `${this.name}: input "${spec.name}" must have rank ${shape.length} [${shape.join(', ')}], got [${t.dims.join(', ')}]`,
        );
      }
      shape.forEach((want, axis) => {
        const have = t.dims[axis]!;
        if (typeof want === 'number') {
          if (have !== want) {
            throw new InputError(`${this.name}: input "${spec.name}" dim ${axis} must be ${want}, got ${have} (shape [${t.dims.join(', ')}])`);
          }
          return;
        }
        const seen = symbols.get(want);
        if (seen && seen.value !== have) {
          throw new InputError(
            `${this.name}: input "${spec.name}" has ${want}=${have} but "${seen.from}" has ${want}=${seen.value}`,
          );
        }
        symbols.set(want, { value: have, from: spec.name });
      });
      result[spec.name] = new ort.Tensor(elem.ort, t.data as AnyTypedArray as never, [...t.dims]);
    }
    return result;
  }
}

function toTensor(feed: Feed): Tensor {
  if (typeof feed === 'number') return new Tensor('float32', Float32Array.of(feed), []);
  if (typeof feed === 'boolean') return new Tensor('bool', Uint8Array.of(feed ? 1 : 0), []);
  return Tensor.from(feed);
}

/**
 * The requested providers this onnxruntime-node build has (onnxruntime would drop the others with a
 * console line of its own, and the session would silently run on the CPU); a notice names the rest.
 */
function knownProviders(name: string, options: RuntimeOptions): string[] {
  const requested = options.executionProviders ?? ['cpu'];
  const built = ort.listSupportedBackends().map((b) => b.name);
  const missing = requested.filter((p) => !built.includes(p));
  if (missing.length === 0) return requested;
  (options.warn ?? console.warn)(
    `${name}: execution provider ${missing.join(', ')} is not in this onnxruntime-node build (it has ${built.join(', ')}); running on the CPU`,
  );
  const kept = requested.filter((p) => built.includes(p));
  return kept.length > 0 ? kept : ['cpu'];
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 500);
}
