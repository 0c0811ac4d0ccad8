"""--baseline-tree: the same Cairn workloads on two checkouts, alternating, in one
invocation (A B, B A, A B, ... --rounds times each), on the one PostgreSQL and NATS,
each checkout on its own database (their migrations may differ) and a fresh
cluster per turn; then each figure of each turn, the medians and the difference.

A checkout is a directory with this repository's layout (a `git worktree add` of
another commit): its services, SDK and bench/tasks.py run on this .venv's Python
and packages, so its dependencies must be the ones installed here. The driver
(this bench, the client it triggers with) is this checkout's."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from pathlib import Path
from typing import Any

from bench.cairn_driver import run_cairn
from bench.common import log, quantile
from bench.processes import Servers
from bench.report import table_rows

DATABASES = {"tree": "cairn_bench", "baseline": "cairn_base"}


def commit_of(tree: Path) -> str:
    """The short commit of a checkout, "(modified)" when its code has changes."""
    run = ["git", "-C", str(tree)]
    commit = subprocess.run([*run, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*run, "status", "--porcelain", "--", "services", "worker_sdk", "cairn", "cairn_cli"],
        capture_output=True,
        text=True,
    )
    return commit.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def run_trees(
    args: argparse.Namespace,
    servers: Servers,
    urls: dict[str, str],
    logs: Path,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """Runs the workloads on args.tree and args.baseline_tree alternately."""
    trees = {"tree": Path(args.tree).resolve(), "baseline": Path(args.baseline_tree).resolve()}
    out: dict[str, Any] = {
        "trees": {name: {"path": str(p), "commit": commit_of(p)} for name, p in trees.items()},
        "turns": [],
    }
    for r in range(args.rounds):
        order = ("tree", "baseline") if r % 2 == 0 else ("baseline", "tree")
        for name in order:
            log(f"round {r + 1} of {args.rounds}: {name} ({out['trees'][name]['commit']})")
            res: dict[str, Any] = {}
            asyncio.run(
                run_cairn(
                    args,
                    servers,
                    urls,
                    logs / f"{r + 1}-{name}",
                    sizes,
                    res,
                    tree=trees[name],
                    database=DATABASES[name],
                )
            )
            out["turns"].append({"round": r + 1, "tree": name, "cairn": res})
    out["compared"] = compare(out["turns"])
    return out


def _figures(res: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """The table's figures, and CPU per run (a) and per step (d) by process."""
    rows = [(label, unit, value) for label, unit, value, *_ in table_rows({"cairn": res})]
    for key, per, unit in (("a", "cpu_ms_per_run", "ms/run ↓"), ("d", "cpu_ms_per_step", "ms/step ↓")):
        for proc, ms in (res.get(key, {}).get(per) or {}).items():
            if proc != "total" or key == "d":
                rows.append((f"{key}. CPU {proc}", unit, ms))
    return rows


def compare(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per figure of the benchmark's table: each turn's value on each tree, the
    medians, and the difference of the tree's median from the baseline's."""
    values: dict[str, dict[str, list[float]]] = {}
    units: dict[str, str] = {}
    for turn in turns:
        for label, unit, value in _figures(turn["cairn"]):
            if isinstance(value, (int, float)):
                units[label] = unit
                values.setdefault(label, {"tree": [], "baseline": []})[turn["tree"]].append(value)
    out = []
    for label, by_tree in values.items():
        mt = quantile(sorted(by_tree["tree"]), 0.5)
        mb = quantile(sorted(by_tree["baseline"]), 0.5)
        out.append(
            {
                "figure": label,
                "unit": units[label],
                "baseline": by_tree["baseline"],
                "tree": by_tree["tree"],
                "median_baseline": mb,
                "median_tree": mt,
                "change": round(mt / mb - 1, 4) if by_tree["tree"] and by_tree["baseline"] and mb else None,
            }
        )
    return out
