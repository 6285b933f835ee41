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

export interface RuntimeOptions {
  /** onnxruntime execution providers in order of preference; default `['cpu']`. */
  executionProviders?: string[];
  /** Threads for one operator; default: onnxruntime's choice (the physical cores). */
  intraOpNumThreads?: number;
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Write the optimized graph here (a cache for warm loads, or for inspection). */
  optimizedModelFilePath?: string;
  /** Per-node profiling output prefix. */
  profileFilePrefix?: string;
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
  ) {}

  /** Serialize `model` and open an onnxruntime session on it; weights stay in their files. */
  static async create(model: ModelProto, options: RuntimeOptions = {}): Promise<ModelSession> {
    const bytes = encodeModel(model);
    const opts: ort.InferenceSession.SessionOptions = {
      executionProviders: options.executionProviders ?? ['cpu'],
      graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
      ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      ...(options.optimizedModelFilePath ? { optimizedModelFilePath: options.optimizedModelFilePath } : {}),
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
      extra: { session: { model_external_initializers_file_folder_path: EXTERNAL_DATA_FOLDER } },
    };
    try {
      const session = await ort.InferenceSession.create(bytes, opts);
      return new ModelSession(model.graph.name, session, model.graph.inputs);
    } catch (e) {
      throw new RuntimeError(`${model.graph.name}: onnxruntime could not create a session: ${firstLine(e)}`, { cause: e });
    }
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

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 500);
}
