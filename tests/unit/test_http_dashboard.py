"""The dashboard's serving (services/frontend/http/dashboard.py, docs/dashboard.md):
every page address answers index.html with its headers, the files are under /ui/,
every module a page imports is there and packaged, nothing is inline or fetched
from elsewhere (the Content-Security-Policy allows only 'self'), and the OpenAPI
document does not list the pages."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from services.frontend.http import dashboard, openapi

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "/",
    "/runs",
    "/runs/0b1e6f4e-0000-4000-8000-000000000000",
    "/queues",
    "/queues/emails",
    "/workers",
    "/schedules",
]


class Http:
    """GET on the dashboard's routes alone, in process."""

    def __init__(self) -> None:
        self.app = Starlette(routes=dashboard.routes())

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
                return await client.get(path)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def http() -> Http:
    return Http()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_address_answers_the_index(http: Http, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'self'" in csp
    assert '<script type="module" src="/ui/app.js">' in response.text


def test_the_files_are_under_ui(http: Http) -> None:
    js = http.get("/ui/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert http.get("/ui/style.css").headers["content-type"].startswith("text/css")
    assert http.get("/ui/nothing.js").status_code == 404


def test_every_imported_module_is_there_and_nothing_comes_from_elsewhere() -> None:
    files = {p.name for p in dashboard.DASHBOARD.iterdir()}
    for path in dashboard.DASHBOARD.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r'^\s*(?:import|export)\b[^;]*?from\s+"\./([\w.-]+)"', text, re.MULTILINE):
            assert name in files, f"{path.name} imports ./{name}, which is missing"
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text), f"{path.name} names another host"
        assert "innerHTML" not in text, f"{path.name}: build nodes with h(), never HTML from data"


def test_the_index_has_nothing_inline() -> None:
    html = dashboard.INDEX.read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert " style=" not in html and "<style" not in html, "an inline style"
    assert not re.search(r"\son\w+=", html), "an inline event handler"


def test_the_package_data_covers_every_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["services.frontend.http"]
    assert "dashboard/*" in globs
    assert all(p.is_file() for p in dashboard.DASHBOARD.iterdir()), "a subfolder needs its own glob"


def test_the_openapi_document_leaves_the_pages_out() -> None:
    paths = openapi.document()["paths"]
    assert all(p.startswith("/v1/") for p in paths), sorted(paths)
