"""The output of an invocation: the header line, the table (one row per figure,
Cairn against the peers and the floor) and the notes under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float) and v != v:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, Any, Any, Any, Any]]:
    """(label, unit, cairn, dbos, pgqueuer, floor) per line of the table."""
    c = res.get("cairn", {})
    d = _get(res, "dbos", "workloads") or {}
    q = _get(res, "pgqueuer", "workloads") or {}
    f = res.get("floor", {})
    rows: list[tuple[str, str, Any, Any, Any, Any]] = []

    def add(label: str, unit: str, *path: str, floor: Any = None, peer_path: tuple[str, ...] = ()) -> None:
        pp = peer_path or path
        rows.append((label, unit, _get(c, *path), _get(d, *pp), _get(q, *pp), floor))

    add("a. 1-step runs, one call per run", "runs/s ↑", "a", "runs_per_s")
    add("a. 1-step runs, batched trigger", "runs/s ↑", "a_batch", "runs_per_s")
    add("a. trigger/enqueue rate, one call per run", "calls/s ↑", "a", "trigger_per_s")
    add("a. transactions per run", "xacts ↓", "a", "transactions_per_run")
    add("a. CPU per run, all processes", "ms ↓", "a", "cpu_ms_per_run", "total")
    add("b. 10-step runs", "runs/s ↑", "b", "runs_per_s")
    add("b. 10-step runs: steps", "steps/s ↑", "b", "steps_per_s")
    for p in ("p50", "p90", "p99"):
        add(f"c. trigger-to-start latency {p}", "ms ↓", "c", "start_ms", p)
    add("c. trigger-to-result p50", "ms ↓", "c", "end_to_end_ms", "p50")
    add("d. sequential step overhead", "µs/step ↓", "d", "us_per_step")
    add("e. queue limit 5, 10 ms runs", "runs/s ↑", "e", "runs_per_s")
    add("e. most runs seen running (limit 5)", "runs", "e", "max_running")
    add("f. drain of pre-queued runs", "runs/s ↑", "f", "runs_per_s")
    add("g. start latency p50, full/empty", "ratio ↓", "g", "ratio_start_p50")
    add("g. start latency p99, full/empty", "ratio ↓", "g", "ratio_start_p99")
    add("g. step overhead, full/empty", "ratio ↓", "g", "ratio_us_per_step")
    rows.append(
        ("floor: asyncpg INSERT, 1 connection", "commits/s", None, None, None, _get(f, "asyncpg_1_conn"))
    )
    rows.append(
        ("floor: asyncpg INSERT, 8 connections", "commits/s", None, None, None, _get(f, "asyncpg_8_conns"))
    )
    rows.append(
        ("floor: pgbench INSERT, 8 clients", "commits/s", None, None, None, _get(f, "pgbench_8_clients"))
    )
    return rows


def print_table(res: dict[str, Any]) -> str:
    header = ["workload", "unit", "Cairn", "DBOS", "pgqueuer", "floor", "Cairn/DBOS", "Cairn/pgq"]
    lines = []
    for label, unit, cv, dv, qv, fv in table_rows(res):
        if cv is None and dv is None and qv is None and fv is None:
            continue  # a workload this invocation did not run

        def ratio(a: Any, b: Any) -> str:
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                return f"{a / b:.2f}"
            return "-"

        lines.append([label, unit, _fmt(cv), _fmt(dv), _fmt(qv), _fmt(fv), ratio(cv, dv), ratio(cv, qv)])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]

    def fmt_row(r: list[str]) -> str:
        return "  ".join(
            str(x).ljust(widths[i]) if i < 2 else str(x).rjust(widths[i]) for i, x in enumerate(r)
        )

    out = [fmt_row(header), "  ".join("-" * w for w in widths)]
    out += [fmt_row(r) for r in lines]
    return "\n".join(out)


def print_notes(res: dict[str, Any]) -> str:
    """Where time goes, errors, and how each peer was run."""
    notes = []
    for who in ("cairn", "dbos", "pgqueuer"):
        block = res.get(who)
        if not isinstance(block, dict):
            continue
        wl = block if who == "cairn" else block.get("workloads", {})
        if who != "cairn" and block.get("error"):
            notes.append(f"{who}: ERROR {block['error']}")
        for key in ("a", "b", "e", "f"):
            cpu = _get(wl, key, "cpu_ms_per_run")
            if cpu:
                parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "total" and v)
                notes.append(
                    f"{who} {key}: CPU ms per run {cpu['total']:.2f} ({parts}); "
                    f"{_get(wl, key, 'transactions_per_run')} transactions, "
                    f"{_get(wl, key, 'wal_bytes_per_run')} WAL bytes per run"
                )
        for key in ("a", "a_batch", "b", "d", "e", "f"):
            top = _get(wl, key, "top_statements")
            if top:
                notes.append(f"{who} {key}: statements by PostgreSQL time (pg_stat_statements)")
                notes += [
                    f"    {t['total_ms']:>9,.0f} ms {t['calls']:>7,} calls "
                    f"{t['mean_ms']:>7.3f} ms/call  {t['query'][:110]}"
                    for t in top[:6]
                ]
        for key, value in (wl or {}).items():
            if isinstance(value, dict) and value.get("error"):
                notes.append(f"{who} {key}: ERROR {value['error']}")
            if isinstance(value, dict) and value.get("incomplete"):
                notes.append(f"{who} {key}: INCOMPLETE {value['incomplete']}")
        if who != "cairn" and block.get("settings"):
            notes.append(f"{who}: {block['settings']}")
    if isinstance(res.get("floor"), dict):
        for key in ("error",):
            if res["floor"].get(key):
                notes.append(f"floor: {res['floor'][key]}")
    return "\n".join(notes)


def _grid(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]

    def fmt_row(r: list[str]) -> str:
        return "  ".join(
            str(x).ljust(widths[i]) if i < 2 else str(x).rjust(widths[i]) for i, x in enumerate(r)
        )

    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths), *(fmt_row(r) for r in lines)])


def _each(values: list[Any]) -> str:
    return ", ".join(_fmt(v) for v in values)


def print_watchers(w: dict[str, Any]) -> str:
    """Workload w: each compared figure without and with watchers, every round's value,
    the medians and with/without."""
    n = w["watchers"]
    lines = [
        [
            c["figure"],
            c["unit"] + (" ↑" if c["higher_is_better"] else " ↓"),
            _each(c["without"]),
            _each(c["with"]),
            _fmt(c["median_without"]),
            _fmt(c["median_with"]),
            f"{c['ratio']:.3f}" if c["ratio"] is not None else "-",
        ]
        for c in w["compared"]
    ]
    out = [
        f"w. {n} watchers ({w['via']}) against none, {w['steps_per_run']}-step runs"
        + (f" ({w['step_gap_ms']:g} ms before each step)" if w.get("step_gap_ms") else "")
        + f", {w['rounds']} round(s): {w['how']}",
        _grid(
            [
                "figure",
                "unit",
                "0 watchers (each)",
                f"{n} watchers (each)",
                "median 0",
                f"median {n}",
                "ratio",
            ],
            lines,
        ),
    ]
    for r in w["per_round"]:
        if r["watchers"]:
            one, flight = r["parts"]["one"], r["parts"]["flight"]
            out.append(
                f"round {r['round']}: watchers saw {one['watcher_updates']:,} + {flight['watcher_updates']:,} "
                f"updates; step event to watcher p50 {_fmt(_get(one, 'watcher_lag_ms', 'p50'))} / p99 "
                f"{_fmt(_get(one, 'watcher_lag_ms', 'p99'))} ms (one run), p50 "
                f"{_fmt(_get(flight, 'watcher_lag_ms', 'p50'))} / p99 "
                f"{_fmt(_get(flight, 'watcher_lag_ms', 'p99'))} ms (in flight)"
            )
    for r in w["per_round"]:
        for part, name in (("one", "one run"), ("flight", "in flight")):
            cpu = _get(r, "parts", part, "cpu_ms_per_run")
            if cpu:
                parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "total" and v)
                out.append(
                    f"round {r['round']}, {r['watchers']} watchers, {name}: CPU ms per run "
                    f"{cpu['total']:.2f} ({parts})"
                )
    return "\n".join(out)


def print_trees(t: dict[str, Any]) -> str:
    """--baseline-tree: each figure on both checkouts, every turn's value, the medians
    and the change of the tree's median from the baseline's."""
    tree, base = t["trees"]["tree"], t["trees"]["baseline"]
    lines = [
        [
            c["figure"],
            c["unit"],
            _each(c["baseline"]),
            _each(c["tree"]),
            _fmt(c["median_baseline"]),
            _fmt(c["median_tree"]),
            f"{c['change']:+.1%}" if c["change"] is not None else "-",
        ]
        for c in t["compared"]
    ]
    rounds = max((turn["round"] for turn in t["turns"]), default=0)
    errors = [
        f"round {turn['round']} {turn['tree']} {key}: {v.get('error') or v.get('incomplete')}"
        for turn in t["turns"]
        for key, v in turn["cairn"].items()
        if isinstance(v, dict) and (v.get("error") or v.get("incomplete"))
    ]
    return "\n".join(
        [
            f"tree {tree['commit']} ({tree['path']}) against baseline {base['commit']} ({base['path']}), "
            f"{rounds} round(s), alternating (A B, B A, ...), a fresh cluster per turn",
            _grid(
                ["figure", "unit", "baseline (each)", "tree (each)", "median base", "median tree", "change"],
                lines,
            ),
            *errors,
        ]
    )


def print_report(results: dict[str, Any], out_path: Path, quick: bool, workers: int, slots: int) -> None:
    """Prints the header, the peers' versions, the table, the notes and where the JSON is."""
    m = results.get("machine", {})
    print()
    print(
        f"Cairn benchmark{' (--quick: every N / 10)' if quick else ''}: "
        f"{m.get('nproc')} CPUs, {m.get('cpu_model')}, {m.get('memory')}; Python "
        f"{m.get('python')}; PostgreSQL {m.get('postgresql')} "
        f"(fsync={_get(m, 'postgresql_settings', 'fsync')}, synchronous_commit="
        f"{_get(m, 'postgresql_settings', 'synchronous_commit')}); Cairn "
        f"{_get(results, 'tree', 'commit') or m.get('cairn_commit')}; "
        f"{workers} worker(s) x {slots} slots"
    )
    versions = {who: _get(results, who, "versions") for who in ("dbos", "pgqueuer")}
    if any(versions.values()):
        print("peers: " + "; ".join(f"{k} {v}" for k, v in versions.items() if v))
    print()
    if isinstance(results.get("trees"), dict):
        print(print_trees(results["trees"]))
        print()
    if any(v is not None for row in table_rows(results) for v in row[2:]):
        print(print_table(results))
    w = _get(results, "cairn", "w")
    if isinstance(w, dict) and "compared" in w:
        print()
        print(print_watchers(w))
    notes = print_notes(results)
    if notes:
        print()
        print(notes)
    print()
    print(f"results: {out_path}")
