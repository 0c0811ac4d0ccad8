// A run's timeline (waterfall): one lane per attempt with its steps inside,
// each a bar placed by time from the run's creation to its end (or now); a
// step lasts from the previous step's record (or its attempt's start) to its
// own record. Resolved waits are steps with a wait marker, the run's current
// wait a row of its own, child runs links. Each step shows its tries and its
// recorded result as collapsible JSON.

import { TERMINAL, between, duration, errorView, h, jsonView, shortId, statusBadge } from "./format.js";

const t = (iso) => (iso ? Date.parse(iso) : NaN);

/** The wait kind of a recorded step's name (the SDK's names), or null. */
export function waitKind(name) {
  if (name.startsWith("wait.for_event")) return "event";
  if (name.startsWith("wait.for_token")) return "token";
  if (/^wait\.(sleep|for_|until)/.test(name)) return "sleep";
  if (/^(batch_)?trigger_and_wait:/.test(name)) return "children";
  return null;
}

/** Where a run diverged on replay: {position, recorded, now} from a NonDeterminismError message. */
export function divergence(run) {
  const errors = [run.error, ...[...(run.attempts || [])].reverse().map((a) => a.error), ...(run.steps || []).map((s) => s.error)];
  for (const error of errors) {
    const m = error && /step position (\d+) was recorded as '([^\n]*)' but the code now calls '([^\n]*)'/.exec(error.message || "");
    if (m) return { position: Number(m[1]), recorded: m[2], now: m[3], error };
  }
  return null;
}

function bar(scale, from, to, cls = "") {
  const track = h("div", { class: "tl-track", "aria-hidden": "true" });
  const a = t(from);
  if (Number.isNaN(a)) return track;
  const b = Number.isNaN(t(to)) ? scale.end : t(to);
  const node = h("div", { class: `tl-bar ${cls}` });
  // CSSOM (not a style attribute), which the Content-Security-Policy allows.
  node.style.left = `${scale.pct(a)}%`;
  node.style.width = `${Math.max(scale.pct(b) - scale.pct(a), 0.3)}%`;
  track.append(node);
  return track;
}

function row(label, seconds, track, testid = "step-duration") {
  return h("div", { class: "tl-row" }, h("div", { class: "tl-label" }, label), h("span", { class: "tl-dur", testid }, duration(seconds)), track);
}

function tries(step) {
  const errors = step.try_errors || [];
  const text = step.tries === 1 ? "1 try" : `${step.tries} tries`;
  return h("div", { class: "tries", testid: "step-tries", data: { tries: step.tries } },
    h("span", {}, errors.length ? `${text}; failed tries:` : text),
    errors.length ? h("ol", {}, errors.map((e) => h("li", {}, h("strong", {}, e.type), `: ${e.message}`))) : null);
}

function childLinks(ids, statuses = {}, testid = "timeline-child") {
  return h("div", { class: "tl-children" }, ids.map((id) => h("a", { href: `/runs/${encodeURIComponent(id)}`, testid, class: "mono", data: { runId: id }, title: id },
    shortId(id), statuses[id] ? ` (${statuses[id]})` : "")));
}

function waitText(wait) {
  if (wait.kind === "sleep") return `sleep until ${wait.until || "?"}`;
  if (wait.kind === "event") return `event "${wait.event_name || ""}"${wait.event_key ? ` key "${wait.event_key}"` : ""}${wait.until ? `, timeout ${wait.until}` : ""}`;
  if (wait.kind === "token") return `token ${wait.token_id || ""}${wait.until ? `, timeout ${wait.until}` : ""}`;
  return `${wait.child_run_ids.length} child run(s)`;
}

