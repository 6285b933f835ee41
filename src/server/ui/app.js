// @ts-check
/**
 * The page's entry point: wires the form, the control image, the run view and the gallery to the API.
 * One job at a time from this page (the server queues jobs from everyone); Cancel stops it.
 */
import { Api, ApiError } from './api.js';
import { setUpControlImage } from './control-image.js';
import { element } from './dom.js';
import { FieldError, clearErrors, readRequest, showError } from './form.js';
import { setUpGallery } from './gallery.js';
import { setUpRunView } from './run.js';

const KEY_STORAGE = 'cnxs.apiKey';

function main() {
  const form = element('generate-form', HTMLFormElement);
  const keyInput = element('api-key', HTMLInputElement);
  const seedInput = element('seed', HTMLInputElement);
  const generateButton = element('generate', HTMLButtonElement);
  const cancelButton = element('cancel', HTMLButtonElement);

  element('key-form', HTMLFormElement).addEventListener('submit', (e) => e.preventDefault());
  keyInput.value = storedKey();
  keyInput.addEventListener('input', () => {
    storeKey(keyInput.value.trim());
    clearErrors(['apiKey']);
  });

  const api = new Api({ key: () => keyInput.value.trim() });
  const control = setUpControlImage({ api, onError: showError, onApiError: apiError, onClearErrors: clearErrors });
  const run = setUpRunView({ api });
  const gallery = setUpGallery({ api });

  element('dice', HTMLButtonElement).addEventListener('click', () => {
    seedInput.value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
    clearErrors(['seed']);
  });
  // typing into a field clears what the server said about it
  form.addEventListener('input', (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLSelectElement) {
      clearErrors([e.target.name]);
    }
  });

  /** @type {{ id: string } | undefined} */
  let current;

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (current) return;
    void generate();
  });

  cancelButton.addEventListener('click', () => {
    if (!current) return;
    cancelButton.disabled = true;
    run.say('Canceling…');
    // the event stream reports the job's end (`done`, canceled), which ends `generate`
    api.json('DELETE', `v1/generations/${encodeURIComponent(current.id)}`).catch((e) => apiError(e));
  });

  async function generate() {
    clearErrors();
    let body;
    try {
      body = readRequest(control.dataUrl());
    } catch (e) {
      if (e instanceof FieldError) return showError(e.field, e.message);
      throw e;
    }
    generateButton.disabled = true;
    try {
      const submitted = /** @type {{ id: string; position: number }} */ (await api.json('POST', 'v1/generations', body));
      current = { id: submitted.id };
      cancelButton.disabled = false;
      run.say(submitted.position > 0 ? `Queued: ${submitted.position} ahead` : 'Queued: next');
      const job = await run.follow(submitted.id);
      if (job.status === 'succeeded') await gallery.add(job);
      else if (job.status === 'failed') showError(undefined, job.error ?? 'the generation failed');
    } catch (e) {
      apiError(e);
    } finally {
      current = undefined;
      generateButton.disabled = false;
      cancelButton.disabled = true;
    }
  }

  /**
   * Show a failed call next to the field it names (`fallback` when it names none).
   * @param {unknown} e
   * @param {string} [fallback]
   */
  function apiError(e, fallback) {
    if (!(e instanceof ApiError)) throw e;
    // 401/403 name no request field: the key is what is wrong
    const field = e.status === 401 || e.status === 403 ? 'apiKey' : e.field ?? fallback;
    const retry = e.retryAfter ? ` (try again in ${e.retryAfter} s)` : '';
    showError(field, e.message + retry);
    if (e.status === undefined || e.status >= 500) run.say('Error');
  }
}

/** The key from an earlier visit ('' when storage is off, as in some private windows). */
function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

/** @param {string} key */
function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage off: the key lasts as long as the page
  }
}

main();
