"""What the CLI prints: resources in their JSON shape (cairn.run_json), as one
JSON object per line with --json, otherwise as short summaries and tables."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cairn.run_json import (
    LogLineJSON,
    QueueJSON,
    RateLimitJSON,
    RunJSON,
    RunSummaryJSON,
    RunUpdateJSON,
    ScheduleJSON,
    StepJSON,
    TokenJSON,
    WaitJSON,
    WorkerJSON,
)


def format_duration(seconds: float) -> str:
    """Seconds as a short duration parse_duration reads back: 1s, 500ms, 1m30s, 2h, 1d."""
    if seconds <= 0:
        return "0s"
    if seconds < 1 or not float(seconds).is_integer():
        if seconds < 1 and (seconds * 1000).is_integer():
            return f"{int(seconds * 1000)}ms"
        return f"{seconds:g}s"
    left, out = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            out += f"{left // size}{unit}"
            left %= size
    return out


def print_json(value: Mapping[str, Any]) -> None:
    """One JSON object on one line."""
    print(json.dumps(value))


def update_line(update: RunUpdateJSON) -> str:
    """One change of a watched run as one line: time of day, event type, attempt,
    the run's status after it, and what the event names (a step, a wait kind, an
    error type)."""
    event, run = update["event"], update["run"]
    details = event["details"] if isinstance(event["details"], dict) else {}
    if event["type"] == "log":
        named = [details.get("level"), details.get("step_name"), details.get("message")]
    elif event["type"] == "stream":
        value = details.get("value", details.get("data_base64"))
        named = [f"{details.get('stream')}:", value if isinstance(value, str) else short(value)]
    else:
        named = [details.get(k) for k in ("name", "kind", "error_type")]
    what = " ".join(short(v, 200) for v in named if isinstance(v, str) and v)
    attempt = f"attempt {event['attempt']}" if event["attempt"] else "-"
    fields = [clock(event["at"]) or "-", event["type"], attempt, run["status"]]
    return "  ".join([*fields, what]).rstrip()


def show_update(update: RunUpdateJSON, as_json: bool) -> None:
    """A watched run's change: its line, or its JSON object on one line; flushed
    at once so a pipe sees each change as it happens."""
    print(json.dumps(update) if as_json else update_line(update), flush=True)


def show_log_line(line: LogLineJSON, as_json: bool) -> None:
    """One stored log line: time, level, attempt, step, message and fields; or
    its JSON object on one line. Flushed at once, for --follow."""
    if as_json:
        print(json.dumps(line), flush=True)
        return
    where = f"step {line['step_name']}" if line["step_name"] else "-"
    fields = f"  {json.dumps(line['fields'])}" if line["fields"] else ""
    head = f"{clock(line['at']) or '-'}  {line['level']:<8} attempt {line['attempt']}  {where}  "
    print(f"{head}{line['message']}{fields}", flush=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing spaces."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]
    )


def short(value: Any, limit: int = 60) -> str:
    """A value as text (JSON unless it is a string), cut to limit characters."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wait_text(wait: WaitJSON) -> str:
    """What a waiting run waits for, in a few words."""
    kind = wait.get("kind") or "?"
    if kind == "event":
        what = f"for event {wait.get('event_name')!r}"
        if wait.get("event_key"):
            what += f" key {wait['event_key']!r}"
    elif kind == "token":
        what = f"for token {wait.get('token_id')}"
    elif kind == "children":
        what = f"for child run(s) {', '.join(wait.get('child_run_ids') or [])}"
    elif kind == "sleep":
        what = "sleeping"
    else:
        what = kind
    until = wait.get("until")
    if until:
        what += f" until {until}" if kind == "sleep" else f" (times out at {until})"
    return f"{what} at step {wait.get('position')}"


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def span(seconds: float) -> str:
    """A length of time in brief: 340ms, 2.45s, 1m05s, 2h3m (never negative)."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return format_duration(whole - whole % 60)


def between(start: str | None, end: str | None) -> str:
    """The span between two of the JSON shape's times, or "" when one is missing."""
    a, b = _when(start), _when(end)
    return span((b - a).total_seconds()) if a and b else ""


def clock(iso: str | None) -> str:
    """A JSON-shape time as its time of day, to the millisecond (12:01:02.345)."""
    return iso[11:23] if iso and len(iso) >= 23 else iso or ""


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 160))


def wrapped(label: str, text: str, indent: int = 9) -> str:
    """label, then text whole, wrapped to the terminal's width; its own line
    breaks are kept and continuation lines are indented under the text."""
    pad = " " * indent
    lines: list[str] = []
    for n, line in enumerate(text.splitlines() or [""]):
        first = f"{label:<{indent - 1}} " if n == 0 else pad
        lines.append(
            textwrap.fill(line, width=_width(), initial_indent=first, subsequent_indent=pad)
            if line.strip()
            else first.rstrip()
        )
    return "\n".join(lines)


def error_text(error: Mapping[str, Any]) -> str:
    """An error whole: "Type: message"."""
    return f"{error['type']}: {error['message']}" if error.get("message") else str(error["type"])


