/**
 * The one seam that owns onnxruntime: sessions are created, run and released here and nowhere
 * else (onnxruntime-node itself is loaded on the first session, by `onnxruntime.ts`). Feeds are
 * validated against the graph's declared inputs (names, dtypes, ranks, fixed and symbolic dims) so a
 * caller's mistake is a readable `InputError`, never an onnxruntime stack.
 */
import { join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { ConfigError, ControlNetXSError, InputError, RuntimeError } from '../errors.js';
import { OnnxDataType, encodeModel, type GraphProto, type ModelProto, type ValueInfoProto } from '../graph/onnx-proto.js';
import { Tensor, type AnyTypedArray, type DType, type TensorLike } from '../tensor.js';
import { describeStartFailure, formatDeviceFallback, type DeviceFallback } from './device-fallback.js';
import { CACHED_DATA, CACHED_MODEL, GraphCache, graphCacheKey } from './graph-cache.js';
import { firstLine } from './messages.js';
import { browserRuntimeChecks, loadOnnxruntime, onnxruntimeBinaryDir, supportedBackends, weightFiles, type Onnxruntime } from './onnxruntime.js';

export type { BrowserRuntimeChecks } from './onnxruntime.js';

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
   * A folder that cannot be written costs a warning (one per model: share a `graphCache` for one in
   * all), and the session opens without the cache.
   */
  graphCacheDir?: string;
  /**
   * The graph cache as an object that sessions share (`new GraphCache(dir)`, the same instance in
   * every model's options): a problem with its folder is reported once and not retried. Wins over
   * `graphCacheDir`.
   */
  graphCache?: GraphCache;
  /** Per-node profiling output prefix. */
  profileFilePrefix?: string;
  /** onnxruntime's CPU memory arena (default on); off returns activation memory to the system after each run. */
  enableCpuMemArena?: boolean;
  /** onnxruntime's memory-pattern planning (default on). */
  enableMemPattern?: boolean;
  /**
   * Which of onnxruntime's own session log lines reach stderr: 0 verbose, 1 info, 2 warning,
   * 3 error (default; its errors are thrown as `RuntimeError` too), 4 fatal.
   */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Receives, once the session is open, each execution provider asked for that does not run this
   * model (not in this onnxruntime-node build, or could not start) and what runs it instead. When
   * unset, each one is a one-line `warn` (`formatDeviceFallback`).
   */
  onDeviceFallback?: (fallback: DeviceFallback) => void;
  /**
   * Receives a one-line notice: a provider fallback (when `onDeviceFallback` is unset), a graph cache
   * that cannot be used; default `console.warn`.
   */
  warn?: (message: string) => void;
}

/** A feed value: a tensor, or a plain JS scalar for 0-d inputs. */
export type Feed = TensorLike | number | boolean;

const ELEM: Partial<Record<OnnxDataType, { dtype: DType; ort: Ort.Tensor.Type }>> = {
  [OnnxDataType.FLOAT]: { dtype: 'float32', ort: 'float32' },
  [OnnxDataType.INT64]: { dtype: 'int64', ort: 'int64' },
  [OnnxDataType.BOOL]: { dtype: 'bool', ort: 'bool' },
};

type SessionOptionsFor = (executionProviders: string[], extraSession?: Record<string, string>) => Ort.InferenceSession.SessionOptions;

export class ModelSession {
  private released = false;

  private constructor(
    readonly name: string,
    private readonly ort: Onnxruntime,
    private readonly session: Ort.InferenceSession,
    private readonly inputs: readonly ValueInfoProto[],
    /** The execution provider asked for first that started ('cpu' after a fallback). */
    readonly executionProvider: string,
    /** Whether the graph came optimized from the graph cache. */
    readonly fromCache = false,
  ) {}

