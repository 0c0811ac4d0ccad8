// The router: reads the address (history API, no "#"), renders its page into
// <main> and follows links to other pages without reloading. Each page module
// exports render(main, {params, query, navigate}) and may answer a cleanup
// function (closing its event streams) called when another page is shown.

import * as runs from "./runs.js";
import * as run from "./run.js";
import * as queues from "./queues.js";
import * as workers from "./workers.js";
import * as schedules from "./schedules.js";
import { apiKey, askForKey, forgetKey, onKeyChange } from "./api.js";
import { errorBox, fill, h } from "./format.js";

const ROUTES = [
  [/^\/(?:runs\/?)?$/, "runs", runs.render],
  [/^\/runs\/([^/]+)\/?$/, "runs", run.render],
  [/^\/queues\/?$/, "queues", queues.render],
  [/^\/queues\/([^/]+)\/?$/, "queues", queues.renderQueue],
  [/^\/workers\/?$/, "workers", workers.render],
  [/^\/schedules\/?$/, "schedules", schedules.render],
];
// Addresses served by the server itself, not by this router.
const SERVER_PATHS = /^\/(?:v1|ui|docs|static|openapi\.json|metrics)(?:\/|$)/;

let cleanup = null;
let rendering = 0;

function main() {
  return document.getElementById("main");
}

/** Shows the page of the current address. */
async function show({ focus = false } = {}) {
  const token = ++rendering;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a page's cleanup never stops the next page */
    }
    cleanup = null;
  }
  const path = location.pathname;
  const target = main();
  const query = new URLSearchParams(location.search);
  const match = ROUTES.map(([pattern, nav, render]) => [pattern.exec(path), nav, render]).find(([m]) => m);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (match && link.dataset.nav === match[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!match) {
    document.title = "Not found · Cairn";
    fill(target, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, path), ". ", h("a", { href: "/" }, "See the runs.")));
    return;
  }
  const [m, , render] = match;
  const params = m.slice(1).map((p) => decodeURIComponent(p));
  try {
    const result = await render(target, { params, query, navigate, isCurrent: () => token === rendering });
    if (token !== rendering) {
      if (typeof result === "function") result();
      return;
    }
    cleanup = typeof result === "function" ? result : null;
  } catch (error) {
    if (token === rendering) fill(target, h("h1", {}, "Error"), errorBox(error));
  }
  if (focus && token === rendering) {
    const heading = target.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
}

/** Goes to an address of the dashboard (pushed on the history, or replacing it). */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show({ focus: !replace });
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || SERVER_PATHS.test(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => show({ focus: true }));

// The header's key controls: "Forget key" (sign out: the key leaves this tab's
// session and the page is shown again, so the key dialog asks for another) while
// a key is kept, "Enter key" (after the dialog was cancelled) while none is.
const forget = document.querySelector("[data-testid=key-forget]");
const enter = document.querySelector("[data-testid=key-enter]");
const showKeyControls = (hasKey) => {
  forget.hidden = !hasKey;
  enter.hidden = hasKey;
};
onKeyChange(showKeyControls);
showKeyControls(Boolean(apiKey()));
forget.addEventListener("click", () => {
  forgetKey();
  show({ focus: true });
});
enter.addEventListener("click", async () => {
  try {
    await askForKey();
  } catch {
    return; // cancelled again
  }
  show({ focus: true });
});
show();