def _step_times(run: RunJSON) -> dict[int, str]:
    """How long each step took, by position: from the previous record of the same
    attempt (or the attempt's start) to its own record; steps carry no start time."""
    started = {a["number"]: a["started_at"] for a in run["attempts"]}
    by_attempt: dict[int, list[StepJSON]] = {}
    for s in run["steps"]:
        if s["recorded_at"]:
            by_attempt.setdefault(s["attempt"], []).append(s)
    took: dict[int, str] = {}
    for number, steps in by_attempt.items():
        previous = started.get(number)
        for s in sorted(steps, key=lambda s: s["recorded_at"] or ""):
            took[s["position"]] = between(previous, s["recorded_at"])
            previous = s["recorded_at"]
    return took


def show_run(run: RunJSON, as_json: bool, full: bool, traces: bool = False) -> None:
    """One run: JSON, or a summary with its times; when full, its attempts and
    steps as tables and every error whole (with its stack trace when traces)."""
    if as_json:
        print_json(run)
        return
    print(f"run      {run['id']}")
    print(f"task     {run['task']}   status {run['status']}   attempts {run['attempt_count']}")
    if run.get("created_at"):
        print(f"created  {run['created_at']}")
    if run.get("started_at"):
        print(
            f"started  {run['started_at']}   ({between(run['created_at'], run['started_at'])} after created)"
        )
    if run.get("finished_at"):
        ran = between(run.get("started_at") or run["created_at"], run["finished_at"])
        print(f"finished {run['finished_at']}   (took {ran})")
    elif run.get("next_attempt_at") and run["status"] in ("retrying", "delayed"):
        print(f"next     {run['next_attempt_at']}")
    if run["output"] is not None:
        print(f"output   {short(run['output'], 200)}")
    if run["error"]:
        print(wrapped("error", error_text(run["error"])))
    wait = run.get("wait")
    if wait:
        print(f"waiting  {wait_text(wait)}")
    if run.get("parent_run_id"):
        print(f"parent   {run['parent_run_id']}")
    if run.get("child_run_ids"):
        print(f"children {', '.join(run['child_run_ids'])}")
    if run.get("concurrency_key"):
        print(f"key      {run['concurrency_key']}   (queue {run.get('queue') or '?'})")
    if run.get("tags"):
        print(f"tags     {', '.join(run['tags'])}")
    if run.get("metadata"):
        print(f"metadata {short(run['metadata'], 200)}")
    if not full:
        return
    if run.get("attempts"):
        print("\nattempts")
        print(
            table(
                ["#", "STATUS", "WORKER", "VERSION", "STARTED", "TOOK", "ERROR", "RETRY IN"],
                [
                    [
                        str(a["number"]),
                        a["status"],
                        a["worker_id"],
                        a["worker_version"],
                        clock(a["started_at"]),
                        between(a["started_at"], a["finished_at"]),
                        a["error"]["type"] if a["error"] else "",
                        f"{a['retry_delay']:.2f}s" if a["retry_delay"] is not None else "",
                    ]
                    for a in run["attempts"]
                ],
            )
        )
    if run.get("steps"):
        took = _step_times(run)
        print("\nsteps")
        print(
            table(
                ["#", "NAME", "STATUS", "ATTEMPT", "TRIES", "RECORDED", "TOOK", "RESULT"],
                [
                    [
                        str(s["position"]),
                        s["name"],
                        s["status"],
                        str(s["attempt"]),
                        tries_text(s),
                        clock(s["recorded_at"]),
                        took.get(s["position"], ""),
                        short(s["output"]) if s["status"] == "completed" else _step_error(s["error"]),
                    ]
                    for s in run["steps"]
                ],
            )
        )
    _show_errors(run, traces)


