/**
 * CLIPTextConfig's config.json keys with transformers' defaults, checked against what this port runs
 * (hidden_act among the activations nn/clip-text-net.ts emits).
 *
 * transformers writes every config through PretrainedConfig, so a text encoder's config.json also
 * carries generic keys (architectures, torch_dtype, generation settings, label maps, …). Those are
 * recognised and dropped quietly; only keys neither CLIP nor PretrainedConfig knows are warned about.
 */
import { ConfigError } from '../errors.js';
import { clipActivation } from '../nn/clip-text-net.js';
import { checkTransformerSizes, parseConfig, type Camelize, type Warn } from '../util/config.js';

const DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  attention_dropout: 0,
  /** Older CLIPTextConfig versions had it; unused at inference. */
  dropout: 0,
  initializer_range: 0.02,
  initializer_factor: 1,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
  model_type: 'clip_text_model',
};

/**
 * Keys PretrainedConfig (transformers 4.x) serialises for every model. They describe training,
 * generation or bookkeeping and do not change the text encoder's forward pass.
 */
export const PRETRAINED_CONFIG_KEYS = new Set([
  'architectures',
  'torch_dtype',
  'dtype',
  'transformers_version',
  'return_dict',
  'output_hidden_states',
  'output_attentions',
  'torchscript',
  'use_bfloat16',
  'tf_legacy_loss',
  'pruned_heads',
  'tie_word_embeddings',
  'chunk_size_feed_forward',
  'is_encoder_decoder',
  'is_decoder',
  'cross_attention_hidden_size',
  'add_cross_attention',
  'tie_encoder_decoder',
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'num_beam_groups',
  'diversity_penalty',
  'temperature',
  'top_k',
  'top_p',
  'typical_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'encoder_no_repeat_ngram_size',
  'bad_words_ids',
  'num_return_sequences',
  'output_scores',
  'return_dict_in_generate',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'begin_suppress_tokens',
  'finetuning_task',
  'id2label',
  'label2id',
  'num_labels',
  'tokenizer_class',
  'prefix',
  'sep_token_id',
  'decoder_start_token_id',
  'task_specific_params',
  'problem_type',
  'gradient_checkpointing',
  'use_cache',
]);

export type CLIPTextConfig = Camelize<typeof DEFAULTS>;

export function parseCLIPTextConfig(raw: Record<string, unknown>, origin: string, warn: Warn): CLIPTextConfig {
  const own = Object.fromEntries(Object.entries(raw).filter(([k]) => !PRETRAINED_CONFIG_KEYS.has(k) || k in DEFAULTS));
  const c = parseConfig(own, DEFAULTS, origin, warn);
  if (c.modelType !== 'clip_text_model') {
    throw new ConfigError(
      `${origin}: model_type ${JSON.stringify(c.modelType)} is not a CLIP text model (expected "clip_text_model"; a full CLIPModel config keeps it under "text_config")`,
    );
  }
  const positive: [string, number][] = [
    ['vocab_size', c.vocabSize],
    ['hidden_size', c.hiddenSize],
    ['intermediate_size', c.intermediateSize],
    ['projection_dim', c.projectionDim],
    ['num_hidden_layers', c.numHiddenLayers],
    ['num_attention_heads', c.numAttentionHeads],
    ['max_position_embeddings', c.maxPositionEmbeddings],
  ];
  checkTransformerSizes(origin, positive, c.hiddenSize, c.numAttentionHeads);
  if (!(c.layerNormEps > 0)) throw new ConfigError(`${origin}: layer_norm_eps must be > 0, got ${c.layerNormEps}`);
  if (!Number.isInteger(c.eosTokenId)) {
    throw new ConfigError(`${origin}: eos_token_id must be an integer (pooling needs it), got ${JSON.stringify(c.eosTokenId)}`);
  }
  clipActivation(c, origin);
  return c;
}
