// The runs list (/ and /runs): filters in the query string, one page of runs
// (GET /v1/runs, newest first, cursor paging), and live changes from
// GET /v1/runs/watch: rows change status, duration and attempts, and new runs
// that match the filters appear at the top without reloading.

import { api, query } from "./api.js";
import { watch } from "./sse.js";
import {
  STATUSES, TERMINAL, debounce, duration, errorBox, fill, h, parseWhen, runDuration, shortId, statusBadge, timeEl,
} from "./format.js";

const PAGE_SIZE = 50;
const FILTERS = ["status", "task", "tag", "queue", "since", "until"];

/** The API's query for the page's filters, or an {error} naming a bad time. */
export function listQuery(filters) {
  const after = parseWhen(filters.since);
  const before = parseWhen(filters.until);
  if (after === null) return { error: { field: "since", message: `since: cannot read "${filters.since}" (e.g. 2h, 30m, 2025-01-02T03:04:05Z)` } };
  if (before === null) return { error: { field: "until", message: `until: cannot read "${filters.until}" (e.g. 1h, 2025-01-02T03:04:05Z)` } };
  return {
    params: {
      statuses: filters.status, task_id: filters.task, tag: filters.tag, queue: filters.queue,
      created_after: after, created_before: before,
    },
  };
}

/** Whether a run passes the filters (checked on live updates; the server checks pages). */
function matches(run, filters, params) {
  if (filters.status && run.status !== filters.status) return false;
  if (filters.task && run.task !== filters.task) return false;
  if (filters.queue && run.queue !== filters.queue) return false;
  if (filters.tag && !(run.tags || []).includes(filters.tag)) return false;
  const created = Date.parse(run.created_at);
  if (params.created_after && created < Date.parse(params.created_after)) return false;
  if (params.created_before && created >= Date.parse(params.created_before)) return false;
  return true;
}

/** Fills (or refreshes) the cells of a run's row. */
export function fillRow(row, run) {
  row.dataset.runId = run.id;
  row.dataset.status = run.status;
  row.dataset.created = run.created_at || "";
  row.dataset.updated = run.updated_at || "";
  row.dataset.started = run.started_at || "";
  row.dataset.finished = run.finished_at || "";
  row.dataset.updated = run.updated_at || "";
  const cells = row.cells.length ? [...row.cells] : ["Status", "Run", "Task", "Duration", "Attempts", "Tags", "Created"].map((label) => row.appendChild(h("td", { data: { label } })));
  fill(cells[0], statusBadge(run.status));
  if (!cells[1].firstChild) fill(cells[1], h("a", { href: `/runs/${encodeURIComponent(run.id)}`, testid: "run-link", class: "mono", title: run.id, "aria-label": `Run ${run.id}` }, shortId(run.id)));
  if (!cells[2].firstChild) fill(cells[2], h("span", { testid: "run-task" }, run.task));
  fill(cells[3], h("span", { testid: "run-duration", class: "num" }, duration(runDuration(run))));
  fill(cells[4], h("span", { testid: "run-attempts", class: "num" }, String(run.attempt_count)));
  fill(cells[5], h("span", { testid: "run-tags", class: "tags" }, (run.tags || []).map((t) => h("span", { class: "tag" }, t))));
  if (!cells[6].firstChild) fill(cells[6], timeEl(run.created_at, { testid: "run-created" }));
  return row;
}

export function runRow(run) {
  return fillRow(h("tr", { testid: "run-row" }), run);
}

/** A table of runs (the rows go in its tbody). */
export function runsTable(label) {
  const headers = ["Status", "Run", "Task", "Duration", "Attempts", "Tags", "Created"];
  return h("table", { class: "runs", testid: "runs-table" },
    h("caption", { class: "visually-hidden" }, label),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody"));
}

/** Ticks the durations of unfinished rows every second. Returns stop(). */
export function tickDurations(table) {
  const timer = setInterval(() => {
    for (const row of table.tBodies[0].rows) {
      if (!row.dataset.started || row.dataset.finished || TERMINAL.has(row.dataset.status)) continue;
      const cell = row.querySelector("[data-testid=run-duration]");
      if (cell) cell.textContent = duration((Date.now() - Date.parse(row.dataset.started)) / 1000);
    }
  }, 1000);
  return () => clearInterval(timer);
}

function input(name, label, value, placeholder, hint) {
  const id = `filter-${name}`;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name, type: "text", value: value || "", placeholder, testid: `runs-filter-${name}`, autocomplete: "off", spellcheck: "false", "aria-describedby": hint ? `${id}-hint` : null }),
    hint ? h("span", { id: `${id}-hint`, class: "hint" }, hint) : null);
}

