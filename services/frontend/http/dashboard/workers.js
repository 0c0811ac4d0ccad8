// The workers (/workers): GET /v1/workers, read again every 5 seconds.

import { api } from "./api.js";
import { ago, errorBox, fill, h, time } from "./format.js";

function workerRow(w) {
  return h("tr", { testid: "worker-row", data: { workerId: w.worker_id, connected: w.connected } },
    h("th", { scope: "row", class: "mono", testid: "worker-id" }, w.worker_id),
    h("td", { testid: "worker-tasks" }, h("span", { class: "tags" }, w.task_ids.map((t) => h("a", { class: "tag", href: `/?task=${encodeURIComponent(t)}` }, t)))),
    h("td", { testid: "worker-version", class: "mono" }, w.version || "—"),
    h("td", { testid: "worker-slots", class: "num" }, `${w.running} used, ${Math.max(0, w.slots - w.running)} free`),
    h("td", { testid: "worker-last-seen" }, w.last_seen_at ? h("time", { datetime: w.last_seen_at, title: time(w.last_seen_at) }, ago(w.last_seen_at)) : "—"),
    h("td", {}, w.connected ? h("span", { class: "status status-completed" }, "connected") : h("span", { class: "status" }, "gone")));
}

export async function render(main, { isCurrent }) {
  document.title = "Workers · Cairn";
  const slot = h("div");
  fill(main, h("div", { class: "title" }, h("h1", {}, "Workers")), slot,
    h("p", { class: "hint" }, "Slots: how many attempts a worker runs at once, in use and free. Last seen: its last registration or poll."));
  const load = async () => {
    try {
      const { workers } = await api("/v1/workers");
      if (!isCurrent()) return;
      fill(slot, h("div", { class: "table-wrap" }, h("table", { testid: "workers-table" },
        h("caption", { class: "visually-hidden" }, "Workers"),
        h("thead", {}, h("tr", {}, ["Worker", "Tasks", "Version", "Slots", "Last seen", "State"].map((n) => h("th", { scope: "col" }, n)))),
        h("tbody", {}, workers.length ? workers.map(workerRow) : h("tr", { class: "empty" }, h("td", { colspan: 6 }, "No workers: start one with cairn worker MODULE."))))));
    } catch (error) {
      fill(slot, errorBox(error));
    }
  };
  await load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
