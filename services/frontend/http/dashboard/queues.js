// Queues (/queues: GET /v1/queues, pause and resume) and one queue
// (/queues/NAME: its settings and its recent runs, GET /v1/runs?queue=NAME).

import { api, query, seg } from "./api.js";
import { errorBox, fill, h, timeEl } from "./format.js";
import { runRow, runsTable, tickDurations } from "./runs.js";

const limit = (n) => (n ? String(n) : "none");
const rate = (r) => (r ? `${r.limit} per ${r.period}s` : "none");

function pauseButtons(queue, after, message) {
  const act = async (verb) => {
    try {
      await api(`/v1/queues/${seg(queue.name)}/${verb}`, { method: "POST", body: {} });
      fill(message, h("p", { class: "notice" }, `Queue ${queue.name} ${verb === "pause" ? "paused" : "resumed"}.`));
      after();
    } catch (error) {
      fill(message, errorBox(error, `Refused: `));
    }
  };
  return queue.paused
    ? h("button", { type: "button", class: "small", testid: "queue-resume", on: { click: () => act("resume") }, "aria-label": `Resume queue ${queue.name}` }, "Resume")
    : h("button", { type: "button", class: "small secondary", testid: "queue-pause", on: { click: () => act("pause") }, "aria-label": `Pause queue ${queue.name}` }, "Pause");
}

function queueRow(queue, after, message) {
  return h("tr", { testid: "queue-row", data: { queue: queue.name, paused: queue.paused } },
    h("th", { scope: "row" }, h("a", { href: `/queues/${encodeURIComponent(queue.name)}` }, queue.name)),
    h("td", { class: "num", testid: "queue-depth" }, String(queue.depth)),
    h("td", { class: "num", testid: "queue-executing" }, String(queue.running)),
    h("td", { class: "num", testid: "queue-limit" }, limit(queue.concurrency_limit)),
    h("td", { testid: "queue-rate" }, rate(queue.rate_limit)),
    h("td", { class: "num" }, limit(queue.max_depth)),
    h("td", { testid: "queue-paused" }, queue.paused ? h("span", { class: "status status-waiting" }, "paused") : "no"),
    h("td", {}, pauseButtons(queue, after, message)));
}

function queuesTable(queues, after, message) {
  return h("div", { class: "table-wrap" }, h("table", { testid: "queues-table" },
    h("caption", { class: "visually-hidden" }, "Queues"),
    h("thead", {}, h("tr", {}, ["Queue", "Depth", "Executing", "Concurrency limit", "Rate limit", "Max depth", "Paused", "Actions"].map((n) => h("th", { scope: "col" }, n)))),
    h("tbody", {}, queues.length ? queues.map((q) => queueRow(q, after, message)) : h("tr", { class: "empty" }, h("td", { colspan: 8 }, "No queues yet: a worker declares its tasks' queues.")))));
}

export async function render(main, { isCurrent }) {
  document.title = "Queues · Cairn";
  const message = h("div", { class: "message", role: "status", "aria-live": "polite" });
  const slot = h("div");
  fill(main, h("div", { class: "title" }, h("h1", {}, "Queues")), message, slot);
  const load = async () => {
    try {
      const { queues } = await api("/v1/queues");
      if (isCurrent()) fill(slot, queuesTable(queues, load, message));
    } catch (error) {
      fill(slot, errorBox(error));
    }
  };
  await load();
  const timer = setInterval(() => {
    if (!main.contains(document.activeElement) || document.activeElement === main || document.activeElement === document.body) load();
  }, 5000);
  return () => clearInterval(timer);
}

export async function renderQueue(main, { params: [name], isCurrent }) {
  document.title = `Queue ${name} · Cairn`;
  const message = h("div", { class: "message", role: "status", "aria-live": "polite" });
  const settings = h("div");
  const table = runsTable(`Recent runs of queue ${name}`);
  fill(main,
    h("p", {}, h("a", { href: "/queues" }, "← Queues")),
    h("div", { class: "title" }, h("h1", {}, "Queue ", h("span", { class: "mono" }, name))),
    message, settings,
    h("h2", {}, "Recent runs"),
    h("div", { class: "table-wrap" }, table),
    h("p", {}, h("a", { href: `/${query({ queue: name })}` }, "All runs of this queue")));
  const load = async () => {
    try {
      const { queues } = await api("/v1/queues");
      const queue = queues.find((q) => q.name === name);
      if (!isCurrent()) return;
      if (!queue) {
        fill(settings, errorBox({ code: "NOT_FOUND", message: `no queue named ${name}` }));
        return;
      }
      fill(settings, queuesTable([queue], load, message),
        h("dl", { class: "facts card" },
          h("dt", {}, "Managed"), h("dd", {}, queue.managed ? "yes (settings changed through the API)" : "no (as declared by workers)"),
          h("dt", {}, "Updated"), h("dd", {}, timeEl(queue.updated_at))));
    } catch (error) {
      fill(settings, errorBox(error));
    }
  };
  const runs = api(`/v1/runs${query({ queue: name, page_size: 50 })}`);
  await load();
  try {
    const page = await runs;
    if (!isCurrent()) return () => {};
    const body = table.tBodies[0];
    page.runs.forEach((run) => body.append(runRow(run)));
    if (!page.runs.length) body.append(h("tr", { class: "empty" }, h("td", { colspan: 7 }, "No runs in this queue.")));
  } catch (error) {
    fill(message, errorBox(error));
  }
  return tickDurations(table);
}
