"""The `cairn` command: run the services (`dev`, `frontend`, `matching`,
`history`), serve tasks (`worker`), trigger, inspect and cancel runs, send
events, complete wait tokens and manage schedules and queues.

This module dispatches and turns every failure into one line on stderr and an
exit status: 2 for a bad command line or a value refused before sending, 1 for
a refusal by the frontend (or a run that --wait saw fail), 130 for Ctrl-C.
The command line is cairn_cli.args, the client commands cairn_cli.commands on
the gRPC stubs (cairn_cli.frontend), the printing cairn_cli.output, and the
line saying why no frontend answered cairn_cli.unreachable."""

from __future__ import annotations

import argparse
import os
import sys

from cairn.addresses import DEFAULT_ADDRESS
from cairn.credentials import client_tls, refusal_message, resolve_api_key
from cairn_cli import commands, frontend
from cairn_cli.args import build_parser as _parser
from cairn_cli.args import parse_duration, parse_rate
from cairn_cli.output import format_duration
from cairn_cli.output import show_run as _show
from cairn_cli.unreachable import unreachable_message

__all__ = [
    "format_duration",
    "main",
    "unreachable_message",
    "parse_duration",
    "parse_rate",
    "_parser",
    "_show",
]


# Refusals of the caller's key: one line naming where the key came from.
_REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cairn` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("frontend", "matching", "history", "dev", "migrate"):
        _service(argv[0], argv[1:])
        return
    if argv and argv[0] == "health":
        from cairn_cli import health

        health.main(argv[1:])
        return
    args = _parser().parse_args(argv)
    if args.command == "worker":
        _worker(args)
        return
    client: frontend.Frontend | None = None
    try:
        with frontend.Frontend(
            address=args.address,
            namespace=args.namespace,
            api_key=args.api_key,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_server_name=args.tls_server_name,
        ) as client:
            status = commands.run_command(client, args)
    except frontend.BackendDown as exc:  # the frontend answered: it names the service that is down
        sys.exit(f"error: {exc}")
    except frontend.Unreachable as exc:
        address = args.address or os.environ.get("CAIRN_ADDRESS") or DEFAULT_ADDRESS
        tls, reached = (client.tls is not None, client.reached) if client is not None else (False, False)
        sys.exit(unreachable_message(address, exc, tls=tls, reached=reached))
    except frontend.FrontendError as exc:
        code = exc.code.name if exc.code is not None else ""
        if code in _REFUSED and client is not None:
            sys.exit(f"error: {refusal_message(code, str(exc), client.api_key)}")
        sys.exit(f"error: {exc}")
    except TimeoutError as exc:
        sys.exit(f"error: {exc}")
    except (ValueError, TypeError) as exc:  # refused before sending, e.g. a bad option
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (`cairn runs list | head`): stop quietly
        _quiet_stdout()
        sys.exit(141)
    sys.exit(status)


def _quiet_stdout() -> None:
    """Points stdout at /dev/null, so that Python's flush at exit does not fail
    again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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
    if name == "migrate":
        from cairn_cli import migrate

        migrate.main(argv)
        return
    import importlib

    importlib.import_module(f"services.{name}.main").main(argv)


def _worker(args: argparse.Namespace) -> None:
    import logging

    from cairn.addresses import check_address
    from services.common import otel
    from worker_sdk import CairnError, PermissionDeniedError, TLSConfig, UnauthenticatedError, Worker

    logging.basicConfig(
        level=os.environ.get("CAIRN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s",
    )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        check_address(args.address or os.environ.get("CAIRN_ADDRESS") or DEFAULT_ADDRESS)
        api_key = resolve_api_key(args.api_key, "--api-key")
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
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
            grace=args.grace,
            api_key=api_key.key if api_key else None,
            tls=TLSConfig(tls.ca, tls.cert, tls.key, tls.server_name) if tls else None,
        )
    except (ImportError, ValueError, TypeError) as exc:
        sys.exit(f"error: cannot load tasks from {args.module!r}: {exc}")
    # After the tasks' module is loaded: a tracer provider it set up itself is kept.
    with otel.exporting("cairn-worker"):
        try:
            worker.run_sync()
        except (UnauthenticatedError, PermissionDeniedError) as exc:
            code = exc.code.name if exc.code is not None else "UNAUTHENTICATED"
            sys.exit(f"error: {refusal_message(code, str(exc), api_key)}")
        except CairnError as exc:  # registration refused, e.g. a conflicting declaration
            sys.exit(f"error: the worker could not register: {exc}")


if __name__ == "__main__":
    main()
