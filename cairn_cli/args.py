"""The `cairn` command line as argparse reads it: the commands and their flags,
and the flag types (durations, rates, JSON), each refusing a bad value on one
line that names the flag, with exit status 2."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any, NoReturn

from cairn.limits import ID_RE
from cairn_cli import keys

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


TIME_HELP = "an RFC 3339 time such as 2025-01-02T15:04:05Z, or a duration ago such as 10m, 2h or 7d"


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A point in time: an RFC 3339 time with its offset ("2025-01-02T15:04:05Z",
    "2025-01-02T15:04:05+02:00") or a duration before now as parse_duration reads
    it ("10m", "2h", "7d", "1h30m"). An aware datetime; ValueError otherwise."""
    raw = text.strip()
    when = _time_or_ago(raw, now or datetime.now(UTC))
    if when is None:
        raise ValueError(f"invalid time {text!r}: use {TIME_HELP}")
    if when.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: give its offset, e.g. 2025-01-02T15:04:05Z or ...+02:00")
    if when.timestamp() < 0:
        raise ValueError(f"invalid time {text!r}: it must not be before 1970")
    return when


def _time_or_ago(raw: str, now: datetime) -> datetime | None:
    """`raw` as a duration before now, or else as an ISO time (naive when it has
    no offset); None when it is neither."""
    try:
        return now - timedelta(seconds=parse_duration(raw))
    except OverflowError:
        return datetime.fromtimestamp(-1, UTC)  # before 1970
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError:
        return None


def _time_arg(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _future_time_arg(text: str) -> datetime:
    """A time from now: an RFC 3339 time with its offset, or a duration after now
    ("30d", "12h")."""
    try:
        return datetime.now(UTC) + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"invalid time {text[:64]!r}: a duration from now (30d, 12h) or an RFC 3339 time with its offset"
        )
    return when


def _name_arg(text: str) -> str:
    """A task id or queue name, as the server takes them."""
    if not ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"invalid name {text!r}: 1 to 128 characters, starting with a letter or digit, "
            "then letters, digits, '_', '.', ':' or '-'"
        )
    return text


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


