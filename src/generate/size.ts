/** The size a generation runs at, chosen from the settings, the control image and the model's size rules. */
import { fitToAspect, roundSize, type ImageSize, type SizeRules } from '../pipelines/image-size.js';
import { SettingError } from './errors.js';

export interface SizeSettings {
  width?: number | undefined;
  height?: number | undefined;
  maxPixels: number;
}

/**
 * Width and height as given, or derived from the control image's aspect ratio (one side given: the
 * other follows it; none: the model's resolution fitted to it); rounded to the model's multiple (with
 * a `note` when that changes a given size) and held to `maxPixels` (a SettingError naming it).
 */
export function chooseSize(o: SizeSettings, control: ImageSize, rules: SizeRules, note: (m: string) => void): ImageSize {
  let size: ImageSize;
  if (o.width !== undefined && o.height !== undefined) size = { width: o.width, height: o.height };
  else if (o.width !== undefined) size = { width: o.width, height: (o.width * control.height) / control.width };
  else if (o.height !== undefined) size = { width: (o.height * control.width) / control.height, height: o.height };
  else size = fitToAspect(control, rules);
  const rounded = roundSize(size, rules);
  const changed = (o.width !== undefined && rounded.width !== o.width) || (o.height !== undefined && rounded.height !== o.height);
  if (changed) {
    note(`${o.width ?? '…'}×${o.height ?? '…'} px is not a multiple of ${rules.multiple} px for this model; generating ${rounded.width}×${rounded.height}`);
  }
  if (rounded.width * rounded.height > o.maxPixels) {
    const { width, height } = rounded;
    throw new SettingError(
      'maxPixels',
      (n) => `${width}×${height} px is over ${n('maxPixels')} ${o.maxPixels}; ask for a smaller ${n('width')}/${n('height')} or raise ${n('maxPixels')}`,
    );
  }
  return rounded;
}
