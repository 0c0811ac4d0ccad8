// Server-Sent Events of the API, read with fetch() (the browser's EventSource
// cannot send the Authorization header, and the key never goes in an address):
// one parsed update per event, and the state of the connection. A dropped
// connection is opened again by itself, with backoff, sending Last-Event-ID
// (the last id seen), so the server resumes after the last update seen.

import { ApiError, apiKey, authorization, keyAfterRefusal, keyToSend } from "./api.js";

const FIRST_DELAY = 500; // ms before the first reconnection (an event's `retry:` changes it)
const MAX_DELAY = 15000;
// Errors of the API worth connecting again for; any other ends the watch.
const PASSING = new Set(["UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL", "UNKNOWN"]);

/**
 * The event stream format (the HTML standard's "Server-sent events"):
 * feed(text) with the body's text as it comes, in pieces of any size; each
 * event (ended by a blank line, with data) goes to onEvent({type, data, id}),
 * where id is the last event id so far. Lines end in CRLF, LF or CR; a line
 * starting with ":" is a comment; `retry:` (digits) goes to onRetry(ms).
 */
export class SseParser {
  constructor(onEvent, { lastId = "", onRetry = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.lastId = lastId; // the id of the last event dispatched (kept by the caller across connections)
    this.idBuffer = lastId;
    this.buffer = "";
    this.first = true; // a byte order mark is dropped at the start
    this.afterCR = false; // the last piece ended with CR: a LF opening the next one ends nothing
    this.type = "";
    this.data = [];
  }

  feed(text) {
    if (!text) return;
    if (this.first) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.afterCR && text.startsWith("\n")) text = text.slice(1);
    this.afterCR = text.endsWith("\r");
    const lines = (this.buffer + text).split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.idBuffer = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(Number(value));
  }

  dispatch() {
    this.lastId = this.idBuffer;
    const data = this.data;
    const type = this.type || "message";
    this.data = [];
    this.type = "";
    if (data.length) this.onEvent({ type, data: data.join("\n"), id: this.lastId });
  }
}

/**
 * Follows `url`. onUpdate(update, id) for each {event, run, done}; onState(state)
 * with "live", "reconnecting", "ended" or "error" (then a message). With
 * endOnDone (a run's watch, which the server ends after the run's last event)
 * it closes itself after an update with done. A 401 asks for a key (api.js)
 * and connects with it. Returns close().
 */
export function watch(url, { onUpdate, onState = () => {}, endOnDone = false }) {
  let closed = false;
  let controller = null;
  let timer = null;
  let lastId = "";
  let base = FIRST_DELAY;
  let failures = 0;

  const close = () => {
    closed = true;
    clearTimeout(timer);
    if (controller) controller.abort();
  };
  const stop = (state, detail) => {
    close();
    onState(state, detail);
  };
  const again = (detail) => {
    if (closed) return;
    onState("reconnecting", detail);
    const delay = Math.min(MAX_DELAY, base * 2 ** failures) * (0.75 + Math.random() / 2);
    failures += 1;
    timer = setTimeout(connect, delay);
  };

  // One server event: an update, or the server's own `event: error` {code, message}.
  // Answers false when the watch is over.
  const handle = ({ type, data, id }) => {
    if (type === "error") {
      let detail = { message: data };
      try {
        detail = JSON.parse(data);
      } catch {
        /* kept as text */
      }
      const message = (detail && detail.message) || data;
      if (detail && PASSING.has(detail.code)) again(message);
      else stop("error", message);
      return false;
    }
    if (type !== "message") return true;
    let update;
    try {
      update = JSON.parse(data);
    } catch {
      return true;
    }
    onUpdate(update, id);
    if (endOnDone && update.done) {
      stop("ended");
      return false;
    }
    return true;
  };

  async function connect(key) {
    if (closed) return;
    let sent = key;
    try {
      if (!sent) sent = await keyToSend();
    } catch (error) {
      if (!closed) stop("error", error.message);
      return;
    }
    if (closed) return;
    controller = new AbortController();
    const headers = { Accept: "text/event-stream", ...authorization(sent) };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    } catch (error) {
      if (!closed) again(`the server cannot be reached (${error.message})`);
      return;
    }
    if (closed) return;
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      const message = (body && body.message) || response.statusText || `HTTP ${response.status}`;
      if (closed) return;
      if (response.status === 401) {
        let next;
        try {
          next = await keyAfterRefusal(sent, message);
        } catch (error) {
          if (!closed) stop("error", error instanceof ApiError ? error.message : String(error));
          return;
        }
        connect(next);
        return;
      }
      if (response.status === 429 || response.status >= 500) again(message);
      else stop("error", message);
      return;
    }
    onState("live");
    const opened = Date.now();
    let going = true;
    const parser = new SseParser(
      (event) => {
        if (event.type === "message") failures = 0;
        if (going) going = handle(event);
      },
      { lastId, onRetry: (ms) => { base = ms; } },
    );
    let dropped = null;
    try {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      while (going) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
        lastId = parser.lastId;
      }
      if (!going) reader.cancel().catch(() => {});
    } catch (error) {
      dropped = error;
    }
    lastId = parser.lastId;
    if (!going || closed) return;
    if (Date.now() - opened > 10000) failures = 0;
    // Dropped, or ended by the server (a run's watch after the run's end is
    // handled above): connect again, after the last event seen.
    again(dropped ? `the connection dropped (${dropped.message})` : "the server ended the stream");
  }

  connect(apiKey());
  return close;
}
