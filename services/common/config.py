"""Service settings: each from a command-line flag, else a CAIRN_* environment
variable, else a default that suits one machine."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cairn import limits
from services.common import metrics

DEFAULT_FRONTEND = "127.0.0.1:7373"
DEFAULT_HISTORY = "127.0.0.1:7375"
DEFAULT_MATCHING = "127.0.0.1:7376"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cairn"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# Seconds a stopping service gives its calls in flight (grpc_server.serve).
DEFAULT_SHUTDOWN_GRACE = 10.0


def env(name: str, default: str) -> str:
    """CAIRN_<name> from the environment, or default."""
    return os.environ.get(f"CAIRN_{name}", default)


@dataclass
class Settings:
    """Everything a service process reads at start."""

    listen: str
    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str = DEFAULT_NATS_URL
    nats_prefix: str = "cairn"
    history_address: str = DEFAULT_HISTORY
    matching_address: str = DEFAULT_MATCHING
    lease_seconds: float = 10.0
    sweep_seconds: float = 1.0
    claim_seconds: float = 3.0
    retention_days: float = 30.0
    prune_seconds: float = 60.0
    metrics_address: str = ""
    # The secret every service of the cluster shares: history and matching take
    # calls only with it, frontend and matching send it (internal_auth.py).
    internal_credential: str = ""
    # Run without authentication: no internal credential needed to start.
    insecure_no_auth: bool = False
    admin_key: str = ""
    # Seconds a stopping service gives its calls in flight (grpc_server.serve).
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    # Limits per API key at each frontend (services/frontend/caller_limits.py);
    # key_burst None: limits.KEY_BURST_SECONDS of the rate.
    key_rate: float = limits.DEFAULT_KEY_RATE
    key_burst: float | None = None
    key_streams: int = limits.DEFAULT_KEY_STREAMS


def _number(variable: str, *, zero_ok: bool) -> Callable[[str], float]:
    """An argparse type: a finite float >= 0 (> 0 unless zero_ok). argparse also
    applies it to a string default, so a bad CAIRN_* value fails at start too,
    and its error names the flag ("argument --retention-days: ...")."""
    bound = ">= 0" if zero_ok else "> 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(
                f"must be a number {bound} (from the flag or {variable}), got {text!r}"
            )
        return value

    return parse


def _metrics_address(text: str) -> str:
    """An argparse type: host:port, or empty for off (see metrics.parse_address)."""
    try:
        metrics.parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (from the flag or CAIRN_METRICS_ADDRESS)") from None
    return text.strip()


def _count(variable: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= 0, also from a string default."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= 0 (from the flag or {variable}), got {text!r}"
            )
        return value

    return parse


def _burst(text: str) -> float | None:
    """An argparse type: a number >= 1, or empty for the default (KEY_BURST_SECONDS of the rate)."""
    if not text.strip():
        return None
    value = _number("CAIRN_KEY_BURST", zero_ok=False)(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be a number >= 1 (from the flag or CAIRN_KEY_BURST), got {text!r}"
        )
    return value


def _flag_on(text: str) -> bool:
    """A CAIRN_* switch: 1, true, yes or on (any case) is on."""
    return text.strip().lower() in ("1", "true", "yes", "on")


SERVICES = ("frontend", "history", "matching")
# The flags each service reads, beyond --listen, --nats-url, --nats-prefix,
# --internal-credential, --insecure-no-auth and --shutdown-grace (which all
# take): its --help lists only these.
SERVICE_FLAGS = {
    "frontend": {
        "history-address",
        "matching-address",
        "sweep-seconds",
        "key-rate",
        "key-burst",
        "key-streams",
    },
    "history": {
        "database-url",
        "lease-seconds",
        "sweep-seconds",
        "claim-seconds",
        "retention-days",
        "prune-seconds",
        "metrics-address",
    },
    "matching": {"database-url", "history-address", "sweep-seconds", "metrics-address", "admin-key"},
}
_ALL_FLAGS = set().union(*SERVICE_FLAGS.values())


def _service_of(p: argparse.ArgumentParser) -> str | None:
    """The service a parser is for, from its prog ("cairn history"), else None."""
    words = (p.prog or "").split()
    return words[-1] if words and words[-1] in SERVICES else None


def add_service_flags(p: argparse.ArgumentParser, default_listen: str, service: str | None = None) -> None:
    """The flags `service` (frontend, history or matching; by default read from
    the parser's prog, "cairn history") reads, each falling back to its CAIRN_*
    variable. A parser for no known service gets every flag (in-process tests)."""
    service = service or _service_of(p)
    if service is not None and service not in SERVICE_FLAGS:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    wanted = SERVICE_FLAGS[service] if service is not None else _ALL_FLAGS

    def flag(name: str, **kwargs: Any) -> None:
        if name in wanted:
            p.add_argument(f"--{name}", **kwargs)

    p.add_argument(
        "--listen", default=env("LISTEN", default_listen), help="host:port to serve gRPC on (CAIRN_LISTEN)"
    )
    flag(
        "database-url",
        default=env("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL (CAIRN_DATABASE_URL)",
    )
    p.add_argument("--nats-url", default=env("NATS_URL", DEFAULT_NATS_URL), help="NATS URL (CAIRN_NATS_URL)")
    p.add_argument(
        "--nats-prefix",
        default=env("NATS_PREFIX", "cairn"),
        help="prefix of every NATS subject (CAIRN_NATS_PREFIX)",
    )
    p.add_argument(
        "--internal-credential",
        default=env("INTERNAL_CREDENTIAL", ""),
        help="the secret shared by the cluster's services: history and matching take calls only "
        "with it, frontend and matching send it (CAIRN_INTERNAL_CREDENTIAL; prefer the variable, "
        "a flag shows in ps)",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=_flag_on(env("INSECURE_NO_AUTH", "")),
        help="run without authentication: start without an internal credential (CAIRN_INSECURE_NO_AUTH=1)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_number("CAIRN_SHUTDOWN_GRACE", zero_ok=True),
        default=env("SHUTDOWN_GRACE", f"{DEFAULT_SHUTDOWN_GRACE:g}"),
        help="seconds a stopping service (SIGTERM or SIGINT) gives the calls in flight: it "
        "reports NOT_SERVING on its health service at once, takes no new call, ends long polls "
        "and streams at once with an answer clients handle (an empty poll, a wait not done yet, "
        "a stream to reconnect), lets the rest finish for up to this long, then cancels what "
        "still runs and exits; give a process manager a few seconds more than this before it "
        f"kills (CAIRN_SHUTDOWN_GRACE, default {DEFAULT_SHUTDOWN_GRACE:g})",
    )
    flag(
        "history-address",
        default=env("HISTORY_ADDRESS", DEFAULT_HISTORY),
        help="history service host:port (CAIRN_HISTORY_ADDRESS)",
    )
    flag(
        "matching-address",
        default=env("MATCHING_ADDRESS", DEFAULT_MATCHING),
        help="matching service host:port (CAIRN_MATCHING_ADDRESS)",
    )
    flag(
        "lease-seconds",
        type=_number("CAIRN_LEASE_SECONDS", zero_ok=False),
        default=env("LEASE_SECONDS", "10"),
        help="an attempt without a heartbeat for this long is crashed (CAIRN_LEASE_SECONDS)",
    )
    flag(
        "sweep-seconds",
        type=_number("CAIRN_SWEEP_SECONDS", zero_ok=False),
        default=env("SWEEP_SECONDS", "1"),
        help="interval of the database sweep that backs up NATS (CAIRN_SWEEP_SECONDS)",
    )
    flag(
        "claim-seconds",
        type=_number("CAIRN_CLAIM_SECONDS", zero_ok=False),
        default=env("CLAIM_SECONDS", "3"),
        help="a claimed queue entry whose attempt did not start within this is claimable "
        "again, e.g. when the history replica that claimed it died (CAIRN_CLAIM_SECONDS)",
    )
    flag(
        "retention-days",
        type=_number("CAIRN_RETENTION_DAYS", zero_ok=True),
        default=env("RETENTION_DAYS", "30"),
        help="history deletes runs that finished longer ago than this, with their "
        "steps, attempts and events; 0 keeps them forever (CAIRN_RETENTION_DAYS, "
        "default 30)",
    )
    flag(
        "prune-seconds",
        type=_number("CAIRN_PRUNE_SECONDS", zero_ok=False),
        default=env("PRUNE_SECONDS", "60"),
        help="interval of history's retention pass (CAIRN_PRUNE_SECONDS, default 60)",
    )

    flag(
        "metrics-address",
        type=_metrics_address,
        default=env("METRICS_ADDRESS", ""),
        help="host:port to serve Prometheus metrics on, at /metrics (e.g. 127.0.0.1:9375; port 0 "
        "picks one); empty, the default, serves none (CAIRN_METRICS_ADDRESS: one per process, so "
        "give history and matching different ones)",
    )

    flag(
        "admin-key",
        default=env("ADMIN_KEY", ""),
        help="an API key (cairn_<id>_<secret>) stored at start as an admin key for every "
        "namespace unless its id exists: how a new cluster gets its first key (CAIRN_ADMIN_KEY; "
        "prefer the variable, a flag shows in the process list)",
    )

    flag(
        "key-rate",
        type=_number("CAIRN_KEY_RATE", zero_ok=True),
        default=env("KEY_RATE", f"{limits.DEFAULT_KEY_RATE:g}"),
        help="requests a second each API key may send to this frontend; more are refused "
        "RESOURCE_EXHAUSTED (HTTP 429) with a retry delay; 0 is no limit (CAIRN_KEY_RATE, "
        f"default {limits.DEFAULT_KEY_RATE:g})",
    )
    flag(
        "key-burst",
        type=_burst,
        default=env("KEY_BURST", "") or None,
        help="requests an API key may send at once above its rate (CAIRN_KEY_BURST; default "
        f"{limits.KEY_BURST_SECONDS:g} seconds of --key-rate)",
    )
    flag(
        "key-streams",
        type=_count("CAIRN_KEY_STREAMS"),
        default=env("KEY_STREAMS", str(limits.DEFAULT_KEY_STREAMS)),
        help="long polls and streams (PollAttempt, WaitRun, WatchRun, WatchRuns) each API key "
        "may hold open at this frontend at once; 0 is no limit (CAIRN_KEY_STREAMS, default "
        f"{limits.DEFAULT_KEY_STREAMS})",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags; a flag the service does not take keeps its default."""
    defaults = Settings(listen=args.listen)
    return Settings(
        listen=args.listen,
        database_url=getattr(args, "database_url", defaults.database_url),
        nats_url=args.nats_url,
        nats_prefix=args.nats_prefix,
        history_address=getattr(args, "history_address", defaults.history_address),
        matching_address=getattr(args, "matching_address", defaults.matching_address),
        lease_seconds=getattr(args, "lease_seconds", defaults.lease_seconds),
        sweep_seconds=getattr(args, "sweep_seconds", defaults.sweep_seconds),
        claim_seconds=getattr(args, "claim_seconds", defaults.claim_seconds),
        retention_days=getattr(args, "retention_days", defaults.retention_days),
        prune_seconds=getattr(args, "prune_seconds", defaults.prune_seconds),
        metrics_address=getattr(args, "metrics_address", defaults.metrics_address),
        admin_key=getattr(args, "admin_key", defaults.admin_key),
        key_rate=getattr(args, "key_rate", defaults.key_rate),
        key_burst=getattr(args, "key_burst", defaults.key_burst),
        key_streams=getattr(args, "key_streams", defaults.key_streams),
        internal_credential=args.internal_credential,
        insecure_no_auth=args.insecure_no_auth,
        shutdown_grace=args.shutdown_grace,
    )
