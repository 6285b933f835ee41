/**
 * Module trees whose parameter paths are the checkpoint's state_dict keys.
 *
 * A module is pure structure, built from a config: it declares its parameters (key + shape) and
 * children, and its `build(op, …)` emits its forward pass as graph nodes at trace time. It never
 * runs anything: running is the runtime classes' `forward(args)` (models/), which feed the traced
 * graph to onnxruntime. Weights are bound separately (`WeightSource.bindStrict(module.parameters())`)
 * and reach the graph through `GraphBuilder.param`.
 */
import type { ParameterSpec } from '../weights/source.js';

export function joinPath(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

export abstract class Module {
  /** The module's key prefix, e.g. `down_blocks.0.resnets.1`; '' for a root. */
  readonly path: string;
  private readonly ownParams: ParameterSpec[] = [];
  private readonly children: Module[] = [];

  constructor(path: string) {
    this.path = path;
  }

  /** Path of a direct child or parameter called `name`. */
  protected sub(name: string): string {
    return joinPath(this.path, name);
  }

  protected param(name: string, shape: readonly number[]): ParameterSpec {
    const p: ParameterSpec = { key: this.sub(name), shape };
    this.ownParams.push(p);
    return p;
  }

  /** Register a child built at `this.sub(name)`. */
  protected child<M extends Module>(name: string, make: (path: string) => M): M {
    const m = make(this.sub(name));
    this.children.push(m);
    return m;
  }

  /** A PyTorch-style ModuleList: children named `name.0`, `name.1`, … */
  protected list<M extends Module>(name: string, n: number, make: (path: string, i: number) => M): M[] {
    return Array.from({ length: n }, (_, i) => this.child(`${name}.${i}`, (p) => make(p, i)));
  }

  /** Every parameter of this subtree, depth first. */
  *parameters(): Generator<ParameterSpec> {
    yield* this.ownParams;
    for (const c of this.children) yield* c.parameters();
  }
}

/** A slot with no parameters where PyTorch has Dropout (`to_out.1`, `ff.net.1`), so indices line up. */
export class Identity extends Module {}
