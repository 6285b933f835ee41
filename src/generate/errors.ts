/**
 * A user-level setting the model cannot take (too many steps for its scheduler, a size over the pixel
 * cap, …). It carries the setting's name so each front end words it its own way: the CLI says
 * `--max-pixels`, the HTTP API `maxPixels`. The message defaults to the settings' own (camelCase) names.
 */
import { InputError } from '../errors.js';

/** How a front end spells a setting (`maxPixels` → `--max-pixels`). */
export type SettingNames = (setting: string) => string;

export class SettingError extends InputError {
  /**
   * @param setting the setting at fault, in camelCase (`steps`, `maxPixels`, `clipSkip`)
   * @param text the message, with every setting written through `name`
   */
  constructor(
    readonly setting: string,
    private readonly text: (name: SettingNames) => string,
  ) {
    super(text((s) => s));
  }

  /** The message with settings spelt as a front end names them. */
  reword(name: SettingNames): string {
    return this.text(name);
  }
}