  /**
   * Serialize `model` and open an onnxruntime session on it; weights stay in their files. When an
   * accelerated provider cannot start, the session opens on the CPU, with `fallback.cpuModel` when
   * the graph for the CPU differs, and `onDeviceFallback` (or `warn`) hears why.
   */
  static async create(model: ModelProto, options: RuntimeOptions = {}, fallback: { cpuModel?: () => ModelProto } = {}): Promise<ModelSession> {
    const ort = await loadOnnxruntime();
    const name = model.graph.name;
    const requested = options.executionProviders ?? ['cpu'];
    const built = supportedBackends(ort);
    const browser = browserRuntimeChecks();
    // onnxruntime-web calls its CPU backend 'wasm' (and takes 'cpu' for it too): the fallback is named so.
    const cpu = built.includes('wasm') ? 'wasm' : 'cpu';
    const onCpu = (p: string): boolean => p === 'cpu' || p === cpu;
    // onnxruntime would drop a provider it does not know with a console line of its own and quietly run on the CPU.
    const fallbacks: Omit<DeviceFallback, 'running'>[] = requested
      .filter((p) => !built.includes(p))
      .map((p) => ({ model: name, requested: p, kind: 'not-in-build', reason: `not in this onnxruntime-node build (it has ${built.join(', ')})`, detail: '' }));
    let kept = requested.filter((p) => built.includes(p));
    if (browser !== null && kept.includes('webgpu')) {
      // Decided here, before onnxruntime-web fails on it with a message of its own and before any weight is read.
      const gpu = await browser.webgpu();
      if ('missing' in gpu) {
        fallbacks.push({ model: name, requested: 'webgpu', kind: 'failed-to-start', reason: gpu.missing, hint: gpu.hint, detail: '' });
        kept = kept.filter((p) => p !== 'webgpu');
      } else if (kept[0] === 'webgpu' && computesInFloat16(model.graph) && !gpu.features.has('shader-f16')) {
        throw new ConfigError(
          `${name}: dtype "float16" on WebGPU needs the adapter feature "shader-f16", which this browser's adapter (${gpu.adapter}) does not have: ` +
            `use dtype "float32" (on device "webgpu" or "wasm")`,
        );
      }
    }
    const providers = kept.length > 0 ? kept : [cpu];
    const cpuModel = () => fallback.cpuModel?.() ?? model;

    let opened: { session: Ort.InferenceSession; fromCache: boolean };
    // The graph was traced for the first provider asked for; the CPU gets its own when that one is missing.
    let m = onCpu(providers[0]!) && !onCpu(requested[0]!) ? cpuModel() : model;
    const skipped = fallbacks.filter((f) => f.kind === 'failed-to-start').map((f) => `${f.requested}: ${f.reason}`);
    await browser?.checkWeights(m, providers, skipped.length > 0 ? `on ${cpu} because ${skipped.join('; ')}` : undefined);
    try {
      opened = await ModelSession.open(ort, m, providers, options);
    } catch (e) {
      // Ours, not onnxruntime's (a weights file that did not download): no provider would do better.
      if (e instanceof ControlNetXSError) throw e;
      const accelerated = providers.filter((p) => !onCpu(p));
      if (accelerated.length === 0) {
        throw new RuntimeError(`${name}: onnxruntime could not create a session: ${firstLine(e)}`, { cause: e });
      }
      const failure = describeStartFailure(accelerated[0]!, e, onnxruntimeBinaryDir());
      fallbacks.push({ model: name, requested: accelerated.join(', '), kind: 'failed-to-start', ...failure });
      m = cpuModel();
      await browser?.checkWeights(m, [cpu], `on ${cpu} because ${accelerated.join(', ')} did not start: ${failure.reason}`);
      try {
        opened = await ModelSession.open(ort, m, [cpu], options);
      } catch (cpuError) {
        if (cpuError instanceof ControlNetXSError) throw cpuError;
        throw new RuntimeError(`${name}: onnxruntime could not create a session: ${firstLine(cpuError)}`, { cause: cpuError });
      }
    }
    const running = fallbacks.some((f) => f.kind === 'failed-to-start') || onCpu(providers[0]!) ? cpu : providers[0]!;
    for (const f of fallbacks) {
      const report: DeviceFallback = { ...f, running };
      if (options.onDeviceFallback) options.onDeviceFallback(report);
      else (options.warn ?? console.warn)(formatDeviceFallback(report));
    }
    return new ModelSession(name, ort, opened.session, m.graph.inputs, running, opened.fromCache);
  }

