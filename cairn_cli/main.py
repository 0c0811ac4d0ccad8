"""The `cairn` command: run the services (`dev`, `frontend`, `matching`,
`history`), serve tasks (`worker`), trigger, inspect and cancel runs, send
events, complete wait tokens and manage schedules and queues."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Any

from cairn.statuses import RUN_STATUS_BY_NAME

ADDRESS_HELP = (
    "frontend host:port, a comma-separated list of them, or a gRPC target such "
    "as dns:///cairn.internal:7373 (CAIRN_ADDRESS, default 127.0.0.1:7373)"
)
DURATION_HELP = "e.g. 30s, 5m, 2h, 1d, 1h30m or plain seconds"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """A duration as seconds: "30s", "5m", "2h", "1d", "500ms", compounds such as
    "1h30m", or plain (possibly fractional) seconds. ValueError otherwise."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise ValueError(f"invalid duration {text!r}: use {DURATION_HELP}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {text!r}: it must be a finite, non-negative length of time")
    return seconds


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def parse_rate(text: str) -> tuple[int, float]:
    """A rate limit "N/PERIOD" as (N, seconds): "10/1s", "100/m" (a period without a
    number means one unit), "5/30s"; "0" or "off" removes the rate limit, (0, 0)."""
    raw = text.strip().lower()
    if raw in ("0", "off", "none"):
        return 0, 0.0
    count, slash, period = raw.partition("/")
    if not slash or not count.strip().isdigit():
        raise ValueError(
            f"invalid rate {text!r}: use N/PERIOD, e.g. 10/1s or 100/1m (0 or off removes the rate limit)"
        )
    period = period.strip()
    if period[:1].isalpha():
        period = "1" + period
    seconds = parse_duration(period)
    limit = int(count)
    if limit and seconds <= 0:
        raise ValueError(f"invalid rate {text!r}: the period must be longer than 0")
    return limit, seconds