export async function render(main, { query: search, navigate, isCurrent }) {
  let filters = Object.fromEntries(FILTERS.map((name) => [name, search.get(name) || ""]));
  let pageToken = search.get("page_token") || "";
  document.title = "Runs · Cairn";

  const status = h("select", { id: "filter-status", name: "status", testid: "runs-filter-status" },
    h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), status),
    input("task", "Task", filters.task, "task id"),
    input("tag", "Tag", filters.tag, "tag"),
    input("queue", "Queue", filters.queue, "queue"),
    input("since", "Since", filters.since, "2h, or a time", "created at or after"),
    input("until", "Until", filters.until, "1h, or a time", "created before"),
    h("div", { class: "field buttons" }, h("button", { type: "submit" }, "Apply"), h("a", { href: "/", class: "button secondary" }, "Clear")));
  const searchInput = h("input", { id: "runs-search", type: "search", testid: "runs-search", placeholder: "run id", autocomplete: "off", spellcheck: "false" });
  const searchForm = h("form", { class: "search", role: "search", "aria-label": "Open a run by id" },
    h("label", { for: "runs-search" }, "Run id"), searchInput, h("button", { type: "submit" }, "Open"));
  const live = h("span", { class: "live", testid: "runs-live", role: "status", data: { state: "connecting" } }, "connecting…");
  const message = h("div", { class: "message" });
  const table = runsTable("Runs, newest first");
  const pager = h("div", { class: "pager" });
  fill(main,
    h("div", { class: "title" }, h("h1", {}, "Runs"), live),
    h("div", { class: "toolbar" }, form, searchForm),
    message, h("div", { class: "table-wrap" }, table), pager);

  let stops = [];
  const stopAll = () => {
    stops.forEach((stop) => stop());
    stops = [];
  };
  let loads = 0;

  // One page of runs for the filters, and the live watch of their changes.
  async function load() {
    const loadId = ++loads;
    stopAll();
    fill(message);
    fill(pager);
    const body = table.tBodies[0];
    body.replaceChildren();
    table.setAttribute("aria-busy", "true");
    const built = listQuery(filters);
    if (built.error) {
      fill(message, errorBox(built.error));
      table.removeAttribute("aria-busy");
      return;
    }
    const params = built.params;
    const rows = new Map();
    let hasNext = false;
    const empty = h("tr", { class: "empty" }, h("td", { colspan: 7 }, "No runs match."));
    stops.push(tickDurations(table));
    // The watch opens first, so that nothing made while the page loads is missed.
    // Updates that come while the page is read wait for it: placed before it, a
    // run of the page could take a row of its own or the page's oldest run be
    // shown twice; then only what is newer than the page's copy is applied.
    let loaded = false;
    const early = [];
    const place = (run) => {
      const row = rows.get(run.id);
      if (row) {
        if ((run.updated_at || "") >= (row.dataset.updated || "")) fillRow(row, run);
        return;
      }
      if (pageToken || !matches(run, filters, params)) return;
      const created = Date.parse(run.created_at);
      const before = [...body.rows].find((r) => r.dataset.created && Date.parse(r.dataset.created) < created);
      if (!before && hasNext) return; // older than this page: on a later one
      const added = runRow(run);
      rows.set(run.id, added);
      body.insertBefore(added, before || null);
      empty.remove();
    };
    stops.push(watch(`/v1/runs/watch${query({ task_id: filters.task, tag: filters.tag })}`, {
      onUpdate: ({ run }) => {
        if (!loaded) {
          early.push(run);
          return;
        }
        place(run);
      },
      onState: (state, detail) => {
        live.dataset.state = state;
        live.textContent = { live: "live", reconnecting: "reconnecting…", ended: "ended", error: "not live" }[state] || state;
        live.title = detail || "";
      },
    }));
    let page;
    try {
      page = await api(`/v1/runs${query({ ...params, page_size: PAGE_SIZE, page_token: pageToken })}`);
    } catch (error) {
      if (loadId === loads) fill(message, errorBox(error));
      table.removeAttribute("aria-busy");
      return;
    }
    if (loadId !== loads || !isCurrent()) return;
    table.removeAttribute("aria-busy");
    hasNext = Boolean(page.next_page_token);
    for (const run of page.runs) {
      if (rows.has(run.id)) continue;
      const row = runRow(run);
      rows.set(run.id, row);
      body.append(row);
    }
    if (!body.rows.length) body.append(empty);
    loaded = true;
    for (const run of early.splice(0)) place(run);
    const links = [];
    if (pageToken) links.push(h("a", { href: `/${query(filters)}`, class: "button secondary", testid: "runs-first-page" }, "Newest"));
    if (hasNext) {
      links.push(h("button", {
        type: "button", testid: "runs-next-page",
        on: { click: () => navigate(`/${query({ ...filters, page_token: page.next_page_token })}`) },
      }, "Older runs"));
    }
    fill(pager, links);
  }

  const current = () => {
    const data = new FormData(form);
    return Object.fromEntries(FILTERS.map((name) => [name, String(data.get(name) || "").trim()]));
  };
  // A change of the filters: the address changes in place (no new history
  // entry, the form keeps its focus) and the first page is read again.
  const apply = () => {
    const next = current();
    if (FILTERS.every((name) => next[name] === filters[name]) && !pageToken) return;
    filters = next;
    pageToken = "";
    history.replaceState(null, "", `/${query(filters)}`);
    load();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener("change", apply);
  form.addEventListener("input", debounce(apply, 400));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = searchInput.value.trim();
    if (id) navigate(`/runs/${encodeURIComponent(id)}`);
  });

  await load();
  return stopAll;
}
