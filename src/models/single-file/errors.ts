/**
 * Named errors of single-file loading (original LDM / SGM checkpoints). All are WeightLoadErrors, so
 * code that handles a bad checkpoint folder handles a bad single file the same way.
 */
import { WeightLoadError } from '../../errors.js';

/** A single file cannot be loaded as asked: keys that map to no diffusers weight, or two that map to the same one. */
export class SingleFileError extends WeightLoadError {}

/**
 * A single file of an architecture this port has no configs for (diffusers names it, e.g. "xl_refiner",
 * "flux"), or one in which no Stable Diffusion component is recognised at all.
 */
export class UnknownArchitectureError extends SingleFileError {}

/** The file holds no weights for a component that was asked of it (diffusers' SingleFileComponentError). */
export class SingleFileComponentError extends SingleFileError {}

/** The config a single file is loaded with (bundled default or `config` override) does not fit the file's tensors. */
export class SingleFileConfigMismatchError extends SingleFileError {}
