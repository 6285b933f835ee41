// @ts-check
/**
 * The control image: a drop zone (drag and drop, or a click / Enter that opens the file picker), its
 * thumbnail, and the Canny preview beside it — the edges the server's `POST /v1/canny` computes with
 * the thresholds the generation will use, so what is shown is what the model gets.
 */
import { ApiError } from './api.js';
import { element } from './dom.js';

/** PNG and JPEG, as the API takes them; checked on the bytes, since a file's type is only its name. */
const MAGIC = [
  { type: 'image/png', bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { type: 'image/jpeg', bytes: [0xff, 0xd8, 0xff] },
];

/** `POST /v1/canny`'s fields → the form's (the generation request's) names. */
/** @type {Readonly<Record<string, string>>} */
const PREVIEW_FIELDS = { image: 'image', low: 'canny.low', high: 'canny.high' };

/** How long the thresholds must rest before the preview is fetched again (typing "150" is one request). */
const PREVIEW_DELAY_MS = 250;

/**
 * @param {{
 *   api: import('./api.js').Api;
 *   onError: (field: string, message: string) => void;
 *   onApiError: (e: unknown, field: string) => void;
 *   onClearErrors: (fields: string[]) => void;
 * }} options onApiError: a failed call, shown at the field the server names, else at `field`
 * @returns {{ dataUrl: () => string }} the current control image as a data URL ('' = none)
 */
export function setUpControlImage({ api, onError, onApiError, onClearErrors }) {
  const zone = element('drop-zone', HTMLElement);
  const picker = element('control-file', HTMLInputElement);
  const thumb = element('control-thumb', HTMLImageElement);
  const hint = element('drop-hint', HTMLElement);
  const useCanny = element('use-canny', HTMLInputElement);
  const low = element('canny-low', HTMLInputElement);
  const high = element('canny-high', HTMLInputElement);
  const cannyThumb = element('canny-thumb', HTMLImageElement);
  const caption = element('canny-caption', HTMLElement);

  let dataUrl = '';
  /** @type {AbortController | undefined} */
  let previewRequest;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let previewTimer;
  let cannyUrl = '';

  /** @param {File} file */
  async function take(file) {
    onClearErrors(['image']);
    const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
    const kind = MAGIC.find((m) => m.bytes.every((b, i) => head[i] === b));
    if (!kind) {
      onError('image', `${file.name} is not a PNG or JPEG file`);
      return;
    }
    const url = await readDataUrl(file, kind.type);
    // decode before showing: a truncated file fails here, not at generation time
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
    } catch {
      onError('image', `${file.name} cannot be decoded as ${kind.type === 'image/png' ? 'PNG' : 'JPEG'}`);
      return;
    }
    dataUrl = url;
    thumb.src = url;
    thumb.hidden = false;
    hint.textContent = `${file.name} · ${probe.naturalWidth}×${probe.naturalHeight} (drop or choose another)`;
    zone.classList.add('has-image');
    void refreshPreview();
  }

  async function refreshPreview() {
    clearTimeout(previewTimer);
    previewRequest?.abort();
    previewRequest = undefined;
    if (!useCanny.checked) {
      cannyThumb.hidden = true;
      caption.textContent = 'Canny off: the image is the control image';
      return;
    }
    if (!dataUrl) {
      cannyThumb.hidden = true;
      caption.textContent = 'Canny on: the edges show here';
      return;
    }
    const request = new AbortController();
    previewRequest = request;
    onClearErrors(['canny', 'canny.low', 'canny.high']);
    caption.textContent = 'Canny edges…';
    try {
      const blob = await api.blob('POST', 'v1/canny', {
        json: { image: dataUrl, low: Number(low.value), high: Number(high.value) },
        signal: request.signal,
      });
      if (cannyUrl) URL.revokeObjectURL(cannyUrl);
      cannyUrl = URL.createObjectURL(blob);
      cannyThumb.src = cannyUrl;
      await cannyThumb.decode();
      cannyThumb.hidden = false;
      caption.textContent = `Canny edges (${low.value}, ${high.value})`;
    } catch (e) {
      if (request.signal.aborted) return; // a newer preview took over
      cannyThumb.hidden = true;
      caption.textContent = 'No Canny preview';
      // the preview route names its own body's fields; the page shows them at the generation's
      if (e instanceof ApiError && e.field !== undefined) e.field = PREVIEW_FIELDS[e.field] ?? 'canny';
      onApiError(e, 'canny');
    }
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(() => void refreshPreview(), PREVIEW_DELAY_MS);
  }

  zone.addEventListener('click', () => picker.click());
  zone.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      picker.click();
    }
  });
  picker.addEventListener('change', () => {
    const file = picker.files?.[0];
    if (file) void take(file);
    picker.value = ''; // choosing the same file again still fires `change`
  });
  for (const type of ['dragenter', 'dragover']) {
    zone.addEventListener(type, (e) => {
      e.preventDefault(); // lets the drop happen here instead of the browser opening the file
      zone.classList.add('dragging');
    });
  }
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('dragging');
    const file = e instanceof DragEvent ? e.dataTransfer?.files[0] : undefined;
    if (file) void take(file);
    else onError('image', 'drop an image file (PNG or JPEG)');
  });
  useCanny.addEventListener('change', () => void refreshPreview());
  low.addEventListener('input', schedulePreview);
  high.addEventListener('input', schedulePreview);
  void refreshPreview();

  return { dataUrl: () => dataUrl };
}

/**
 * @param {File} file
 * @param {string} type the type the bytes say, which the data URL carries
 * @returns {Promise<string>}
 */
async function readDataUrl(file, type) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  // in slices: String.fromCharCode takes its arguments on the stack
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:${type};base64,${btoa(binary)}`;
}
