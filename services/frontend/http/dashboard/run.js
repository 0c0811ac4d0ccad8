// One run (/runs/RUN_ID): at most three requests at load, GET /v1/runs/{id},
// GET /v1/runs/{id}/logs and the event stream GET /v1/runs/{id}/watch (from
// the run's first event: it brings the stream chunks, which nothing else
// stores for reading, and log lines past the first page). Log and stream
// events are appended; any other event reads the run again (debounced).

import { api, seg } from "./api.js";
import { confirmDialog } from "./dialog.js";
import {
  TERMINAL, clock, debounce, duration, errorBox, errorView, fill, h, inline, jsonView, runDuration, shortId,
  statusBadge, timeEl,
} from "./format.js";
import { watch } from "./sse.js";
import { divergence, timeline } from "./timeline.js";

const LOG_PAGE = 1000;

const runLink = (id, testid) => h("a", { href: `/runs/${encodeURIComponent(id)}`, testid, class: "mono", title: id }, shortId(id));

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

function header(run) {
  const last = run.attempts.length ? run.attempts[run.attempts.length - 1] : null;
  const meta = Object.keys(run.metadata || {}).length ? inline(run.metadata) : "—";
  return h("section", { testid: "run-header", "aria-labelledby": "run-title" },
    h("div", { class: "run-head" },
      h("h1", { id: "run-title" }, "Run ", h("span", { class: "mono" }, run.id)),
      statusBadge(run.status)),
    h("dl", { class: "facts" },
      fact("Task", h("a", { href: `/?task=${encodeURIComponent(run.task)}`, testid: "run-task" }, run.task)),
      fact("Queue", h("a", { href: `/queues/${encodeURIComponent(run.queue)}`, testid: "run-queue" }, run.queue)),
      fact("Worker version", h("span", { testid: "run-worker-version" }, last && last.worker_version ? last.worker_version : "—")),
      fact("Created", timeEl(run.created_at, { testid: "run-created" })),
      fact("Started", timeEl(run.started_at)),
      fact("Finished", timeEl(run.finished_at)),
      fact("Duration", h("span", { testid: "run-duration", class: "num" }, duration(runDuration(run)))),
      fact("Attempts", String(run.attempt_count)),
      run.next_attempt_at && !TERMINAL.has(run.status) ? fact("Next attempt", timeEl(run.next_attempt_at)) : null,
      fact("Tags", h("span", { testid: "run-tags", class: "tags" }, run.tags.length ? run.tags.map((t) => h("span", { class: "tag" }, t)) : "—")),
      fact("Metadata", h("span", { testid: "run-metadata", class: "mono" }, meta)),
      fact("Trace id", h("span", { testid: "run-trace-id", class: "mono" }, run.trace_id || "—")),
      run.parent_run_id ? fact("Parent", runLink(run.parent_run_id, "run-parent")) : null,
      fact("Children", h("span", { testid: "run-children", class: "tags" }, run.child_run_ids.length ? run.child_run_ids.map((id) => runLink(id, "run-child")) : "—")),
      run.replay_of ? fact("Replay of", runLink(run.replay_of, "run-replay-of")) : null,
      run.schedule_id ? fact("Schedule", h("a", { href: "/schedules" }, run.schedule_id)) : null,
      run.idempotency_key ? fact("Idempotency key", h("span", { class: "mono" }, run.idempotency_key)) : null,
      run.concurrency_key ? fact("Concurrency key", h("span", { class: "mono" }, run.concurrency_key)) : null,
      run.priority ? fact("Priority", String(run.priority)) : null));
}

function nondeterminism(found) {
  if (!found) return null;
  return h("section", { class: "nondeterminism", testid: "nondeterminism", role: "alert", "aria-labelledby": "nd-title" },
    h("h2", { id: "nd-title" }, "Non-determinism: the replay diverged"),
    h("p", {}, "At step position ", h("strong", { testid: "nondeterminism-position" }, String(found.position)),
      " the journal recorded ", h("code", { testid: "nondeterminism-recorded" }, found.recorded),
      " but the code now calls ", h("code", { testid: "nondeterminism-new" }, found.now), "."),
    h("p", { class: "muted" }, "The task's code changed under a run that had already recorded steps: deploy the old code for this run, or replay it as a new run."));
}