  /** One attempt on `executionProviders`, through the graph cache when it applies. */
  private static async open(
    ort: Onnxruntime,
    model: ModelProto,
    executionProviders: string[],
    options: RuntimeOptions,
  ): Promise<{ session: Ort.InferenceSession; fromCache: boolean }> {
    const files = await weightFiles(model);
    const bytes = encodeModel(files.model);
    const opts: SessionOptionsFor = (providers, extraSession = {}) => ({
      executionProviders: providers,
      graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
      // 3: onnxruntime's warnings are for its developers (unused initializers, nodes placed on the CPU, NCHWc
      // graphs being machine-specific when the cache saves one); its errors are thrown too.
      logSeverityLevel: options.logSeverityLevel ?? 3,
      ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      ...(options.optimizedModelFilePath ? { optimizedModelFilePath: options.optimizedModelFilePath } : {}),
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
      ...(options.enableCpuMemArena !== undefined ? { enableCpuMemArena: options.enableCpuMemArena } : {}),
      ...(options.enableMemPattern !== undefined ? { enableMemPattern: options.enableMemPattern } : {}),
      extra: { session: { ...files.extraSession, ...extraSession } },
      ...(files.externalData ? { externalData: files.externalData } : {}),
    });
    // Only CPU graphs are cached: a WebGPU session's saved graph did not load again (onnxruntime 1.30 wrote
    // the same name twice inside an If branch), and other providers' saved graphs are untested.
    const cache = options.graphCache ?? (options.graphCacheDir ? new GraphCache(options.graphCacheDir) : null);
    if (cache === null || !executionProviders.every((p) => p === 'cpu')) {
      return { session: await ort.InferenceSession.create(bytes, opts(executionProviders)), fromCache: false };
    }
    const settings = {
      ort: ort.env.versions.node,
      executionProviders,
      level: options.graphOptimizationLevel ?? 'all',
      threads: options.intraOpNumThreads ?? null,
    };
    const key = graphCacheKey(model, bytes, settings);
    return cache.open(
      model.graph.name.replace(/[^\w.-]/g, '_'),
      key,
      {
        load: (path) => ort.InferenceSession.create(path, { ...opts(executionProviders), graphOptimizationLevel: 'disabled', extra: {} }),
        save: (dir) =>
          ort.InferenceSession.create(bytes, {
            ...opts(executionProviders, {
              optimized_model_external_initializers_file_name: CACHED_DATA,
              optimized_model_external_initializers_min_size_in_bytes: '1024',
            }),
            optimizedModelFilePath: join(dir, CACHED_MODEL),
          }),
        plain: () => ort.InferenceSession.create(bytes, opts(executionProviders)),
      },
      options.warn ?? console.warn,
    );
  }

  /** Validate feeds, run, and return every graph output as a Tensor. */
  async run(feeds: Readonly<Record<string, Feed>>): Promise<Record<string, Tensor>> {
    if (this.released) throw new RuntimeError(`${this.name}: session was released`);
    const ortFeeds = this.validate(feeds);
    let out: Ort.InferenceSession.ReturnType;
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

  private validate(feeds: Readonly<Record<string, Feed>>): Record<string, Ort.Tensor> {
    const declared = new Set(this.inputs.map((i) => i.name));
    const unknown = Object.keys(feeds).filter((k) => !declared.has(k));
    if (unknown.length) {
      throw new InputError(`${this.name}: unknown input(s) ${unknown.join(', ')}; expected ${[...declared].join(', ')}`);
    }
    const symbols = new Map<string, { value: number; from: string }>();
    const result: Record<string, Ort.Tensor> = {};
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
      result[spec.name] = new this.ort.Tensor(elem.ort, t.data as AnyTypedArray as never, [...t.dims]);
    }
    return result;
  }
}

/**
 * Whether a graph computes in float16 (`TraceOptions.dtype`): its float32 inputs are cast to float16 and
 * its constants are float16. A float32 graph over float16 weights only casts them to float32.
 */
function computesInFloat16(graph: GraphProto): boolean {
  if (graph.initializers.some((t) => t.dataType === OnnxDataType.FLOAT16 && t.external === undefined)) return true;
  return graph.nodes.some(
    (n) =>
      (n.opType === 'Cast' && n.attributes?.['to'] === OnnxDataType.FLOAT16) ||
      Object.values(n.attributes ?? {}).some((v) => typeof v === 'object' && v !== null && 'graph' in v && computesInFloat16(v.graph)),
  );
}

function toTensor(feed: Feed): Tensor {
  if (typeof feed === 'number') return new Tensor('float32', Float32Array.of(feed), []);
  if (typeof feed === 'boolean') return new Tensor('bool', Uint8Array.of(feed ? 1 : 0), []);
  return Tensor.from(feed);
}