def _positive_int(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1, got {value}")
        return value

    return parse


def _rate_arg(text: str) -> tuple[int, float]:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


PAYLOAD_HELP = "as JSON; @FILE reads it from a file, - from stdin"


def read_json_arg(text: str) -> Any:
    """A JSON flag's value: the JSON text itself, "@PATH" for the JSON in a file,
    or "-" for the JSON on stdin (large payloads do not fit on a command line).
    ValueError naming the file, or saying the JSON is not valid."""
    where = ""
    if text == "-":
        text, where = sys.stdin.read(), " (read from stdin)"
    elif text.startswith("@"):
        path = text[1:]
        if not path:
            raise ValueError("@ must be followed by a file name, e.g. @payload.json")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise ValueError(f"cannot read {path!r}: no such file") from None
        except IsADirectoryError:
            raise ValueError(f"cannot read {path!r}: it is a directory") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {path!r}: {exc}") from None
        where = f" (in {path})"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON{where}: {exc}") from None


def _json_arg(text: str) -> Any:
    try:
        return read_json_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _json_object_arg(text: str) -> dict[str, Any]:
    value = _json_arg(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line on one line, naming the flag, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


API_KEY_HELP = (
    "the API key to send (CAIRN_API_KEY, which keeps it out of the process list; default: "
    "the admin.key `cairn dev` keeps in its data directory, $CAIRN_DEV_DIR or ./.cairn)"
)


def _client_args(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--namespace", default=None, help="namespace (CAIRN_NAMESPACE, default 'default')")
    p.add_argument("--api-key", default=None, metavar="KEY", help=API_KEY_HELP)
    p.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help="connect over TLS, trusting this CA certificate (PEM; CAIRN_TLS_CA)",
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="for mutual TLS: this client's certificate (PEM), with --tls-key (CAIRN_TLS_CERT); "
        "without --tls-ca the system's CAs are trusted",
    )
    p.add_argument(
        "--tls-key", default=None, metavar="FILE", help="the private key of --tls-cert (PEM; CAIRN_TLS_KEY)"
    )
    p.add_argument(
        "--tls-server-name",
        default=None,
        metavar="NAME",
        help="the name the frontend's certificate must carry, when it is not the address's host "
        "(CAIRN_TLS_SERVER_NAME)",
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON objects instead of tables")


def version() -> str:
    """The installed cairn package's version (importlib.metadata)."""
    try:
        return metadata.version("cairn")
    except metadata.PackageNotFoundError:
        return "unknown (the cairn package is not installed; pip install -e .)"


DEFAULT_SLOTS = 100  # as Temporal's Python worker (max_concurrent_activities) and Hatchet
SLOTS_HELP = (
    "how many attempts this worker runs at once (default %(default)s). A slot is one "
    "attempt of a run in progress: the task's async function on this worker's event "
    "loop, so a run waiting on I/O holds a slot but no CPU; lower it for CPU-bound "
    "or memory-heavy tasks (a run that waits durably, e.g. wait.for_, holds no slot)"
)


def build_parser() -> argparse.ArgumentParser:
    """The `cairn` command line: every command, subcommand and flag."""
    p = _Parser(prog="cairn", description="Durable execution for Python.")
    p.add_argument("--version", action="version", version=f"cairn {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in [
        ("dev", "start PostgreSQL, NATS and the three services on this machine"),
        ("frontend", "run the public frontend service"),
        ("matching", "run the matching service"),
        ("history", "run the history service"),
        ("migrate", "apply the database migrations, then exit (run once before the services)"),
        ("health", "check a service's gRPC health service: exit 0 when it answers SERVING"),
    ]:
        sub.add_parser(name, help=text, add_help=False)

    w = sub.add_parser(
        "worker",
        help="serve the tasks of a Python module",
        description="Serve the tasks (@task) of a Python module: the worker long-polls the "
        "frontend for attempts of its tasks and runs up to --slots of them at once. "
        "Example: cairn worker examples.orders",
    )
    w.add_argument(
        "module", help="dotted module name, imported from the current directory, e.g. examples.orders"
    )
    w.add_argument("--slots", type=_positive_int("--slots"), default=DEFAULT_SLOTS, help=SLOTS_HELP)
    w.add_argument(
        "--version",
        default=None,
        help="worker version (CAIRN_WORKER_VERSION; default 'dev-' and a digest of the "
        "task declarations, so a changed declaration is a new version)",
    )
    w.add_argument(
        "--queue",
        action="append",
        type=_name_arg,
        default=None,
        help="serve only the tasks on this queue (repeatable)",
    )
    w.add_argument(
        "--grace",
        type=_duration_arg,
        default=None,
        help="on SIGTERM or Ctrl-C, how long running attempts may go on to their next checkpoint "
        f"or their end before the rest are handed back to the cluster ({DURATION_HELP}; "
        "CAIRN_WORKER_GRACE, default 10s). Polling stops at once; an attempt stops before its next "
        "step, lets its running steps record, and is handed back so another worker goes on from "
        "there at once, with no retry used up; the worker then exits 0. A second signal ends the "
        "grace at once. Give a process manager's kill timeout a few seconds more",
    )
    _client_args(w, json_flag=False)

    t = sub.add_parser("trigger", help="trigger a run of a task")
    t.add_argument("task", help="task id")
    t.add_argument(
        "--payload", type=_json_arg, default=None, help=f"the payload {PAYLOAD_HELP} (default null)"
    )
    t.add_argument(
        "--idempotency-key", default="", help="a second trigger with this key returns the first run"
    )
    t.add_argument("--wait", action="store_true", help="wait until the run finishes and show it")
    t.add_argument(
        "--timeout",
        type=_duration_arg,
        default=None,
        help=f"with --wait: give up waiting after this ({DURATION_HELP}); exit status 1",
    )
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
    ls.add_argument("--queue", type=_name_arg, default=None, help="only runs on this queue")
    ls.add_argument(
        "--since", type=_time_arg, default=None, help=f"only runs created at or after this: {TIME_HELP}"
    )
    ls.add_argument("--until", type=_time_arg, default=None, help="only runs created before this, as --since")
    _client_args(ls)
    get = runs.add_parser("get", help="show one run with its attempts and steps")
    get.add_argument("run_id")
    get.add_argument("--full", action="store_true", help="also print the stack trace of every error")
    _client_args(get)
    w = runs.add_parser(
        "watch",
        help="print a run's changes as they happen, one line each, until it ends "
        "(exit status 1 when it ends other than completed)",
    )
    w.add_argument("run_id")
    w.add_argument(
        "--after",
        type=int,
        default=0,
        metavar="EVENT_ID",
        help="only changes after this event id (resume a watch); default: from the start",
    )
    _client_args(w)
    lg = runs.add_parser("logs", help="print the lines a run's task logged (context.logger), oldest first")
    lg.add_argument("run_id")
    lg.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="then print new lines as they are logged, until the run ends",
    )
    _client_args(lg)
    rp = runs.add_parser(
        "replay", help="trigger a new run of a run's task with its payload and options (linked by replay_of)"
    )
    rp.add_argument("run_id")
    _client_args(rp)

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
    send.add_argument("--payload", type=_json_arg, default=None, help=f"the payload {PAYLOAD_HELP}")
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
    tdone.add_argument("--payload", type=_json_arg, default=None, help=f"the payload {PAYLOAD_HELP}")
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
    sc.add_argument("--payload", type=_json_arg, default=None, help=f"each run's payload {PAYLOAD_HELP}")
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
    workers = sub.add_parser("workers", help="list the workers matching knows").add_subparsers(
        dest="workers_command", required=True, metavar="SUBCOMMAND"
    )
    wl = workers.add_parser(
        "list", help="list workers: their tasks, version, slots, when last seen, whether connected"
    )
    _client_args(wl)
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
    keys.add_parsers(sub, _client_args, _future_time_arg)
    return p