def _rate_arg(text: str) -> tuple[int, float]:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _json_object_arg(text: str) -> dict[str, Any]:
    value = _json_arg(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line on one line, naming the flag, with exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _client_args(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--namespace", default=None, help="namespace (CAIRN_NAMESPACE, default 'default')")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON objects instead of tables")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cairn", description="Durable execution for Python.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in [
        ("dev", "start PostgreSQL, NATS and the three services on this machine"),
        ("frontend", "run the public frontend service"),
        ("matching", "run the matching service"),
        ("history", "run the history service"),
    ]:
        sub.add_parser(name, help=text, add_help=False)

    w = sub.add_parser("worker", help="serve the tasks of a Python module")
    w.add_argument("module", help="dotted module name, e.g. examples.hello")
    w.add_argument("--slots", type=int, default=4, help="attempts run at once (default 4)")
    w.add_argument("--version", default=None, help="worker version (CAIRN_WORKER_VERSION, default 'dev')")
    w.add_argument(
        "--queue", action="append", default=None, help="serve only the tasks on this queue (repeatable)"
    )
    _client_args(w, json_flag=False)

    t = sub.add_parser("trigger", help="trigger a run of a task")
    t.add_argument("task", help="task id")
    t.add_argument("--payload", default="null", help="the payload as JSON (default null)")
    t.add_argument(
        "--idempotency-key", default="", help="a second trigger with this key returns the first run"
    )
    t.add_argument("--wait", action="store_true", help="wait until the run finishes and show it")
    t.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    t.add_argument(
        "--delay",
        type=_duration_arg,
        default=None,
        help=f"start no earlier than this from now ({DURATION_HELP})",
    )
    t.add_argument(
        "--ttl", type=_duration_arg, default=None, help="expire the run if it has not started within this"
    )
    t.add_argument(
        "--max-duration",
        type=_duration_arg,
        default=None,
        help="time out the run after this much execution time",
    )
    t.add_argument("--priority", type=int, default=None, help="higher runs are dispatched first")
    t.add_argument("--tag", action="append", default=None, help="a tag for the run (repeatable)")
    t.add_argument(
        "--metadata", type=_json_object_arg, default=None, help="the run's metadata, a JSON object"
    )
    t.add_argument(
        "--concurrency-key",
        default=None,
        help="the queue's concurrency and rate limits apply per key, e.g. a tenant",
    )
    _client_args(t)

    runs = sub.add_parser("runs", help="list runs or show one").add_subparsers(
        dest="runs_command", required=True, metavar="SUBCOMMAND"
    )
    ls = runs.add_parser("list", help="list runs, newest first")
    ls.add_argument("--task", default=None, help="only runs of this task")
    ls.add_argument("--status", action="append", default=None, help="only runs in this status (repeatable)")
    ls.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    ls.add_argument("--tag", default=None, help="only runs carrying this tag")
    ls.add_argument("--parent", default=None, help="only child runs of this run id")
    _client_args(ls)
    get = runs.add_parser("get", help="show one run with its attempts and steps")
    get.add_argument("run_id")
    _client_args(get)

    c = sub.add_parser("cancel", help="cancel an unfinished run")
    c.add_argument("run_id")
    c.add_argument("--reason", default="", help="recorded on the run")
    _client_args(c)

    events = sub.add_parser("events", help="send events to waiting runs").add_subparsers(
        dest="events_command", required=True, metavar="SUBCOMMAND"
    )
    send = events.add_parser(
        "send", help="send an event: to one run, or to every run waiting for its name and key"
    )
    send.add_argument("name", help="the event's name")
    send.add_argument("--run", default=None, help="deliver to this run (kept until it waits)")
    send.add_argument("--key", default=None, help="the event's key")
    send.add_argument("--payload", type=_json_arg, default=None, help="the payload as JSON")
    _client_args(send)

    tokens = sub.add_parser("tokens", help="create, complete and read wait tokens").add_subparsers(
        dest="tokens_command", required=True, metavar="SUBCOMMAND"
    )
    tc = tokens.add_parser("create", help="create a wait token")
    tc.add_argument(
        "--timeout",
        type=_duration_arg,
        default=None,
        help=f"the token times out after this ({DURATION_HELP})",
    )
    _client_args(tc)
    tdone = tokens.add_parser("complete", help="complete a token, resuming the run waiting on it")
    tdone.add_argument("token_id")
    tdone.add_argument("--payload", type=_json_arg, default=None, help="the payload as JSON")
    _client_args(tdone)
    tget = tokens.add_parser("get", help="show a token")
    tget.add_argument("token_id")
    _client_args(tget)

    schedules = sub.add_parser("schedules", help="run tasks on cron schedules").add_subparsers(
        dest="schedules_command", required=True, metavar="SUBCOMMAND"
    )
    sc = schedules.add_parser("create", help="create a schedule")
    sc.add_argument("schedule_id")
    sc.add_argument("--task", required=True, help="the task to trigger")
    sc.add_argument("--cron", required=True, help="cron expression: 5 fields, or 6 with seconds first")
    sc.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC)")
    sc.add_argument("--payload", type=_json_arg, default=None, help="each run's payload as JSON")
    sc.add_argument("--dedup-key", default=None, help="deduplication key (default the schedule id)")
    _client_args(sc)
    sl = schedules.add_parser("list", help="list schedules")
    sl.add_argument("--task", default=None, help="only schedules of this task")
    _client_args(sl)
    for name, text in [
        ("pause", "stop a schedule from firing"),
        ("resume", "let a paused schedule fire again"),
        ("delete", "delete a schedule"),
    ]:
        sp = schedules.add_parser(name, help=text)
        sp.add_argument("schedule_id")
        _client_args(sp)

    queues = sub.add_parser(
        "queues", help="list queues, change their limits, pause and resume them"
    ).add_subparsers(dest="queues_command", required=True, metavar="SUBCOMMAND")
    ql = queues.add_parser("list", help="list queues with their limits, depth and running runs")
    _client_args(ql)
    qu = queues.add_parser(
        "update",
        help="create a queue or change its limits (the queue's "
        "settings are then kept over the tasks' declarations)",
    )
    qu.add_argument("name")
    qu.add_argument(
        "--limit", type=int, default=None, help="at most this many runs execute at once (0 removes the limit)"
    )
    qu.add_argument(
        "--rate",
        type=_rate_arg,
        default=None,
        help="at most N attempts start per PERIOD, written N/PERIOD, e.g. 10/1s "
        "or 100/1m (0 removes the rate limit)",
    )
    qu.add_argument(
        "--max-depth",
        type=int,
        default=None,
        help="refuse triggers beyond this many queued runs (0 removes the limit)",
    )
    _client_args(qu)
    for name, text in [
        ("pause", "stop a queue from dispatching (triggers are still accepted)"),
        ("resume", "let a paused queue dispatch again"),
    ]:
        qp = queues.add_parser(name, help=text)
        qp.add_argument("name")
        _client_args(qp)
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cairn` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("frontend", "matching", "history", "dev"):
        _service(argv[0], argv[1:])
        return
    args = _parser().parse_args(argv)
    if args.command == "worker":
        _worker(args)
        return
    from worker_sdk import CairnError, UnavailableError

    try:
        sys.exit(_run_command(args))
    except UnavailableError as exc:
        address = args.address or os.environ.get("CAIRN_ADDRESS", "127.0.0.1:7373")
        detail = f" ({exc})" if str(exc).startswith("cannot resolve") else ""
        sys.exit(
            f"error: cannot reach the Cairn frontend at {address}{detail}; is `cairn dev` "
            "running? (set --address or CAIRN_ADDRESS to use another one)"
        )
    except CairnError as exc:
        sys.exit(f"error: {exc}")
    except (ValueError, TypeError) as exc:  # refused before sending, e.g. a bad option
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _service(name: str, argv: list[str]) -> None:
    try:
        import asyncpg  # noqa: F401
        import nats  # noqa: F401
    except ImportError:
        sys.exit(f"cairn {name} needs the server extra: pip install 'cairn[server]'")
    if name == "dev":
        from cairn_cli import dev

        dev.main(argv)
        return
    import importlib

    importlib.import_module(f"services.{name}.main").main(argv)


def _worker(args: argparse.Namespace) -> None:
    import logging

    from worker_sdk import Worker

    logging.basicConfig(
        level=os.environ.get("CAIRN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s",
    )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from cairn.addresses import check_address
    from worker_sdk._grpc import resolve_address

    try:
        check_address(resolve_address(args.address))
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    try:
        worker = Worker(
            args.module,
            address=args.address,
            namespace=args.namespace,
            slots=args.slots,
            version=args.version,
            queues=args.queue,
        )
    except (ImportError, ValueError, TypeError) as exc:
        sys.exit(f"error: cannot load tasks from {args.module!r}: {exc}")
    worker.run_sync()


def _run_command(args: argparse.Namespace) -> int:
    from worker_sdk import Client

    with Client(address=args.address, namespace=args.namespace) as client:
        if args.command == "trigger":
            return _trigger(client, args)
        if args.command == "runs" and args.runs_command == "list":
            for s in args.status or []:
                if s not in RUN_STATUS_BY_NAME:
                    print(
                        f"error: --status {s!r} is not one of {', '.join(RUN_STATUS_BY_NAME)}",
                        file=sys.stderr,
                    )
                    return 2
            runs = client.list(
                task=args.task, status=args.status, limit=args.limit, tag=args.tag, parent_run_id=args.parent
            )
            if args.json:
                for r in runs:
                    print(json.dumps(r.raw))
            else:
                print(
                    _table(
                        ["ID", "TASK", "STATUS", "ATTEMPTS", "CREATED"],
                        [
                            [r.id, r.task, r.status, str(r.raw["attempt_count"]), r.raw["created_at"] or ""]
                            for r in runs
                        ],
                    )
                )
            return 0
        if args.command == "runs":
            _show(client.get(args.run_id).raw, args.json, full=True)
            return 0
        if args.command == "cancel":
            _show(client.cancel(args.run_id, reason=args.reason).raw, args.json, full=True)
            return 0
        if args.command == "events":
            return _send_event(client, args)
        if args.command == "tokens":
            return _tokens(client, args)
        if args.command == "schedules":
            return _schedules(client, args)
        if args.command == "queues":
            return _queues(client, args)
    return 2


def _trigger(client: Any, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        print(f"error: --payload is not valid JSON: {exc}", file=sys.stderr)
        return 2
    options = {
        name: value
        for name, value in [
            ("delay", args.delay),
            ("ttl", args.ttl),
            ("max_duration", args.max_duration),
            ("priority", args.priority),
            ("tags", args.tag),
            ("metadata", args.metadata),
            ("concurrency_key", args.concurrency_key),
        ]
        if value is not None
    }
    run = client.trigger(args.task, payload, idempotency_key=args.idempotency_key or None, **options)
    if args.wait:
        run = client.wait(run.id, timeout=args.timeout)
    _show(run.raw, args.json, full=args.wait)
    return 0 if not args.wait or run.status == "completed" else 1


def _send_event(client: Any, args: argparse.Namespace) -> int:
    result = client.send_event(args.name, args.payload, run_id=args.run, key=args.key)
    if args.json:
        print(json.dumps({"delivered_run_ids": result.delivered_run_ids, "buffered": result.buffered}))
    elif result.delivered_run_ids:
        print(f"delivered to {len(result.delivered_run_ids)} run(s): {', '.join(result.delivered_run_ids)}")
    elif result.buffered:
        print(f"kept for run {args.run} until it waits for event {args.name!r}")
    else:
        print(f"no run was waiting for event {args.name!r}{f' with key {args.key!r}' if args.key else ''}")
    return 0


def _tokens(client: Any, args: argparse.Namespace) -> int:
    if args.tokens_command == "create":
        token = client.create_token(args.timeout)
    elif args.tokens_command == "complete":
        token = client.complete_token(args.token_id, args.payload)
    else:
        token = client.get_token(args.token_id)
    if args.json:
        print(json.dumps(token))
        return 0
    print(f"token    {token['id']}")
    print(f"status   {token['status']}")
    for label, key in [
        ("run", "run_id"),
        ("created", "created_at"),
        ("timeout", "timeout_at"),
        ("done", "completed_at"),
    ]:
        if token.get(key):
            print(f"{label:<8} {token[key]}")
    if token["status"] == "completed":
        print(f"payload  {_short(token['payload'], 200)}")
    return 0


def _schedules(client: Any, args: argparse.Namespace) -> int:
    command = args.schedules_command
    if command == "list":
        schedules = client.list_schedules(task=args.task)
        if args.json:
            for sch in schedules:
                print(json.dumps(sch))
        else:
            print(
                _table(
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
        return 0
    if command == "delete":
        client.delete_schedule(args.schedule_id)
        if args.json:
            print(json.dumps({"id": args.schedule_id, "deleted": True}))
        else:
            print(f"schedule {args.schedule_id} deleted")
        return 0
    if command == "create":
        sch = client.create_schedule(
            args.schedule_id,
            args.task,
            args.cron,
            timezone=args.timezone,
            payload=args.payload,
            deduplication_key=args.dedup_key,
        )
    elif command == "pause":
        sch = client.pause_schedule(args.schedule_id)
    else:
        sch = client.resume_schedule(args.schedule_id)
    if args.json:
        print(json.dumps(sch))
        return 0
    print(
        f"schedule {sch['id']}   task {sch['task']}   cron {sch['cron']} ({sch['timezone']})"
        f"{'   paused' if sch['paused'] else ''}"
    )
    if sch["next_fire_at"]:
        print(f"next     {sch['next_fire_at']}")
    if sch["last_run_id"]:
        print(f"last run {sch['last_run_id']} at {sch['last_fired_at'] or '?'}")
    return 0


def _rate_text(rate: dict[str, Any] | None) -> str:
    return f"{rate['limit']}/{format_duration(rate['period'])}" if rate else "-"


def _queues(client: Any, args: argparse.Namespace) -> int:
    command = args.queues_command
    if command == "list":
        queues = client.list_queues()
        if args.json:
            for q in queues:
                print(json.dumps(q))
        else:
            print(
                _table(
                    ["NAME", "LIMIT", "RATE", "MAX_DEPTH", "PAUSED", "DEPTH", "RUNNING"],
                    [
                        [
                            q["name"],
                            str(q["concurrency_limit"] or "-"),
                            _rate_text(q["rate_limit"]),
                            str(q["max_depth"] or "-"),
                            "yes" if q["paused"] else "no",
                            str(q["depth"]),
                            str(q["running"]),
                        ]
                        for q in queues
                    ],
                )
            )
        return 0
    if command == "update":
        q = client.update_queue(
            args.name, concurrency_limit=args.limit, rate_limit=args.rate, max_depth=args.max_depth
        )
    elif command == "pause":
        q = client.pause_queue(args.name)
    else:
        q = client.resume_queue(args.name)
    if args.json:
        print(json.dumps(q))
        return 0
    print(f"queue    {q['name']}{'   paused' if q['paused'] else ''}")
    print(
        f"limit    {q['concurrency_limit'] or '-'}   rate {_rate_text(q['rate_limit'])}   "
        f"max depth {q['max_depth'] or '-'}"
    )
    print(f"depth    {q['depth']}   running {q['running']}")
    return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]
    )


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wait_text(wait: dict[str, Any]) -> str:
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


def _show(run: dict[str, Any], as_json: bool, full: bool) -> None:
    """Prints one run: JSON, or a summary with its attempts and steps as tables."""
    if as_json:
        print(json.dumps(run))
        return
    print(f"run      {run['id']}")
    print(f"task     {run['task']}   status {run['status']}   attempts {run['attempt_count']}")
    if run["output"] is not None:
        print(f"output   {_short(run['output'], 200)}")
    if run["error"]:
        print(f"error    {run['error']['type']}: {run['error']['message']}")
    if run.get("wait"):
        print(f"waiting  {_wait_text(run['wait'])}")
    if run.get("parent_run_id"):
        print(f"parent   {run['parent_run_id']}")
    if run.get("child_run_ids"):
        print(f"children {', '.join(run['child_run_ids'])}")
    if run.get("concurrency_key"):
        print(f"key      {run['concurrency_key']}   (queue {run.get('queue') or '?'})")
    if run.get("tags"):
        print(f"tags     {', '.join(run['tags'])}")
    if run.get("metadata"):
        print(f"metadata {_short(run['metadata'], 200)}")
    if not full:
        return
    if run["attempts"]:
        print("\nattempts")
        print(
            _table(
                ["#", "STATUS", "WORKER", "VERSION", "ERROR", "RETRY IN"],
                [
                    [
                        str(a["number"]),
                        a["status"],
                        a["worker_id"],
                        a["worker_version"],
                        _short(f"{a['error']['type']}: {a['error']['message']}") if a["error"] else "",
                        f"{a['retry_delay']:.2f}s" if a["retry_delay"] is not None else "",
                    ]
                    for a in run["attempts"]
                ],
            )
        )
    if run["steps"]:
        print("\nsteps")
        print(
            _table(
                ["#", "NAME", "STATUS", "ATTEMPT", "TRIES", "RESULT"],
                [
                    [
                        str(s["position"]),
                        s["name"],
                        s["status"],
                        str(s["attempt"]),
                        str(s["tries"]),
                        _short(s["output"])
                        if s["status"] == "completed"
                        else _short(f"{s['error']['type']}: {s['error']['message']}"),
                    ]
                    for s in run["steps"]
                ],
            )
        )


if __name__ == "__main__":
    main()
