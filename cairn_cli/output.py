"""What the CLI prints: resources in their JSON shape (cairn.run_json), as one
JSON object per line with --json, otherwise as short summaries and tables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cairn.run_json import QueueJSON, RateLimitJSON, RunJSON, ScheduleJSON, StepJSON, TokenJSON, WaitJSON
from cairn_cli.args import format_duration


def print_json(value: Mapping[str, Any]) -> None:
    """One JSON object on one line."""
    print(json.dumps(value))


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


def show_run(run: RunJSON, as_json: bool, full: bool) -> None:
    """One run: JSON, or a summary, with its attempts and steps as tables when full."""
    if as_json:
        print_json(run)
        return
    print(f"run      {run['id']}")
    print(f"task     {run['task']}   status {run['status']}   attempts {run['attempt_count']}")
    if run["output"] is not None:
        print(f"output   {short(run['output'], 200)}")
    if run["error"]:
        print(f"error    {run['error']['type']}: {run['error']['message']}")
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
    if run["attempts"]:
        print("\nattempts")
        print(
            table(
                ["#", "STATUS", "WORKER", "VERSION", "ERROR", "RETRY IN"],
                [
                    [
                        str(a["number"]),
                        a["status"],
                        a["worker_id"],
                        a["worker_version"],
                        short(f"{a['error']['type']}: {a['error']['message']}") if a["error"] else "",
                        f"{a['retry_delay']:.2f}s" if a["retry_delay"] is not None else "",
                    ]
                    for a in run["attempts"]
                ],
            )
        )
    if run["steps"]:
        print("\nsteps")
        print(
            table(
                ["#", "NAME", "STATUS", "ATTEMPT", "TRIES", "RESULT"],
                [
                    [
                        str(s["position"]),
                        s["name"],
                        s["status"],
                        str(s["attempt"]),
                        tries_text(s),
                        short(s["output"]) if s["status"] == "completed" else _step_error(s["error"]),
                    ]
                    for s in run["steps"]
                ],
            )
        )


def tries_text(step: StepJSON) -> str:
    """A step's tries, with the errors of its failed in-place tries in brief:
    "3 (2 errors, last TimeoutError)" (all of them are in --json's try_errors)."""
    tries = str(step["tries"])
    errors = step.get("try_errors") or []
    if not errors:
        return tries
    return f"{tries} ({len(errors)} error{'s' if len(errors) > 1 else ''}, last {errors[-1]['type']})"


def _step_error(error: Mapping[str, Any] | None) -> str:
    return short(f"{error['type']}: {error['message']}") if error else ""


def show_runs(runs: list[RunJSON], as_json: bool) -> None:
    """Runs one JSON object per line, or as a table."""
    if as_json:
        for r in runs:
            print_json(r)
        return
    print(
        table(
            ["ID", "TASK", "STATUS", "ATTEMPTS", "CREATED"],
            [[r["id"], r["task"], r["status"], str(r["attempt_count"]), r["created_at"] or ""] for r in runs],
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
