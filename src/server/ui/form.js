// @ts-check
/**
 * The settings form: its values as a `POST /v1/generations` body, and errors shown next to the field
 * they name. Blank optional fields are left out so the server fills its defaults (a blank seed is a
 * random one; a blank width/height follows the control image); the server checks every value.
 */

/**
 * @param {string} id
 * @returns {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement}
 */
function control(id) {
  const el = document.getElementById(id);
  if (!(el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement)) {
    throw new Error(`the page has no form control #${id}`);
  }
  return el;
}

/**
 * A number input's value, or undefined when blank. A value the browser cannot parse ('1e', '--2')
 * reads as blank too: `valueAsNumber` is NaN for both, and `badInput` tells them apart.
 * @param {string} id
 * @returns {number | undefined}
 */
function number(id) {
  const el = control(id);
  if (!(el instanceof HTMLInputElement)) throw new Error(`#${id} is not an input`);
  if (el.validity.badInput) throw new FieldError(el.name, 'not a number');
  return el.value.trim() === '' ? undefined : Number(el.value);
}

/** A field the page itself finds wrong before asking the server. */
export class FieldError extends Error {
  /** @param {string} field @param {string} message */
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/**
 * @param {string} imageDataUrl the control image as a data URL ('' = none yet)
 * @returns {Record<string, unknown>} the request body
 */
export function readRequest(imageDataUrl) {
  if (!imageDataUrl) throw new FieldError('image', 'drop a control image (PNG or JPEG) or choose a file');
  /** @type {Record<string, unknown>} */
  const body = { prompt: control('prompt').value, image: imageDataUrl };
  const negative = control('negative-prompt').value;
  if (negative.trim() !== '') body['negativePrompt'] = negative;
  const useCanny = control('use-canny');
  if (useCanny instanceof HTMLInputElement && useCanny.checked) body['canny'] = { low: number('canny-low'), high: number('canny-high') };
  const scheduler = control('scheduler').value;
  if (scheduler !== '') body['scheduler'] = scheduler;
  const seed = control('seed').value.trim();
  // a string: seeds go up to 2^64 − 1, past what a JSON number keeps exactly
  if (seed !== '') body['seed'] = seed;
  /** @type {[string, string][]} */
  const numbers = [
    ['steps', 'steps'],
    ['guidanceScale', 'guidance-scale'],
    ['controlScale', 'control-scale'],
    ['controlStart', 'control-start'],
    ['controlEnd', 'control-end'],
    ['width', 'width'],
    ['height', 'height'],
    ['numImages', 'num-images'],
  ];
  for (const [field, id] of numbers) {
    const v = number(id);
    if (v !== undefined) body[field] = v;
  }
  return body;
}

/**
 * Show `message` next to the field the API named: the exact name (`canny.low`), else its first part
 * (`canny`), else under the form.
 * @param {string | undefined} field
 * @param {string} message
 */
export function showError(field, message) {
  const target = errorSlot(field ?? '') ?? errorSlot(field?.split(/[.[]/)[0] ?? '') ?? errorSlot('');
  if (!target) throw new Error('the page has no error slot');
  target.textContent = message;
  const input = target.dataset['errorFor'] ? document.querySelector(`[name="${CSS.escape(target.dataset['errorFor'])}"]`) : null;
  if (input instanceof HTMLElement) {
    input.setAttribute('aria-invalid', 'true');
    const described = (input.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
    if (!described.includes(target.id)) input.setAttribute('aria-describedby', [...described, target.id].join(' '));
    // the file input is hidden behind the drop zone, which takes focus for it
    const focus = input instanceof HTMLInputElement && input.type === 'file' ? document.getElementById('drop-zone') : input;
    focus?.focus();
  }
}

/**
 * Remove the error messages (and invalid marks) of `fields`, or of every field.
 * @param {string[]} [fields]
 */
export function clearErrors(fields) {
  for (const slot of document.querySelectorAll('[data-error-for]')) {
    if (!(slot instanceof HTMLElement)) continue;
    const field = slot.dataset['errorFor'] ?? '';
    if (fields && !fields.includes(field)) continue;
    slot.textContent = '';
    const input = field ? document.querySelector(`[name="${CSS.escape(field)}"]`) : null;
    input?.removeAttribute('aria-invalid');
  }
}

/**
 * @param {string} field
 * @returns {HTMLElement | null}
 */
function errorSlot(field) {
  for (const el of document.querySelectorAll('[data-error-for]')) {
    if (el instanceof HTMLElement && el.dataset['errorFor'] === field) return el;
  }
  return null;
}
