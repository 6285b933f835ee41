// @ts-check
/**
 * Server-Sent Events from a streamed `fetch` body. The page cannot use EventSource: it sends no
 * Authorization header, and the API wants one on every call when it has a key. This follows the
 * event-stream format (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines end
 * in LF, CR or CRLF; `event:` names the event, `data:` lines join with LF, `:` lines are comments,
 * and a blank line dispatches. Chunks may split anywhere, even inside a CRLF or a UTF-8 sequence.
 */

/** @typedef {{ event: string; data: string }} SseMessage */

/**
 * The messages of a response body, in order; the generator ends with the stream.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<SseMessage>}
 */
export async function* readSse(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder(); // UTF-8, holding a sequence split between chunks for the next one
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    // a consumer that stops early (break, an error) releases the connection
    await reader.cancel().catch(() => {});
  }
}

/** Incremental parser: text in, whole messages out. */
export class SseParser {
  #buffer = '';
  #event = '';
  /** @type {string[]} */
  #data = [];
  /** The previous chunk ended in CR: an LF starting this one belongs to that line end. */
  #skipLf = false;

  /**
   * @param {string} text
   * @returns {SseMessage[]}
   */
  push(text) {
    if (this.#skipLf && text.startsWith('\n')) text = text.slice(1);
    this.#skipLf = false;
    this.#buffer += text;
    /** @type {SseMessage[]} */
    const out = [];
    for (;;) {
      const end = this.#buffer.search(/[\r\n]/);
      if (end < 0) break;
      const line = this.#buffer.slice(0, end);
      let next = end + 1;
      if (this.#buffer[end] === '\r') {
        if (end + 1 === this.#buffer.length) this.#skipLf = true;
        else if (this.#buffer[end + 1] === '\n') next = end + 2;
      }
      this.#buffer = this.#buffer.slice(next);
      const message = this.#line(line);
      if (message) out.push(message);
    }
    return out;
  }

  /**
   * @param {string} line
   * @returns {SseMessage | undefined}
   */
  #line(line) {
    if (line === '') {
      if (this.#data.length === 0) {
        this.#event = '';
        return undefined;
      }
      const message = { event: this.#event || 'message', data: this.#data.join('\n') };
      this.#event = '';
      this.#data = [];
      return message;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    // `id` and `retry` steer EventSource reconnection; a generation's stream is followed once
    return undefined;
  }
}
