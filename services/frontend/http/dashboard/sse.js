// Server-Sent Events of the API: one parsed update per event, and the state of
// the connection. The browser's EventSource reconnects by itself and sends
// Last-Event-ID, so the server resumes after the last update seen.

/**
 * Follows `url`. onUpdate(update, id) for each {event, run, done}; onState(state)
 * with "live", "reconnecting", "ended" or "error" (then a message). With
 * endOnDone (a run's watch, which the server ends after the run's last event)
 * it closes itself after an update with done. Returns close().
 */
export function watch(url, { onUpdate, onState = () => {}, endOnDone = false }) {
  let closed = false;
  const source = new EventSource(url);
  const close = () => {
    closed = true;
    source.close();
  };
  source.onopen = () => onState("live");
  source.onmessage = (message) => {
    let update;
    try {
      update = JSON.parse(message.data);
    } catch {
      return;
    }
    onUpdate(update, message.lastEventId);
    if (endOnDone && update.done) {
      close();
      onState("ended");
    }
  };
  // The server's own `event: error` (a failure after the stream started).
  source.addEventListener("error", (event) => {
    if (closed) return;
    if (event.data) {
      let detail = { message: event.data };
      try {
        detail = JSON.parse(event.data);
      } catch {
        /* kept as text */
      }
      onState("error", detail.message || String(event.data));
      return;
    }
    onState(source.readyState === EventSource.CLOSED ? "error" : "reconnecting");
  });
  return close;
}
