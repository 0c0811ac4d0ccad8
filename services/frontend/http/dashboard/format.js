// Small shared helpers: building DOM nodes, durations, times and JSON.

/**
 * An element: h("a", {href: "/", testid: "nav-runs", class: "x"}, "text", child).
 * Props: class, testid (data-testid), data ({key: value} as data-key), on
 * ({event: handler}), text; anything else is an attribute (false/null left out).
 * Children are nodes or text (never HTML).
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "testid") node.dataset.testid = value;
    else if (name === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else if (name === "on") for (const [k, v] of Object.entries(value)) node.addEventListener(k, v);
    else if (name === "text") node.textContent = value;
    else if (name === "value") node.value = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const TERMINAL = new Set(["completed", "failed", "canceled", "crashed", "timed_out", "expired"]);
export const STATUSES = [
  "queued", "delayed", "executing", "waiting", "retrying",
  "completed", "failed", "canceled", "crashed", "timed_out", "expired",
];

const ms = (iso) => (iso ? Date.parse(iso) : NaN);

/** Seconds as a short duration: 244ms, 1.5s, 2m 03s, 1h 02m, 3d 4h. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 0) seconds = 0;
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
}

/** Seconds between two ISO times (the second defaults to now), or null. */
export function between(from, to) {
  const a = ms(from);
  if (Number.isNaN(a)) return null;
  const b = to ? ms(to) : Date.now();
  return Number.isNaN(b) ? null : (b - a) / 1000;
}

/** A run's duration: from its start (or creation) to its end (or now while unfinished). */
export function runDuration(run) {
  if (!run.started_at) return null;
  if (!run.finished_at && TERMINAL.has(run.status)) return between(run.started_at, run.updated_at);
  return between(run.started_at, run.finished_at);
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** An ISO time in local time: 2025-01-02 03:04:05. */
export function time(iso) {
  const d = new Date(ms(iso));
  if (Number.isNaN(d.getTime())) return "—";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local clock time with milliseconds: 03:04:05.678. */
export function clock(iso) {
  const d = new Date(ms(iso));
  if (Number.isNaN(d.getTime())) return "—";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** How long ago (or in how long) an ISO time is: "5s ago", "in 3m". */
export function ago(iso) {
  const s = between(iso);
  if (s === null) return "—";
  return s >= 0 ? `${duration(s)} ago` : `in ${duration(-s)}`;
}

/** A <time> element: local time shown, the ISO time as its datetime and title. */
export function timeEl(iso, props = {}, show = time) {
  if (!iso) return h("span", { class: "muted", ...props }, "—");
  return h("time", { datetime: iso, title: iso, ...props }, show(iso));
}

const UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/**
 * A filter's time: "2h" (a duration ago: s, m, h, d, w, combinable as "1h30m"),
 * or a date/time (RFC 3339, or what Date reads, e.g. 2025-01-02 03:04). Answers
 * an RFC 3339 string, "" for empty text, or null when unreadable.
 */
export function parseWhen(text, now = Date.now()) {
  const t = (text || "").trim();
  if (!t) return "";
  const rel = /^(?:(\d+(?:\.\d+)?)\s*([smhdw])\s*)+(?:\s*ago)?$/i;
  if (rel.test(t)) {
    let seconds = 0;
    for (const [, n, unit] of t.matchAll(/(\d+(?:\.\d+)?)\s*([smhdw])/gi)) seconds += Number(n) * UNITS[unit.toLowerCase()];
    return new Date(now - seconds * 1000).toISOString();
  }
  const when = Date.parse(/^\d{4}-\d\d-\d\d \d/.test(t) ? t.replace(" ", "T") : t);
  return Number.isNaN(when) ? null : new Date(when).toISOString();
}

/** Pretty JSON of a value ("null" for null). */
export function pretty(value) {
  const text = JSON.stringify(value, null, 2);
  return text === undefined ? String(value) : text;
}

/** A value as a single line of text (strings as they are). */
export function inline(value) {
  if (typeof value === "string") return value;
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text;
}

/** A run id cut for display (the first block of the UUID). */
export const shortId = (id) => (id ? String(id).split("-")[0] : "");

/** A status badge: the status in lower case, coloured by its class. */
export function statusBadge(status, testid = "run-status") {
  return h("span", { class: `status status-${status}`, testid }, status);
}

/** Calls fn at most once per `wait` ms, the last call winning. */
export function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

/** A message box for an API error (role=alert). */
export function errorBox(error, prefix = "") {
  const code = error && error.code ? `${error.code}: ` : "";
  return h("p", { class: "alert", role: "alert" }, `${prefix}${code}${(error && error.message) || error}`);
}

const LIMIT = 2000;

/**
 * A JSON value as collapsible pretty JSON: a <details> (open unless `open` is
 * false) holding a <pre>. A text over `limit` characters is cut, with a button
 * (testid `fullTestid`) that shows it whole.
 */
export function jsonView(value, { testid, fullTestid, label = "JSON", open = true, limit = LIMIT } = {}) {
  const text = pretty(value);
  const cut = text.length > limit;
  const lines = text.split("\n").length;
  const pre = h("pre", { class: "json", tabindex: cut || lines > 20 || text.length > 600 ? 0 : null }, cut ? `${text.slice(0, limit)}\n…` : text);
  const size = text.length >= 10240 ? `${Math.round(text.length / 1024)} KB` : `${text.length} characters`;
  const details = h("details", { class: "json", testid, open }, h("summary", {}, cut ? `${label} (${size}, cut)` : label), pre);
  if (cut) {
    const button = h("button", { type: "button", class: "small secondary", testid: fullTestid }, `Show all ${size}`);
    button.addEventListener("click", () => {
      pre.textContent = text;
      details.querySelector("summary").textContent = `${label} (${size})`;
      button.remove();
      pre.focus();
    });
    details.append(button);
  }
  return details;
}

/** An error (type, message, stack trace) as a block. */
export function errorView(error, props = {}) {
  if (!error) return null;
  return h("div", { class: "error-box", ...props },
    h("div", {}, h("span", { class: "error-type", testid: "error-type" }, error.type || "Error"),
      error.non_retryable ? h("span", { class: "muted" }, " (not retryable)") : null),
    h("p", { class: "error-message", testid: "error-message" }, error.message || ""),
    error.stack_trace
      ? h("details", { open: true }, h("summary", {}, "Stack trace"), h("pre", { class: "stack", testid: "error-stack", tabindex: 0 }, error.stack_trace))
      : h("p", { class: "muted", testid: "error-stack" }, "No stack trace."));
}
