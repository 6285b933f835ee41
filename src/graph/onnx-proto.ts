/**
 * A minimal protobuf writer for the subset of onnx.proto this project emits
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto).
 * Field numbers follow onnx/onnx.proto3. Only encoding is needed: graphs are built here and
 * handed to onnxruntime as bytes.
 */

export const enum OnnxDataType {
  FLOAT = 1,
  UINT8 = 2,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  BFLOAT16 = 16,
}

const enum AttrType {
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  GRAPH = 5,
  FLOATS = 6,
  INTS = 7,
}

/** Integers, strings and int lists are plain values; floats are tagged so 1.0 never becomes an INT. */
export type AttrValue =
  | number
  | bigint
  | string
  | readonly number[]
  | { float: number }
  | { floats: readonly number[] }
  | { graph: GraphProto };

export interface NodeProto {
  name: string;
  opType: string;
  domain?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, AttrValue>>;
}

export interface TensorTypeProto {
  elemType: OnnxDataType;
  /** A number is a fixed size, a string a symbolic (dynamic) dimension; absent = unknown rank. */
  shape?: readonly (number | string)[];
}

export interface ValueInfoProto {
  name: string;
  type: TensorTypeProto;
}

export interface TensorProto {
  name: string;
  dataType: OnnxDataType;
  dims: readonly number[];
  /** Inline little-endian bytes. */
  raw?: Uint8Array;
  /** Bytes that stay in a file on disk: `location` is relative to the session's external-data folder. */
  external?: { location: string; offset: number; length: number };
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
}

export interface ModelProto {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producerName: string;
  graph: GraphProto;
}

/** Growable byte sink with protobuf wire-format primitives. */
class Writer {
  private buf = new Uint8Array(1024);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    this.reserve(10);
    while (x >= 0x80n) {
      this.buf[this.len++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.len++] = Number(x);
  }

  tag(field: number, wire: 0 | 1 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  bytes(field: number, b: Uint8Array): void {
    this.tag(field, 2);
    this.varint(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, v: number | bigint): void {
    this.tag(field, 0);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, 5);
    this.reserve(4);
    new DataView(this.buf.buffer, this.len, 4).setFloat32(0, v, true);
    this.len += 4;
  }

  message(field: number, write: (w: Writer) => void): void {
    const inner = new Writer();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

function writeAttribute(w: Writer, name: string, v: AttrValue): void {
  w.string(1, name);
  if (typeof v === 'string') {
    w.string(4, v);
    w.int(20, AttrType.STRING);
  } else if (typeof v === 'number' || typeof v === 'bigint') {
    if (typeof v === 'number' && !Number.isInteger(v)) throw new Error(`attribute ${name}: use { float } for ${v}`);
    w.int(3, v);
    w.int(20, AttrType.INT);
  } else if (Array.isArray(v)) {
    for (const x of v as readonly number[]) {
      if (!Number.isInteger(x)) throw new Error(`attribute ${name}: use { floats } for non-integer lists`);
      w.int(8, x);
    }
    w.int(20, AttrType.INTS);
  } else if ('graph' in v) {
    w.message(6, (g) => writeGraph(g, v.graph));
    w.int(20, AttrType.GRAPH);
  } else if ('floats' in v) {
    for (const x of v.floats) w.float(7, x);
    w.int(20, AttrType.FLOATS);
  } else {
    w.float(2, (v as { float: number }).float);
    w.int(20, AttrType.FLOAT);
  }
}

function writeNode(w: Writer, n: NodeProto): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) w.message(5, (a) => writeAttribute(a, k, v));
  if (n.domain) w.string(7, n.domain);
}

function writeTensor(w: Writer, t: TensorProto): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  w.string(8, t.name);
  if (t.raw) w.bytes(9, t.raw);
  if (t.external) {
    const entries: [string, string][] = [
      ['location', t.external.location],
      ['offset', String(t.external.offset)],
      ['length', String(t.external.length)],
    ];
    for (const [k, v] of entries) {
      w.message(13, (e) => {
        e.string(1, k);
        e.string(2, v);
      });
    }
    w.int(14, 1); // data_location = EXTERNAL
  }
}

function writeValueInfo(w: Writer, v: ValueInfoProto): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tt) => {
      tt.int(1, v.type.elemType);
      const dims = v.type.shape;
      if (dims === undefined) return;
      tt.message(2, (shape) => {
        for (const d of dims) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

function writeGraph(w: Writer, g: GraphProto): void {
  for (const n of g.nodes) w.message(1, (x) => writeNode(x, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (x) => writeTensor(x, t));
  for (const i of g.inputs) w.message(11, (x) => writeValueInfo(x, i));
  for (const o of g.outputs) w.message(12, (x) => writeValueInfo(x, o));
}

/** Serialize a model to the bytes onnxruntime's `InferenceSession.create` accepts. */
export function encodeModel(m: ModelProto): Uint8Array {
  const w = new Writer();
  w.int(1, m.irVersion);
  w.string(2, m.producerName);
  w.message(7, (g) => writeGraph(g, m.graph));
  for (const o of m.opsets) {
    w.message(8, (x) => {
      if (o.domain) x.string(1, o.domain);
      x.int(2, o.version);
    });
  }
  return w.finish();
}
