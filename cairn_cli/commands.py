"""The client commands of `cairn` (trigger, runs, cancel, events, tokens,
schedules, queues): each reads its parsed arguments, calls the frontend
(cairn_cli.frontend) and prints the answer (cairn_cli.output). Each returns the
command's exit status."""

from __future__ import annotations

import argparse
import sys

from cairn.statuses import RUN_STATUS_BY_NAME
from cairn_cli import keys, output
from cairn_cli.frontend import Frontend


def run_command(client: Frontend, args: argparse.Namespace) -> int:
    """Runs the client command args names; 2 for one it does not know."""
    if args.command == "trigger":
        return trigger(client, args)
    if args.command == "runs" and args.runs_command == "replay":
        output.show_run(client.replay_run(args.run_id), args.json, full=False)
        return 0
    if args.command == "runs" and args.runs_command == "watch":
        return watch_run(client, args)
    if args.command == "runs" and args.runs_command == "logs":
        return run_logs(client, args)
    if args.command == "workers":
        output.show_workers(client.list_workers(), args.json)
        return 0
    if args.command == "runs":
        return list_runs(client, args) if args.runs_command == "list" else get_run(client, args)
    if args.command == "cancel":
        output.show_run(client.cancel_run(args.run_id, reason=args.reason), args.json, full=True)
        return 0
    if args.command == "events":
        return send_event(client, args)
    if args.command == "tokens":
        return tokens(client, args)
    if args.command == "schedules":
        return schedules(client, args)
    if args.command == "queues":
        return queues(client, args)
    if args.command == "keys":
        return keys.run(client, args)
    return 2


def trigger(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn trigger TASK`: 1 when --wait saw the run end other than completed,
    or not end within --timeout (one line on stderr; the run goes on)."""
    payload = args.payload
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
        try:
            run = client.wait_run(run["id"], timeout=args.timeout)
        except TimeoutError as exc:
            print(f"error: {exc}; it goes on: see it with `cairn runs get {run['id']}`", file=sys.stderr)
            return 1
    output.show_run(run, args.json, full=args.wait)
    return 0 if not args.wait or run["status"] == "completed" else 1


def list_runs(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn runs list`."""
    for s in args.status or []:
        if s not in RUN_STATUS_BY_NAME:
            print(f"error: --status {s!r} is not one of {', '.join(RUN_STATUS_BY_NAME)}", file=sys.stderr)
            return 2
    if args.since is not None and args.until is not None and args.since >= args.until:
        print(f"error: --until ({args.until}) must be later than --since ({args.since})", file=sys.stderr)
        return 2
    runs = client.list_runs(
        task=args.task,
        status=args.status,
        limit=args.limit,
        tag=args.tag,
        parent_run_id=args.parent,
        queue=args.queue,
        created_after=args.since,
        created_before=args.until,
    )
    output.show_runs(runs, args.json)
    return 0


def watch_run(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn runs watch RUN_ID`: one line per change until the run ends; 0 when
    it completed, 1 when it ended otherwise (like `trigger --wait`). Ctrl-C
    stops watching quietly (the run goes on)."""
    status = None
    try:
        for update in client.watch_run(args.run_id, after_event_id=args.after):
            output.show_update(update, args.json)
            status = update["run"]["status"] if update["done"] else status
    except KeyboardInterrupt:
        return 130
    if status is None:  # resumed after the run's last event: nothing more came
        status = client.get_run(args.run_id)["status"]
    return 0 if status == "completed" else 1


def run_logs(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn runs logs RUN_ID [--follow]`: the lines the run logged; with
    --follow, new ones as they come until the run ends. Ctrl-C stops quietly."""
    try:
        for line in client.run_logs(args.run_id, follow=args.follow):
            output.show_log_line(line, args.json)
    except KeyboardInterrupt:
        return 130
    return 0


def get_run(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn runs get RUN_ID`."""
    run = client.get_run(args.run_id)
    output.show_run(run, args.json, full=True, traces=args.full)
    if not args.json and run["status"] in ("queued", "delayed"):
        hint = output.no_worker_hint(run["task"], client.list_workers())
        if hint:
            print(hint)
    return 0


def send_event(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn events send NAME`."""
    result = client.send_event(args.name, args.payload, run_id=args.run, key=args.key)
    if args.json:
        output.print_json(result)
    elif result["delivered_run_ids"]:
        ids = result["delivered_run_ids"]
        print(f"delivered to {len(ids)} run(s): {', '.join(ids)}")
    elif result["buffered"]:
        print(f"kept for run {args.run} until it waits for event {args.name!r}")
    else:
        print(f"no run was waiting for event {args.name!r}{f' with key {args.key!r}' if args.key else ''}")
    return 0


def tokens(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn tokens create|complete|get`."""
    if args.tokens_command == "create":
        token = client.create_token(args.timeout)
    elif args.tokens_command == "complete":
        token = client.complete_token(args.token_id, args.payload)
    else:
        token = client.get_token(args.token_id)
    output.show_token(token, args.json)
    return 0


def schedules(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn schedules create|list|pause|resume|delete`."""
    command = args.schedules_command
    if command == "list":
        output.show_schedules(client.list_schedules(task=args.task), args.json)
        return 0
    if command == "delete":
        client.delete_schedule(args.schedule_id)
        if args.json:
            output.print_json({"id": args.schedule_id, "deleted": True})
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
    output.show_schedule(sch, args.json)
    return 0


def queues(client: Frontend, args: argparse.Namespace) -> int:
    """`cairn queues list|update|pause|resume`."""
    command = args.queues_command
    if command == "list":
        output.show_queues(client.list_queues(), args.json)
        return 0
    if command == "update":
        q = client.update_queue(
            args.name, concurrency_limit=args.limit, rate_limit=args.rate, max_depth=args.max_depth
        )
    elif command == "pause":
        q = client.pause_queue(args.name)
    else:
        q = client.resume_queue(args.name)
    output.show_queue(q, args.json)
    return 0
