// @ts-check
/**
 * One running job on the page: the progress bar, the status line and the live preview follow the
 * job's event stream until `done`. Should the stream break (a proxy's timeout, a restart), the status
 * is polled instead, so the page still learns how the job ended.
 */
import { ApiError } from './api.js';
import { element } from './dom.js';

const POLL_MS = 1000;

/**
 * @typedef {import('./api.js').JobView} JobView
 */

/**
 * @param {{ api: import('./api.js').Api }} options
 */
export function setUpRunView({ api }) {
  const progress = element('progress', HTMLProgressElement);
  const status = element('status', HTMLElement);
  const preview = element('preview', HTMLImageElement);

  /** @param {string} text */
  function say(text) {
    status.textContent = text;
  }

  /** @param {JobView} job */
  function show(job) {
    if (job.progress.total > 0) {
      progress.max = job.progress.total;
      progress.value = job.progress.step;
    }
    if (job.status === 'queued') say(job.position ? `Queued: ${job.position} ahead` : 'Queued: next');
    else if (job.status === 'running') say(`Running: step ${job.progress.step} of ${job.progress.total}`);
    else if (job.status === 'succeeded') say(`Done in ${job.result ? job.result.seconds.toFixed(1) : '?'} s`);
    else if (job.status === 'canceled') say('Canceled');
    else say(`Failed: ${job.error ?? 'unknown error'}`);
  }

  /**
   * Follow job `id` to its end.
   * @param {string} id
   * @returns {Promise<JobView>} the final status
   */
  async function follow(id) {
    progress.value = 0;
    progress.max = 1;
    preview.hidden = true;
    try {
      for await (const event of api.events(id)) {
        if (event.type === 'progress') {
          progress.max = event.total;
          progress.value = event.step;
          say(`Running: step ${event.step} of ${event.total}`);
          if (event.preview) {
            preview.src = event.preview;
            preview.hidden = false;
          }
        } else {
          show(event.status);
          if (event.type === 'done') return event.status;
        }
      }
    } catch (e) {
      // a broken stream is not the job's end: fall through to polling; an API error is the job's answer
      if (e instanceof ApiError && e.status !== undefined) throw e;
    }
    // the stream ended (or broke) before `done`
    for (;;) {
      const job = /** @type {JobView} */ (await api.json('GET', `v1/generations/${encodeURIComponent(id)}`));
      show(job);
      if (job.status === 'succeeded' || job.status === 'failed' || job.status === 'canceled') return job;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  return { follow, say };
}