/** The timeline of a run (GET /v1/runs/{id}). `open` keeps the step results a reader opened or closed. */
export function timeline(run, { diverged = null, open = new Map() } = {}) {
  const now = Date.now();
  const times = [run.created_at, run.finished_at, ...run.attempts.flatMap((a) => [a.started_at, a.finished_at]), ...run.steps.map((s) => s.recorded_at)].map(t).filter((x) => !Number.isNaN(x));
  const start = Math.min(...times, t(run.created_at) || now);
  const ended = TERMINAL.has(run.status);
  const end = ended ? Math.max(...times) : Math.max(now, ...times);
  const span = Math.max(end - start, 1);
  const scale = { end, pct: (x) => ((x - start) / span) * 100 };

  const steps = [...run.steps].sort((a, b) => a.position - b.position);
  const byPos = new Map(steps.map((s) => [s.position, s]));
  const attempts = [...run.attempts].sort((a, b) => a.number - b.number);
  const lastNumber = attempts.length ? attempts[attempts.length - 1].number : 0;
  const childStatuses = {};
  for (const s of steps) if (Array.isArray(s.output) && waitKind(s.name) === "children") for (const c of s.output) if (c && c.run_id) childStatuses[c.run_id] = c.status;

  const stepItem = (step, attempt) => {
    const prev = byPos.get(step.position - 1);
    const from = [prev && prev.recorded_at, attempt && attempt.started_at].map(t).filter((x) => !Number.isNaN(x));
    const begin = from.length ? new Date(Math.max(...from)).toISOString() : null;
    const seconds = begin ? between(begin, step.recorded_at) : null;
    const kind = waitKind(step.name);
    const isDiverged = diverged !== null && step.position === diverged.position;
    const result = jsonView(step.output, { testid: "step-result", fullTestid: "step-result-full", label: "Result", open: open.has(step.position) ? open.get(step.position) : true });
    result.addEventListener("toggle", () => open.set(step.position, result.open));
    return h("li", { testid: "timeline-step", class: "tl-step", data: { position: step.position, status: step.status, ...(isDiverged ? { diverged: "true" } : {}) } },
      row([
        h("span", { class: "tl-pos" }, `#${step.position}`),
        h("span", { testid: "step-name", class: "mono" }, step.name),
        kind ? h("span", { testid: "timeline-wait", class: "status", data: { kind } }, `wait: ${kind}`) : null,
        step.status !== "completed" ? statusBadge(step.status, "step-status") : null,
        isDiverged ? h("span", { class: "diverged-note" }, `diverged: now calls '${diverged.now}'`) : null,
      ], seconds, bar(scale, begin, step.recorded_at, `${kind ? "wait" : ""} ${step.status === "failed" ? "bad" : ""}`)),
      h("div", { class: "tl-detail" },
        tries(step),
        step.error ? errorView(step.error, { testid: "step-error" }) : null,
        kind === "children" && Array.isArray(step.output) ? childLinks(step.output.map((c) => c.run_id), childStatuses, "wait-child") : null,
        result));
  };

  const items = [];
  const placed = new Set();
  for (const attempt of attempts) {
    const own = steps.filter((s) => s.attempt === attempt.number || (attempt.number === lastNumber && !attempts.some((a) => a.number === s.attempt)));
    own.forEach((s) => placed.add(s.position));
    const finished = attempt.finished_at || (ended ? run.finished_at : null);
    items.push(h("li", { testid: "timeline-attempt", class: "tl-attempt", data: { attempt: attempt.number, status: attempt.status } },
      row([
        h("span", {}, `Attempt ${attempt.number}`),
        statusBadge(attempt.status, "attempt-status"),
        attempt.worker_id ? h("span", { class: "muted mono", title: `worker ${attempt.worker_id}, version ${attempt.worker_version}` }, attempt.worker_id) : null,
      ], between(attempt.started_at, finished), bar(scale, attempt.started_at, finished, attempt.error ? "bad" : ""), "attempt-duration"),
      own.length ? h("ol", { "aria-label": `Steps of attempt ${attempt.number}` }, own.map((s) => stepItem(s, attempt))) : null));
  }
  const loose = steps.filter((s) => !placed.has(s.position));
  if (loose.length) items.push(h("li", { class: "tl-attempt" }, h("ol", { "aria-label": "Steps" }, loose.map((s) => stepItem(s, null)))));

  const wait = run.wait;
  if (wait && !byPos.has(wait.position)) {
    const last = attempts[attempts.length - 1];
    const since = (last && last.finished_at) || run.updated_at;
    items.push(h("li", { testid: "timeline-wait", class: "tl-wait", data: { kind: wait.kind, position: wait.position } },
      row([h("span", { class: "tl-pos" }, `#${wait.position}`), h("span", {}, `waiting: ${wait.kind}`)], between(since), bar(scale, since, null, "wait")),
      h("div", { class: "tl-detail" }, h("span", {}, waitText(wait)), wait.kind === "children" ? childLinks(wait.child_run_ids, childStatuses, "wait-child") : null)));
  }
  if (run.child_run_ids.length) {
    items.push(h("li", { class: "tl-children-row" },
      row([h("span", {}, `Child runs (${run.child_run_ids.length})`)], null, h("div", { class: "tl-track", "aria-hidden": "true" }), "children-duration"),
      h("div", { class: "tl-detail" }, childLinks(run.child_run_ids, childStatuses))));
  }
  if (!items.length) items.push(h("li", { class: "muted tl-row" }, run.status === "queued" || run.status === "delayed" ? "Not started yet." : "No attempts."));
  return h("ol", { class: "timeline", testid: "timeline", "aria-label": "Timeline of attempts and steps" }, items);
}
