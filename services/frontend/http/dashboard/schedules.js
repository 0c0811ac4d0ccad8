// The schedules (/schedules): GET /v1/schedules, pause and resume.

import { api, seg } from "./api.js";
import { ago, errorBox, fill, h, inline, time, timeEl } from "./format.js";

function when(iso, show) {
  return iso ? h("time", { datetime: iso, title: iso }, `${time(iso)} (${show(iso)})`) : h("span", { class: "muted" }, "—");
}

export async function render(main, { isCurrent }) {
  document.title = "Schedules · Cairn";
  const message = h("div", { class: "message", role: "status", "aria-live": "polite" });
  const slot = h("div");
  fill(main, h("div", { class: "title" }, h("h1", {}, "Schedules")), message, slot);

  const act = async (schedule, verb) => {
    try {
      await api(`/v1/schedules/${seg(schedule.id)}/${verb}`, { method: "POST", body: {} });
      fill(message, h("p", { class: "notice" }, `Schedule ${schedule.id} ${verb === "pause" ? "paused" : "resumed"}.`));
      load();
    } catch (error) {
      fill(message, errorBox(error, "Refused: "));
    }
  };
  const row = (s) => h("tr", { testid: "schedule-row", data: { schedule: s.id, paused: s.paused } },
    h("th", { scope: "row", class: "mono" }, s.id),
    h("td", {}, h("a", { href: `/?task=${encodeURIComponent(s.task)}` }, s.task)),
    h("td", { class: "mono", testid: "schedule-cron" }, s.cron, s.timezone && s.timezone !== "UTC" ? ` (${s.timezone})` : ""),
    h("td", { testid: "schedule-next" }, s.paused ? h("span", { class: "muted" }, "paused") : when(s.next_fire_at, (iso) => ago(iso)),
      !s.paused && s.upcoming && s.upcoming.length
        ? h("div", { class: "muted", testid: "schedule-upcoming" }, "then ", s.upcoming.map((iso) => time(iso)).join(", "))
        : null),
    h("td", { testid: "schedule-last-run" },
      s.last_fired_at ? timeEl(s.last_fired_at) : h("span", { class: "muted" }, "never"),
      s.last_run_id ? [" ", h("a", { href: `/runs/${encodeURIComponent(s.last_run_id)}`, class: "mono", "aria-label": `Last run ${s.last_run_id}` }, "run")] : null),
    h("td", { class: "mono" }, s.payload === null ? "" : inline(s.payload)),
    h("td", { testid: "schedule-paused" }, s.paused ? h("span", { class: "status status-waiting" }, "paused") : "no"),
    h("td", {}, s.paused
      ? h("button", { type: "button", class: "small", testid: "schedule-resume", "aria-label": `Resume schedule ${s.id}`, on: { click: () => act(s, "resume") } }, "Resume")
      : h("button", { type: "button", class: "small secondary", testid: "schedule-pause", "aria-label": `Pause schedule ${s.id}`, on: { click: () => act(s, "pause") } }, "Pause")));

  async function load() {
    try {
      const { schedules } = await api("/v1/schedules");
      if (!isCurrent()) return;
      fill(slot, h("div", { class: "table-wrap" }, h("table", { testid: "schedules-table" },
        h("caption", { class: "visually-hidden" }, "Schedules"),
        h("thead", {}, h("tr", {}, ["Schedule", "Task", "Cron", "Next fire", "Last run", "Payload", "Paused", "Actions"].map((n) => h("th", { scope: "col" }, n)))),
        h("tbody", {}, schedules.length ? schedules.map(row) : h("tr", { class: "empty" }, h("td", { colspan: 8 }, "No schedules."))))));
    } catch (error) {
      fill(slot, errorBox(error));
    }
  }
  await load();
}
