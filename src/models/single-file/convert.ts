/**
 * A single file's component as a diffusers-keyed WeightSource: every key of the component goes
 * through the rule tables (keys.ts), and each target is a WeightRef over the file's own bytes — a
 * squeeze or a row slice is a TensorInfo with its own offset, length and shape, a transpose a view.
 * Nothing is read: onnxruntime maps exactly those regions as external data.
 */
import type { TensorInfo } from '../../weights/safetensors.js';
import { WeightSource, type WeightRef } from '../../weights/source.js';
import { DTYPE_BYTES, classifyStrided, contiguousStrides, product } from '../../weights/view.js';
import { placeOf, type ComponentPlace } from './detect.js';
import { SingleFileError } from './errors.js';
import { mapKey, targetShape, type KeyContext, type KeyTarget } from './keys.js';

/** A tensor as torch's as_strided window over its ref's stored region, in elements. */
interface Strided {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
}

function asStrided(ref: WeightRef): Strided {
  const { info, view } = ref;
  if (view === undefined) return { shape: info.shape, strides: contiguousStrides(info.shape), offset: 0 };
  if (view.kind === 'strided') return view;
  const st = contiguousStrides(info.shape);
  return { shape: view.perm.map((p) => info.shape[p]!), strides: view.perm.map((p) => st[p]!), offset: 0 }; // bounds: perm checked by weightShape
}

/** The target's window over the stored region. */
function targetWindow(s: Strided, t: KeyTarget, shape: readonly number[]): Strided {
  switch (t.transform) {
    case 'copy':
      return s;
    case 'squeeze_1x1':
      return { shape, strides: s.strides.slice(0, 2), offset: s.offset };
    case 'split_qkv': {
      const rows = shape[0]!; // bounds: targetShape keeps the leading axis
      return { shape, strides: s.strides, offset: s.offset + (t.part ?? 0) * rows * s.strides[0]! };
    }
    case 'transpose':
      return { shape, strides: [s.strides[1]!, s.strides[0]!], offset: s.offset }; // bounds: rank 2 checked by targetShape
  }
}

/**
 * The ref of a target: a contiguous window is a TensorInfo of its own (same file, narrower region,
 * no view); a transpose of a plain stored tensor is a transpose view; anything else a strided view.
 */
function targetRef(ref: WeightRef, t: KeyTarget, shape: readonly number[], name: string): WeightRef {
  const w = targetWindow(asStrided(ref), t, shape);
  const layout = classifyStrided(w.shape, w.strides, w.offset);
  if (layout.kind === 'contiguous') {
    const eb = DTYPE_BYTES[ref.info.dtype];
    const info: TensorInfo = {
      name,
      dtype: ref.info.dtype,
      shape: [...w.shape],
      fileOffset: ref.info.fileOffset + layout.offset * eb,
      byteLength: product(w.shape) * eb,
    };
    return { file: ref.file, info };
  }
  if (ref.view === undefined && t.transform === 'transpose') return { file: ref.file, info: ref.info, view: { kind: 'transpose', perm: [1, 0] } };
  return { file: ref.file, info: ref.info, view: { kind: 'strided', shape: [...w.shape], strides: [...w.strides], offset: w.offset } };
}

/** A stored tensor's shape as the model would see it (its view applied). */
function storedShape(ref: WeightRef): readonly number[] {
  return asStrided(ref).shape;
}

export interface ConvertedComponent {
  /** diffusers keys → refs into the single file. */
  readonly source: WeightSource;
  /** Keys of the component that are declared ignores, with why (for reports and tests). */
  readonly ignored: ReadonlyMap<string, string>;
}

/**
 * Map every key of `place` in `raw` (the single file as stored) to diffusers keys. A key no rule
 * covers, or two keys landing on one diffusers key, is a SingleFileError naming them; whether the
 * result fits the model is `bindStrict`'s to say.
 */
export function convertComponent(raw: WeightSource, place: ComponentPlace, all: readonly ComponentPlace[], ctx: KeyContext): ConvertedComponent {
  const out = new Map<string, WeightRef>();
  const from = new Map<string, string>();
  const ignored = new Map<string, string>();
  const unmapped: string[] = [];
  const collisions: string[] = [];
  for (const key of raw.keys()) {
    if (placeOf(key, all) !== place) continue;
    const ref = raw.get(key)!; // bounds: key comes from raw.keys()
    const rel = key.slice(place.prefix.length);
    const shape = storedShape(ref);
    const m = mapKey(place.layout, rel, shape, ctx, `${raw.origin}: "${key}"`);
    if (m.kind === 'ignored') {
      ignored.set(key, m.why);
      continue;
    }
    if (m.kind === 'unmapped') {
      unmapped.push(key);
      continue;
    }
    for (const t of m.targets) {
      const where = `${raw.origin}: "${key}"`;
      const name = t.transform === 'split_qkv' ? `${key}[${['q', 'k', 'v'][t.part ?? 0]} rows]` : key;
      const prev = from.get(t.key);
      if (prev !== undefined) {
        collisions.push(`"${prev}" and "${key}" both become "${t.key}"`);
        continue;
      }
      from.set(t.key, key);
      out.set(t.key, targetRef(ref, t, targetShape(shape, t, where), name));
    }
  }
  if (unmapped.length || collisions.length) {
    const parts: string[] = [];
    if (unmapped.length) parts.push(`keys no ${place.label} rule maps (${unmapped.length}): ${list(unmapped)}`);
    if (collisions.length) parts.push(`keys that collide (${collisions.length}): ${list(collisions)}`);
    throw new SingleFileError(`${raw.origin}: the ${place.name} keys under "${place.prefix}" do not convert\n  ${parts.join('\n  ')}`);
  }
  return { source: new WeightSource(out, `${raw.origin} [${place.name}]`), ignored };
}

function list(items: readonly string[]): string {
  const shown = items.slice(0, 12).join(', ');
  return items.length > 12 ? `${shown}, … (${items.length - 12} more)` : shown;
}
