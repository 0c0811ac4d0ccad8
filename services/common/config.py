"""Service settings: each from a command-line flag, else a CAIRN_* environment
variable, else a default that suits one machine."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_FRONTEND = "127.0.0.1:7373"
DEFAULT_HISTORY = "127.0.0.1:7375"
DEFAULT_MATCHING = "127.0.0.1:7376"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/cairn"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


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


def add_service_flags(p: argparse.ArgumentParser, default_listen: str) -> None:
    """The flags every service accepts; each falls back to its CAIRN_* variable."""
    p.add_argument(
        "--listen", default=env("LISTEN", default_listen), help="host:port to serve gRPC on (CAIRN_LISTEN)"
    )
    p.add_argument(
        "--database-url",
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
        "--history-address",
        default=env("HISTORY_ADDRESS", DEFAULT_HISTORY),
        help="history service host:port (CAIRN_HISTORY_ADDRESS)",
    )
    p.add_argument(
        "--matching-address",
        default=env("MATCHING_ADDRESS", DEFAULT_MATCHING),
        help="matching service host:port (CAIRN_MATCHING_ADDRESS)",
    )
    p.add_argument(
        "--lease-seconds",
        type=_number("CAIRN_LEASE_SECONDS", zero_ok=False),
        default=env("LEASE_SECONDS", "10"),
        help="an attempt without a heartbeat for this long is crashed (CAIRN_LEASE_SECONDS)",
    )
    p.add_argument(
        "--sweep-seconds",
        type=_number("CAIRN_SWEEP_SECONDS", zero_ok=False),
        default=env("SWEEP_SECONDS", "1"),
        help="interval of the database sweep that backs up NATS (CAIRN_SWEEP_SECONDS)",
    )
    p.add_argument(
        "--claim-seconds",
        type=_number("CAIRN_CLAIM_SECONDS", zero_ok=False),
        default=env("CLAIM_SECONDS", "3"),
        help="a claimed queue entry whose attempt did not start within this is claimable "
        "again, e.g. when the history replica that claimed it died (CAIRN_CLAIM_SECONDS)",
    )
    p.add_argument(
        "--retention-days",
        type=_number("CAIRN_RETENTION_DAYS", zero_ok=True),
        default=env("RETENTION_DAYS", "30"),
        help="history deletes runs that finished longer ago than this, with their "
        "steps, attempts and events; 0 keeps them forever (CAIRN_RETENTION_DAYS, "
        "default 30)",
    )
    p.add_argument(
        "--prune-seconds",
        type=_number("CAIRN_PRUNE_SECONDS", zero_ok=False),
        default=env("PRUNE_SECONDS", "60"),
        help="interval of history's retention pass (CAIRN_PRUNE_SECONDS, default 60)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags."""
    return Settings(
        listen=args.listen,
        database_url=args.database_url,
        nats_url=args.nats_url,
        nats_prefix=args.nats_prefix,
        history_address=args.history_address,
        matching_address=args.matching_address,
        lease_seconds=args.lease_seconds,
        sweep_seconds=args.sweep_seconds,
        claim_seconds=args.claim_seconds,
        retention_days=args.retention_days,
        prune_seconds=args.prune_seconds,
    )
