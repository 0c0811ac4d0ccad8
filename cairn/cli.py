"""The `cairn` command: run the services (`dev`, `frontend`, `matching`,
`history`), serve tasks (`worker`), and trigger, inspect and cancel runs."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cairn.statuses import RUN_STATUS_BY_NAME

ADDRESS_HELP = "frontend host:port (CAIRN_ADDRESS, default 127.0.0.1:7373)"


def _client_args(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--namespace", default=None, help="namespace (CAIRN_NAMESPACE, default 'default')")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON objects instead of tables")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cairn", description="Durable execution for Python.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in [("dev", "start PostgreSQL, NATS and the three services on this machine"),
                       ("frontend", "run the public frontend service"),
                       ("matching", "run the matching service"),
                       ("history", "run the history service")]:
        sub.add_parser(name, help=text, add_help=False)

    w = sub.add_parser("worker", help="serve the tasks of a Python module")
    w.add_argument("module", help="dotted module name, e.g. examples.hello")
    w.add_argument("--slots", type=int, default=4, help="attempts run at once (default 4)")
    w.add_argument("--version", default=None, help="worker version (CAIRN_WORKER_VERSION, default 'dev')")
    _client_args(w, json_flag=False)

    t = sub.add_parser("trigger", help="trigger a run of a task")
    t.add_argument("task", help="task id")
    t.add_argument("--payload", default="null", help="the payload as JSON (default null)")
    t.add_argument("--idempotency-key", default="", help="a second trigger with this key returns the first run")
    t.add_argument("--wait", action="store_true", help="wait until the run finishes and show it")
    t.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    _client_args(t)

    runs = sub.add_parser("runs", help="list runs or show one").add_subparsers(dest="runs_command",
                                                                               required=True, metavar="SUBCOMMAND")
    ls = runs.add_parser("list", help="list runs, newest first")
    ls.add_argument("--task", default=None, help="only runs of this task")
    ls.add_argument("--status", action="append", default=None, help="only runs in this status (repeatable)")
    ls.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20)")
    _client_args(ls)
    get = runs.add_parser("get", help="show one run with its attempts and steps")
    get.add_argument("run_id")
    _client_args(get)

    c = sub.add_parser("cancel", help="cancel an unfinished run")
    c.add_argument("run_id")
    c.add_argument("--reason", default="", help="recorded on the run")
    _client_args(c)
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
    except UnavailableError:
        address = args.address or os.environ.get("CAIRN_ADDRESS", "127.0.0.1:7373")
        sys.exit(f"error: cannot reach the Cairn frontend at {address}; is `cairn dev` running? "
                 "(set --address or CAIRN_ADDRESS to use another one)")
    except CairnError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)


def _service(name: str, argv: list[str]) -> None:
    try:
        import asyncpg  # noqa: F401
        import nats  # noqa: F401
    except ImportError:
        sys.exit(f"cairn {name} needs the server extra: pip install 'cairn[server]'")
    if name == "dev":
        from cairn import dev
        dev.main(argv)
        return
    import importlib
    importlib.import_module(f"services.{name}.main").main(argv)


def _worker(args: argparse.Namespace) -> None:
    import logging
    from worker_sdk import Worker
    logging.basicConfig(level=os.environ.get("CAIRN_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        worker = Worker(args.module, address=args.address, namespace=args.namespace,
                        slots=args.slots, version=args.version)
    except (ImportError, ValueError, TypeError) as exc:
        sys.exit(f"error: cannot load tasks from {args.module!r}: {exc}")
    worker.run_sync()


def _run_command(args: argparse.Namespace) -> int:
    from worker_sdk import Client
    with Client(address=args.address, namespace=args.namespace) as client:
        if args.command == "trigger":
            try:
                payload = json.loads(args.payload)
            except json.JSONDecodeError as exc:
                print(f"error: --payload is not valid JSON: {exc}", file=sys.stderr)
                return 2
            run = client.trigger(args.task, payload, idempotency_key=args.idempotency_key or None)
            if args.wait:
                run = client.wait(run.id, timeout=args.timeout)
            _show(run.raw, args.json, full=args.wait)
            return 0 if not args.wait or run.status == "completed" else 1
        if args.command == "runs" and args.runs_command == "list":
            for s in args.status or []:
                if s not in RUN_STATUS_BY_NAME:
                    print(f"error: --status {s!r} is not one of {', '.join(RUN_STATUS_BY_NAME)}",
                          file=sys.stderr)
                    return 2
            runs = client.list(task=args.task, status=args.status, limit=args.limit)
            if args.json:
                for r in runs:
                    print(json.dumps(r.raw))
            else:
                print(_table(["ID", "TASK", "STATUS", "ATTEMPTS", "CREATED"],
                             [[r.id, r.task, r.status, str(r.raw["attempt_count"]),
                               r.raw["created_at"] or ""] for r in runs]))
            return 0
        if args.command == "runs":
            _show(client.get(args.run_id).raw, args.json, full=True)
            return 0
        if args.command == "cancel":
            _show(client.cancel(args.run_id, reason=args.reason).raw, args.json, full=True)
            return 0
    return 2


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    if not full:
        return
    if run["attempts"]:
        print("\nattempts")
        print(_table(["#", "STATUS", "WORKER", "VERSION", "ERROR", "RETRY IN"],
                     [[str(a["number"]), a["status"], a["worker_id"], a["worker_version"],
                       _short(f"{a['error']['type']}: {a['error']['message']}") if a["error"] else "",
                       f"{a['retry_delay']:.2f}s" if a["retry_delay"] is not None else ""]
                      for a in run["attempts"]]))
    if run["steps"]:
        print("\nsteps")
        print(_table(["#", "NAME", "STATUS", "ATTEMPT", "TRIES", "RESULT"],
                     [[str(s["position"]), s["name"], s["status"], str(s["attempt"]), str(s["tries"]),
                       _short(s["output"]) if s["status"] == "completed"
                       else _short(f"{s['error']['type']}: {s['error']['message']}")]
                      for s in run["steps"]]))


if __name__ == "__main__":
    main()
