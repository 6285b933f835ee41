/**
 * transformers' `ACT2FN` names the vision backbones of the depth models use (`hidden_act`), mapped
 * onto graph ops. "gelu" is the exact (erf) GELU, as transformers' GELUActivation.
 */
import { ConfigError } from '../errors.js';
import type { GraphBuilder, Value } from '../graph/builder.js';
import { activation, type Activation } from './layers.js';

export type HFActivation = Activation | 'relu';

const ACT2FN: Readonly<Record<string, HFActivation>> = {
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  quick_gelu: 'quick_gelu',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

/** The activation `name` names (ConfigError naming `key` and the supported names otherwise). */
export function hfActivation(name: string, origin: string, key = 'hidden_act'): HFActivation {
  const act = ACT2FN[name];
  if (act === undefined) throw new ConfigError(`${origin}: ${key}=${JSON.stringify(name)} is not supported (supported: ${Object.keys(ACT2FN).join(', ')})`);
  return act;
}

export function applyActivation(op: GraphBuilder, x: Value, act: HFActivation): Value {
  return act === 'relu' ? op.relu(x) : activation(op, x, act);
}