function errors(run) {
  const failed = run.attempts.filter((a) => a.error);
  return h("section", { "aria-labelledby": "errors-title" },
    h("h2", { id: "errors-title" }, "Errors"),
    h("div", { testid: "run-error" }, run.error ? errorView(run.error) : h("p", { class: "muted" }, "The run has no error.")),
    failed.map((a) => h("div", { testid: "attempt-error", data: { attempt: a.number } },
      h("h3", {}, `Attempt ${a.number}`, a.retry_delay !== null ? h("span", { class: "muted" }, ` (retried after ${duration(a.retry_delay)})`) : null),
      errorView(a.error))));
}

function events(run) {
  return h("section", { "aria-labelledby": "events-title" },
    h("h2", { id: "events-title" }, "Event log"),
    h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Event log table" }, h("table", { testid: "run-events" },
      h("thead", {}, h("tr", {}, ["Id", "Time", "Event", "Attempt", "Details"].map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, run.events.map((e) => h("tr", { testid: "run-event", data: { type: e.type } },
        h("td", { class: "num" }, String(e.id)), h("td", { class: "num" }, timeEl(e.at, {}, clock)), h("td", {}, e.type),
        h("td", { class: "num" }, e.attempt ? String(e.attempt) : ""),
        h("td", { class: "mono" }, e.details && Object.keys(e.details).length ? inline(e.details) : "")))))));
}

function logRow(line) {
  const step = line.step_position === null || line.step_position === undefined ? "" : `#${line.step_position} ${line.step_name || ""}`;
  const fields = line.fields && Object.keys(line.fields).length ? ` ${inline(line.fields)}` : "";
  return h("tr", { testid: "log-line", data: { id: line.id, level: line.level } },
    h("td", {}, timeEl(line.at, {}, clock)),
    h("td", { class: `level-${line.level}` }, line.level),
    h("td", {}, String(line.attempt)),
    h("td", {}, step),
    h("td", {}, line.message, fields ? h("span", { class: "muted" }, fields) : null));
}

/** The log line of a "log" event's details. */
const lineOf = (event) => ({ id: event.id, attempt: event.attempt, at: event.at, ...event.details });

