"""Service settings: each from a command-line flag, else a CAIRN_* environment
variable, else a default that suits one machine."""
from __future__ import annotations

import argparse
import os
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


def add_service_flags(p: argparse.ArgumentParser, default_listen: str) -> None:
    """The flags every service accepts; each falls back to its CAIRN_* variable."""
    p.add_argument("--listen", default=env("LISTEN", default_listen),
                   help="host:port to serve gRPC on (CAIRN_LISTEN)")
    p.add_argument("--database-url", default=env("DATABASE_URL", DEFAULT_DATABASE_URL),
                   help="PostgreSQL URL (CAIRN_DATABASE_URL)")
    p.add_argument("--nats-url", default=env("NATS_URL", DEFAULT_NATS_URL),
                   help="NATS URL (CAIRN_NATS_URL)")
    p.add_argument("--nats-prefix", default=env("NATS_PREFIX", "cairn"),
                   help="prefix of every NATS subject (CAIRN_NATS_PREFIX)")
    p.add_argument("--history-address", default=env("HISTORY_ADDRESS", DEFAULT_HISTORY),
                   help="history service host:port (CAIRN_HISTORY_ADDRESS)")
    p.add_argument("--matching-address", default=env("MATCHING_ADDRESS", DEFAULT_MATCHING),
                   help="matching service host:port (CAIRN_MATCHING_ADDRESS)")
    p.add_argument("--lease-seconds", type=float, default=float(env("LEASE_SECONDS", "10")),
                   help="an attempt without a heartbeat for this long is crashed (CAIRN_LEASE_SECONDS)")
    p.add_argument("--sweep-seconds", type=float, default=float(env("SWEEP_SECONDS", "1")),
                   help="interval of the database sweep that backs up NATS (CAIRN_SWEEP_SECONDS)")
    p.add_argument("--claim-seconds", type=float, default=float(env("CLAIM_SECONDS", "3")),
                   help="a claimed queue entry whose attempt did not start within this is claimable "
                        "again, e.g. when its matching replica died (CAIRN_CLAIM_SECONDS)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags."""
    return Settings(listen=args.listen, database_url=args.database_url, nats_url=args.nats_url,
                    nats_prefix=args.nats_prefix, history_address=args.history_address,
                    matching_address=args.matching_address, lease_seconds=args.lease_seconds,
                    sweep_seconds=args.sweep_seconds, claim_seconds=args.claim_seconds)
