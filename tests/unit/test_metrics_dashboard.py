"""deploy/grafana/cairn.json: valid JSON, and every query names only metrics the
services export (services/common/metrics.py), so a renamed metric cannot leave
an empty panel behind."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from services.common.metrics import METRIC_NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "cairn.json"
# A histogram's or counter's series, named from its metric.
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def _metric(series: str) -> str:
    for suffix in SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in METRIC_NAMES:
            return series[: -len(suffix)]
    return series


def test_dashboard_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard["panels"])
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        names = re.findall(r"\bcairn_[a-z_]+", expr)
        assert names, f"a query that names no cairn metric: {expr}"
        for series in names:
            assert _metric(series) in METRIC_NAMES, (
                f"{series} in {expr!r} is not a metric the services export"
            )
            used.add(_metric(series))
    assert used == METRIC_NAMES, f"metrics no panel shows: {sorted(METRIC_NAMES - used)}"


def test_panels_have_unique_ids_and_titles() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["title"] and p["targets"] for p in panels)
