/**
 * CLIPTextModel's module tree (transformers' CLIP text side) with transformers' keys: `text_model.*`,
 * plus `text_projection` for CLIPTextModelWithProjection; and transformers' activation names. The
 * runtime classes are models/clip-text-model.ts.
 */
import { ConfigError } from '../errors.js';
import { CLIPTextTransformer, type CLIPEncoderOptions } from './clip.js';
import { Linear, type Activation } from './layers.js';
import { Module } from './module.js';

/**
 * The fields of transformers' CLIPTextConfig (camelCased, defaults filled) this tree reads.
 * A parsed config is passed as is; declaring them here keeps nn/ free of the config layer.
 */
export interface CLIPTextNetConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly projectionDim: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly hiddenAct: string;
  readonly layerNormEps: number;
  readonly eosTokenId: number;
}

/** transformers' ACT2FN names → the activation emitted in the graph. */
const ACTIVATIONS: Readonly<Record<string, Activation>> = {
  quick_gelu: 'quick_gelu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
};

export function clipActivation(c: Pick<CLIPTextNetConfig, 'hiddenAct'>, origin: string): Activation {
  const act = ACTIVATIONS[c.hiddenAct];
  if (act === undefined) {
    throw new ConfigError(`${origin}: hidden_act=${JSON.stringify(c.hiddenAct)} is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  }
  return act;
}

/** A CLIP config's encoder sizes (text or vision side: the same transformers fields) as the towers take them. */
export function clipEncoderOptions(
  c: Pick<CLIPTextNetConfig, 'hiddenSize' | 'numAttentionHeads' | 'intermediateSize' | 'numHiddenLayers' | 'layerNormEps' | 'hiddenAct'>,
  origin: string,
): CLIPEncoderOptions {
  return {
    dim: c.hiddenSize,
    heads: c.numAttentionHeads,
    intermediate: c.intermediateSize,
    layers: c.numHiddenLayers,
    eps: c.layerNormEps,
    act: clipActivation(c, origin),
  };
}

/** The module tree: `text_model.*`, plus `text_projection` (no bias) for the projection variant. */
export class CLIPTextNet extends Module {
  readonly text_model: CLIPTextTransformer;
  readonly text_projection: Linear | null;

  constructor(
    readonly config: CLIPTextNetConfig,
    withProjection: boolean,
    origin = '',
  ) {
    super('');
    const c = config;
    this.text_model = this.child('text_model', (p) =>
      new CLIPTextTransformer(p, {
        vocabSize: c.vocabSize,
        maxPositions: c.maxPositionEmbeddings,
        ...clipEncoderOptions(c, origin),
        eosTokenId: c.eosTokenId,
      }),
    );
    this.text_projection = withProjection
      ? this.child('text_projection', (p) => new Linear(p, c.hiddenSize, c.projectionDim, { bias: false }))
      : null;
  }
}