def _show_errors(run: RunJSON, traces: bool) -> None:
    """Every error of the run's attempts and steps, whole, under "errors"."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for a in run.get("attempts") or []:
        if a["error"]:
            found.append((f"attempt {a['number']}", a["error"]))
    for s in run.get("steps") or []:
        errors = list(s.get("try_errors") or [])
        first_try = s["tries"] - len(errors)  # the errors are of the tries before the last
        for n, try_error in enumerate(errors):
            found.append((f"step {s['position']} {s['name']}, try {first_try + n}", try_error))
        if s["error"]:
            found.append((f"step {s['position']} {s['name']}, try {s['tries']}", s["error"]))
    if not found:
        return
    print("\nerrors" + ("" if traces else f" (with stack traces: cairn runs get {run['id']} --full)"))
    for where, e in found:
        print(wrapped(f"  {where}:", error_text(e), indent=4 + len(where)))
        if traces and e.get("stack_trace"):
            print(textwrap.indent(e["stack_trace"].rstrip("\n"), "      "))


def tries_text(step: StepJSON) -> str:
    """A step's tries, with the errors of its failed in-place tries in brief:
    "3 (2 errors, last TimeoutError)" (all of them are in --json's try_errors)."""
    tries = str(step["tries"])
    errors = step.get("try_errors") or []
    if not errors:
        return tries
    return f"{tries} ({len(errors)} error{'s' if len(errors) > 1 else ''}, last {errors[-1]['type']})"


def _step_error(error: Mapping[str, Any] | None) -> str:
    return f"{error['type']} (see errors)" if error else ""


def show_runs(runs: Sequence[RunSummaryJSON], as_json: bool) -> None:
    """Runs one JSON object per line, or as a table."""
    if as_json:
        for r in runs:
            print_json(r)
        return
    print(
        table(
            ["ID", "TASK", "STATUS", "ATTEMPTS", "CREATED", "TOOK"],
            [
                [
                    r["id"],
                    r["task"],
                    r["status"],
                    str(r["attempt_count"]),
                    r["created_at"] or "",
                    between(r["started_at"] or r["created_at"], r["finished_at"]),
                ]
                for r in runs
            ],
        )
    )


def show_token(token: TokenJSON, as_json: bool) -> None:
    """A wait token: JSON, or its fields one per line."""
    if as_json:
        print_json(token)
        return
    print(f"token    {token['id']}")
    print(f"status   {token['status']}")
    labels: Iterable[tuple[str, str | None]] = [
        ("run", token["run_id"]),
        ("created", token["created_at"]),
        ("timeout", token["timeout_at"]),
        ("done", token["completed_at"]),
    ]
    for label, value in labels:
        if value:
            print(f"{label:<8} {value}")
    if token["status"] == "completed":
        print(f"payload  {short(token['payload'], 200)}")


def show_schedule(sch: ScheduleJSON, as_json: bool) -> None:
    """A schedule: JSON, or a summary with its next and last firing."""
    if as_json:
        print_json(sch)
        return
    print(
        f"schedule {sch['id']}   task {sch['task']}   cron {sch['cron']} ({sch['timezone']})"
        f"{'   paused' if sch['paused'] else ''}"
    )
    if sch["next_fire_at"]:
        print(f"next     {sch['next_fire_at']}")
    if sch["last_run_id"]:
        print(f"last run {sch['last_run_id']} at {sch['last_fired_at'] or '?'}")


def show_schedules(schedules: list[ScheduleJSON], as_json: bool) -> None:
    """Schedules one JSON object per line, or as a table."""
    if as_json:
        for sch in schedules:
            print_json(sch)
        return
    print(
        table(
            ["ID", "TASK", "CRON", "TZ", "PAUSED", "NEXT", "LAST_RUN"],
            [
                [
                    sch["id"],
                    sch["task"],
                    sch["cron"],
                    sch["timezone"],
                    "yes" if sch["paused"] else "no",
                    sch["next_fire_at"] or "",
                    sch["last_run_id"] or "",
                ]
                for sch in schedules
            ],
        )
    )


def rate_text(rate: RateLimitJSON | None) -> str:
    """A rate limit as N/PERIOD (what `--rate` reads back), or "-" for none."""
    return f"{rate['limit']}/{format_duration(rate['period'])}" if rate else "-"


def show_queue(q: QueueJSON, as_json: bool) -> None:
    """A queue: JSON, or its settings, depth and running runs."""
    if as_json:
        print_json(q)
        return
    print(f"queue    {q['name']}{'   paused' if q['paused'] else ''}")
    print(
        f"limit    {q['concurrency_limit'] or '-'}   rate {rate_text(q['rate_limit'])}   "
        f"max depth {q['max_depth'] or '-'}"
    )
    print(f"depth    {q['depth']}   running {q['running']}")


def show_queues(queues: list[QueueJSON], as_json: bool) -> None:
    """Queues one JSON object per line, or as a table."""
    if as_json:
        for q in queues:
            print_json(q)
        return
    print(
        table(
            ["NAME", "LIMIT", "RATE", "MAX_DEPTH", "PAUSED", "DEPTH", "RUNNING"],
            [
                [
                    q["name"],
                    str(q["concurrency_limit"] or "-"),
                    rate_text(q["rate_limit"]),
                    str(q["max_depth"] or "-"),
                    "yes" if q["paused"] else "no",
                    str(q["depth"]),
                    str(q["running"]),
                ]
                for q in queues
            ],
        )
    )


def show_workers(workers: list[WorkerJSON], as_json: bool) -> None:
    """Workers one JSON object per line, or as a table."""
    if as_json:
        for w in workers:
            print_json(w)
        return
    print(
        table(
            ["WORKER", "VERSION", "SLOTS", "RUNNING", "CONNECTED", "LAST_SEEN", "TASKS"],
            [
                [
                    w["worker_id"],
                    w["version"] or "-",
                    str(w["slots"]),
                    str(w["running"]),
                    "yes" if w["connected"] else "no",
                    w["last_seen_at"] or "-",
                    ", ".join(w["task_ids"]),
                ]
                for w in workers
            ],
        )
    )


def no_worker_hint(task: str, workers: list[WorkerJSON]) -> str | None:
    """One line when no connected worker serves the task (a queued run waits for
    one), else None."""
    if any(w["connected"] and task in w["task_ids"] for w in workers):
        return None
    return f"no connected worker serves task {task}; start one: cairn worker MODULE"
