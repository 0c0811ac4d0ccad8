"""Helpers shared by bench/run.py (Cairn's virtualenv) and the peer scripts
(bench/.venv-peers): standard library only, so both can import it.

- percentiles of samples, the most intervals overlapping at once;
- CPU seconds used by a process tree (Linux /proc), to show where time goes;
- the result protocol of a peer script: one line "BENCH_RESULT {json}" on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESULT_MARKER = "BENCH_RESULT "
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, linear between ranks."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99, mean, min, max (milliseconds) of samples given in seconds."""
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": quantile(values, 0.5),
        "p90": quantile(values, 0.9),
        "p99": quantile(values, 0.99),
        "mean": sum(values) / len(values),
        "min": values[0],
        "max": values[-1],
    }


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals (start, end) that were open at the same moment."""
    edges: list[tuple[float, int]] = []
    for start, end in intervals:
        edges.append((start, 1))
        edges.append((end, -1))
    edges.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    best = cur = 0
    for _, delta in edges:
        cur += delta
        best = max(best, cur)
    return best


# ---- CPU accounting -------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _cpu_fields(pid: int) -> float:
    """utime + stime + cutime + cstime of pid, in seconds (0 when gone). cutime and
    cstime hold the children it has reaped, so a tree's total is the sum of this
    over its live members, and exited members are not lost."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    # fields[0] is the state (field 3); utime is field 14 -> index 11
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def tree_cpu_seconds(pid: int | None, children: dict[int, list[int]] | None = None) -> float:
    """CPU seconds used so far by pid and every process below it."""
    if pid is None:
        return 0.0
    children = children if children is not None else _children_map()
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        total += _cpu_fields(p)
        todo.extend(children.get(p, []))
    return total


def cpu_snapshot(pids: dict[str, int | list[int] | None]) -> dict[str, float]:
    """{name: CPU seconds so far} for named process trees (a name may stand for
    several trees, e.g. all the workers); "self" is this process."""
    children = _children_map()
    out: dict[str, float] = {}
    for name, pid in pids.items():
        group = pid if isinstance(pid, list) else [pid]
        out[name] = sum(tree_cpu_seconds(p, children) for p in group if p is not None)
    t = os.times()
    out["bench driver"] = t.user + t.system
    return out


def cpu_delta_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per unit of work, by process name, and "total"."""
    out = {name: (after[name] - before.get(name, 0.0)) * 1000.0 / max(1, count) for name in after}
    out["total"] = sum(out.values())
    return {k: round(v, 3) for k, v in out.items()}


# ---- the peer scripts' protocol -----------------------------------------------------


def emit_result(result: dict[str, Any]) -> None:
    """Prints the result object on one marked line of stdout (logs may precede it)."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The result object a peer script printed, or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return None


def log(msg: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
