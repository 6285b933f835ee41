// @ts-check
/**
 * The results: one card per image, newest job first, each with its A1111 `parameters` text and a
 * download link. The bytes are fetched through the API (with the key), so the image shown and the
 * file downloaded are exactly the PNG the server stored, `parameters` chunk included.
 */
import { element } from './dom.js';

/**
 * @param {{ api: import('./api.js').Api }} options
 */
export function setUpGallery({ api }) {
  const list = element('gallery', HTMLOListElement);
  const empty = element('gallery-empty', HTMLElement);

  /**
   * Add a succeeded job's images at the top.
   * @param {import('./api.js').JobView} job
   */
  async function add(job) {
    const urls = imageUrls(job);
    const blobs = await Promise.all(urls.map((url) => api.blob('GET', url)));
    const cards = document.createDocumentFragment();
    blobs.forEach((blob, n) => {
      const objectUrl = URL.createObjectURL(blob);
      const parameters = job.result?.parameters[n] ?? '';
      const flagged = job.result?.nsfwContentDetected?.[n] === true;
      cards.append(card({ job, n, objectUrl, parameters, flagged }));
    });
    list.prepend(cards);
    empty.hidden = true;
  }

  return { add };
}

/**
 * The image URLs of a job, relative to the page: the API answers absolute paths ('/v1/…'); made
 * relative, they also work under a proxy's prefix.
 * @param {import('./api.js').JobView} job
 * @returns {string[]}
 */
function imageUrls(job) {
  return job.images.map((u) => (u.startsWith('/') ? u.slice(1) : u));
}

/**
 * @param {{ job: import('./api.js').JobView; n: number; objectUrl: string; parameters: string; flagged: boolean }} o
 * @returns {HTMLLIElement}
 */
function card({ job, n, objectUrl, parameters, flagged }) {
  const item = document.createElement('li');
  item.className = 'result';
  item.dataset['jobId'] = job.id;
  item.dataset['image'] = String(n);
  const figure = document.createElement('figure');
  const img = document.createElement('img');
  img.src = objectUrl;
  img.alt = parameters ? `Generated: ${parameters.split('\n')[0]}` : `Generated image ${n + 1} of job ${job.id}`;
  if (job.result) {
    img.width = job.result.width;
    img.height = job.result.height;
  }
  const caption = document.createElement('figcaption');
  const text = document.createElement('pre');
  text.className = 'parameters';
  text.textContent = parameters;
  const link = document.createElement('a');
  link.href = objectUrl;
  link.download = `cnxs-${job.id}-${n}.png`;
  link.textContent = 'Download PNG';
  caption.append(text, link);
  if (flagged) {
    const note = document.createElement('p');
    note.className = 'hint';
    note.textContent = 'The safety checker flagged this image (it is black).';
    caption.append(note);
  }
  figure.append(img, caption);
  item.append(figure);
  return item;
}
