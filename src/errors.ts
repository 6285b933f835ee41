/**
 * Named errors. Every failure a user can cause surfaces as one of these, with a message that names
 * what is wrong (file, key, shape, value) — never a raw onnxruntime stack.
 */
export class ControlNetXSError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A checkpoint file is unreadable or its header is malformed. */
export class SafetensorsError extends ControlNetXSError {}

/** Weights do not match the module tree: missing, unused or mis-shaped keys. */
export class WeightLoadError extends ControlNetXSError {}

/** A model folder has no weights file for the asked variant (or none at all). */
export class MissingWeightsError extends WeightLoadError {}

/** A config.json is missing or holds an invalid value. */
export class ConfigError extends ControlNetXSError {}

/** Inputs given to a model or pipeline have the wrong name, dtype, shape or value. */
export class InputError extends ControlNetXSError {}

/** onnxruntime refused to build or run a session. */
export class RuntimeError extends ControlNetXSError {}

/** A torch checkpoint (`.ckpt` / `.pt` / `.bin`: zip archive or legacy pickle) is malformed or holds more than tensor data. */
export class TorchCheckpointError extends WeightLoadError {}

/**
 * A checkpoint asked for code to be run (a pickle naming a callable outside the tensor-data
 * allow-list). Nothing was executed; `refused` names what was asked for (`posix.system`).
 */
export class SecurityError extends ControlNetXSError {
  constructor(message: string, readonly refused: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
