"""The dashboard's routes (docs/dashboard.md): its static files under /ui/
(HTML, CSS and ES modules in dashboard/, no build step), and index.html for
every page address (/, /runs, /runs/{run_id}, /queues, /queues/{name},
/workers, /schedules), whose module (app.js) reads the address and renders the
page from the JSON API. None of these routes is in the OpenAPI document: that
is made from the API's routing table (routes.py) only.

Every answer forbids anything but this origin (Content-Security-Policy: no
inline script or style, no other host), and index.html is revalidated on
each load (Cache-Control: no-cache) so a new version of the files is seen."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

DASHBOARD = Path(__file__).parent / "dashboard"
INDEX = DASHBOARD / "index.html"
PAGES = ["/", "/runs", "/runs/{run_id}", "/queues", "/queues/{name}", "/workers", "/schedules"]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class _Files(StaticFiles):
    """The dashboard's files, each with the headers above (revalidated by ETag)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        return response


async def index(request: Request) -> Response:
    """Every page address answers the one page; app.js renders what the address names."""
    return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=HEADERS)


def routes() -> list[BaseRoute]:
    """The dashboard's routes, to add after the API's."""
    pages: list[BaseRoute] = [Route(path, index, methods=["GET", "HEAD"]) for path in PAGES]
    return [*pages, Mount("/ui", _Files(directory=DASHBOARD), name="ui")]