export async function render(main, { params: [runId], navigate, isCurrent }) {
  document.title = `Run ${shortId(runId)} · Cairn`;
  const path = `/v1/runs/${seg(runId)}`;
  let run;
  let logs;
  try {
    [run, logs] = await Promise.all([api(path).then((r) => r.run), api(`${path}/logs?page_size=${LOG_PAGE}`).catch(() => ({ lines: [] }))]);
  } catch (error) {
    fill(main, h("p", {}, h("a", { href: "/" }, "← Runs")), h("h1", {}, "Run ", h("span", { class: "mono" }, runId)), errorBox(error));
    return () => {};
  }
  if (!isCurrent()) return () => {};

  const open = new Map(); // step results opened or closed by the reader, kept across re-reads
  const headerSlot = h("div");
  const ndSlot = h("div");
  const timelineSlot = h("div");
  const errorsSlot = h("div");
  const ioSlot = h("div", { class: "cols" });
  const eventsSlot = h("div");
  const message = h("div", { testid: "action-message", class: "message", role: "status", "aria-live": "polite" });
  const live = h("span", { class: "live", testid: "run-live", data: { state: "connecting" } }, "connecting…");

  const show = (text, bad = false) => fill(message, h("p", { class: bad ? "alert" : "notice" }, text));
  const refused = (error) => show(`Refused: ${error.message}${error.code ? ` (${error.code})` : ""}`, true);

  // Actions.
  const cancel = h("button", { type: "button", class: "danger", testid: "action-cancel" }, "Cancel run");
  const replay = h("button", { type: "button", class: "secondary", testid: "action-replay" }, "Replay");
  cancel.addEventListener("click", async () => {
    if (!(await confirmDialog(`Cancel run ${shortId(run.id)}?`, "The run and its unfinished children are canceled.", "Cancel run", "Keep running"))) return;
    try {
      await api(`${path}/cancel`, { method: "POST", body: {} });
      show("Cancel requested.");
      reread();
    } catch (error) {
      refused(error);
    }
  });
  replay.addEventListener("click", async () => {
    if (!(await confirmDialog(`Replay run ${shortId(run.id)}?`, "A new run of the same task with the same payload starts.", "Replay", "Don't replay"))) return;
    try {
      const made = await api(`${path}/replay`, { method: "POST", body: {} });
      navigate(`/runs/${encodeURIComponent(made.run.id)}`);
    } catch (error) {
      refused(error);
    }
  });

  const readJson = (textarea, what) => {
    const text = textarea.value.trim();
    if (!text) return { value: null };
    try {
      return { value: JSON.parse(text) };
    } catch (error) {
      return { error: `${what}: not valid JSON (${error.message})` };
    }
  };

  const tokenValue = h("textarea", { id: "token-value", testid: "token-value", rows: 3, spellcheck: "false", "aria-describedby": "token-hint" }, "true");
  const tokenInfo = h("span", { id: "token-hint", class: "hint" });
  const tokenForm = h("form", { testid: "token-form", class: "card", "aria-labelledby": "token-title" },
    h("h2", { id: "token-title", class: "h3" }, "Complete the wait token"), tokenInfo,
    h("div", { class: "form-row" }, h("label", { for: "token-value" }, "Payload (JSON)"), tokenValue),
    h("div", {}, h("button", { type: "submit", testid: "token-submit" }, "Complete token")));
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tokenId = run.wait && run.wait.token_id;
    const read = readJson(tokenValue, "payload");
    if (read.error) return show(read.error, true);
    try {
      await api(`/v1/wait-tokens/${seg(tokenId)}/complete`, { method: "POST", body: { payload: read.value } });
      show(`Token ${tokenId} completed.`);
      reread();
    } catch (error) {
      refused(error);
    }
  });

  const eventName = h("input", { id: "event-name", type: "text", testid: "event-name", autocomplete: "off", required: true });
  const eventKey = h("input", { id: "event-key", type: "text", testid: "event-key", autocomplete: "off" });
  const eventValue = h("textarea", { id: "event-value", testid: "event-value", rows: 3, spellcheck: "false" }, "{}");
  const eventForm = h("form", { testid: "event-form", class: "card", "aria-labelledby": "event-title" },
    h("h2", { id: "event-title", class: "h3" }, "Send an event to this run"),
    h("div", { class: "form-row" }, h("label", { for: "event-name" }, "Name"), eventName),
    h("div", { class: "form-row" }, h("label", { for: "event-key" }, "Key (optional)"), eventKey),
    h("div", { class: "form-row" }, h("label", { for: "event-value" }, "Payload (JSON)"), eventValue),
    h("div", {}, h("button", { type: "submit", testid: "event-submit" }, "Send event")));
  eventForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = eventName.value.trim();
    if (!name) return show("name: required", true);
    const read = readJson(eventValue, "payload");
    if (read.error) return show(read.error, true);
    try {
      const sent = await api("/v1/events", { method: "POST", body: { run_id: run.id, name, key: eventKey.value.trim(), payload: read.value } });
      show(sent.delivered_run_ids && sent.delivered_run_ids.length ? `Event "${name}" delivered.` : sent.buffered ? `Event "${name}" kept until the run waits for it.` : `Event "${name}" sent.`);
      reread();
    } catch (error) {
      refused(error);
    }
  });

  // Logs and stream chunks.
  const logBody = h("tbody");
  const logIds = new Set();
  const noLogs = h("p", { class: "muted" }, "No log lines.");
  const logsBox = h("div", { class: "logs", tabindex: 0, role: "region", "aria-label": "Log lines", hidden: true },
    h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Level", "Attempt", "Step", "Message"].map((n) => h("th", { scope: "col" }, n)))), logBody));
  const addLine = (line) => {
    if (logIds.has(line.id)) return;
    logIds.add(line.id);
    noLogs.remove();
    logsBox.hidden = false;
    const rowsNow = logBody.rows;
    const stick = logsBox.scrollTop + logsBox.clientHeight >= logsBox.scrollHeight - 8;
    // Lines arrive in id order, except the stream's early ones interleaving the first page.
    const after = [...rowsNow].find((r) => Number(r.dataset.id) > line.id);
    logBody.insertBefore(logRow(line), after || null);
    if (stick) logsBox.scrollTop = logsBox.scrollHeight;
  };
  const streams = new Map();
  const streamBox = h("div", { testid: "run-stream" }, h("p", { class: "muted" }, "No stream chunks."));
  const seenChunks = new Set();
  const addChunk = (event) => {
    if (seenChunks.has(event.id)) return;
    seenChunks.add(event.id);
    const name = event.details.stream || "stream";
    if (!streams.size) streamBox.replaceChildren();
    let pre = streams.get(name);
    if (!pre) {
      pre = h("pre", { class: "stream-text", tabindex: 0, data: { stream: name } });
      streams.set(name, pre);
      streamBox.append(h("h3", {}, name), pre);
    }
    const value = event.details.value;
    pre.append(typeof value === "string" ? value : `${inline(value)}\n`);
  };

  fill(main,
    h("p", {}, h("a", { href: "/" }, "← Runs"), " ", live),
    headerSlot,
    h("div", { class: "actions", role: "group", "aria-label": "Actions" }, cancel, replay),
    message,
    h("div", { class: "forms" }, tokenForm, eventForm),
    ndSlot,
    h("section", { "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timelineSlot),
    errorsSlot,
    h("section", { "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Logs"), h("div", { testid: "run-logs" }, noLogs, logsBox)),
    h("section", { "aria-labelledby": "stream-title" }, h("h2", { id: "stream-title" }, "Stream"), streamBox),
    ioSlot,
    eventsSlot);

  const paint = () => {
    document.title = `Run ${shortId(run.id)} (${run.status}) · Cairn`;
    const found = divergence(run);
    fill(headerSlot, header(run));
    fill(ndSlot, nondeterminism(found));
    fill(timelineSlot, timeline(run, { diverged: found, open }));
    fill(errorsSlot, errors(run));
    fill(ioSlot,
      h("section", { "aria-labelledby": "input-title" }, h("h2", { id: "input-title" }, "Input"), h("div", { testid: "run-input" }, jsonView(run.input, { label: "Payload", fullTestid: "run-input-full" }))),
      h("section", { "aria-labelledby": "output-title" }, h("h2", { id: "output-title" }, "Output"), h("div", { testid: "run-output" }, TERMINAL.has(run.status) || run.output !== null ? jsonView(run.output, { label: "Output", fullTestid: "run-output-full" }) : h("p", { class: "muted" }, "No output yet."))));
    fill(eventsSlot, events(run));
    const token = run.wait && run.wait.kind === "token" && run.wait.token_id;
    tokenForm.hidden = !token;
    const ended = TERMINAL.has(run.status);
    cancel.hidden = ended; // nothing to cancel, nothing to deliver an event to
    eventForm.hidden = ended;
    fill(tokenInfo, token ? `The run waits on token ${token}.` : "");
    if (run.wait && run.wait.kind === "event" && !eventName.value) {
      eventName.value = run.wait.event_name || "";
      eventKey.value = run.wait.event_key || "";
    }
  };

  let lastRead = Math.max(0, ...run.events.map((e) => e.id));
  let reading = null;
  let again = false;
  async function reread() {
    if (reading) {
      again = true;
      return;
    }
    reading = api(path);
    try {
      const fresh = (await reading).run;
      if (!isCurrent()) return;
      run = fresh;
      lastRead = Math.max(lastRead, ...run.events.map((e) => e.id));
      paint();
    } catch {
      /* the next event reads again */
    } finally {
      reading = null;
      if (again) {
        again = false;
        reread();
      }
    }
  }
  const soon = debounce(reread, 250);

  paint();
  (logs.lines || []).forEach(addLine);

  const ticker = setInterval(() => {
    if (TERMINAL.has(run.status) || !run.started_at) return;
    const node = headerSlot.querySelector("[data-testid=run-duration]");
    if (node) node.textContent = duration(runDuration(run));
  }, 1000);
  const close = watch(`${path}/watch`, {
    endOnDone: true,
    onUpdate: ({ event, run: summary }) => {
      if (event.type === "log") return addLine(lineOf(event));
      if (event.type === "stream") return addChunk(event);
      if (event.id <= lastRead) return;
      // The status shows at once; the rest comes with the re-read.
      const badge = headerSlot.querySelector("[data-testid=run-header] [data-testid=run-status]");
      if (badge && summary.status !== run.status) {
        badge.textContent = summary.status;
        badge.className = `status status-${summary.status}`;
      }
      soon();
    },
    onState: (state, detail) => {
      live.dataset.state = state;
      live.textContent = { live: "live", reconnecting: "reconnecting…", ended: "run ended", error: "not live" }[state] || state;
      live.title = detail || "";
    },
  });
  return () => {
    close();
    clearInterval(ticker);
  };
}
