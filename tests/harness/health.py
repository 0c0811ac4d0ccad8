"""Waiting until service processes answer grpc.health.v1 with SERVING."""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .processes import ServiceProcess

READY_TIMEOUT = 30.0


def health_check(
    address: str, timeout: float, credentials: grpc.ChannelCredentials | None = None
) -> tuple[bool, str]:
    """(serving, detail) of grpc.health.v1.Health/Check with service "". A fresh
    channel each time, so no reconnect backoff from an earlier refusal applies;
    over TLS with credentials."""
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def wait_serving(
    services: Iterable[ServiceProcess], timeout: float = READY_TIMEOUT, interval: float = 0.05
) -> None:
    """Waits until every service answers its health check with SERVING. Fails at
    once, with its log, when one exits; at the deadline names each laggard."""
    pending = {s.name: s for s in services}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for name, svc in list(pending.items()):
            if not svc.running:
                raise RuntimeError(
                    f"{name} exited with code {svc.returncode} while starting; "
                    f"last lines of {svc.log_path}:\n{svc.log_tail(40)}"
                )
            ok, detail = health_check(svc.address, timeout=1.0, credentials=svc.credentials)
            last[name] = detail
            if ok:
                del pending[name]
        if not pending:
            return
        if time.monotonic() >= deadline:
            parts = [
                f"{name} on {svc.address} (last health check: {last.get(name)}); "
                f"last lines of {svc.log_path}:\n{svc.log_tail(40)}"
                for name, svc in pending.items()
            ]
            raise RuntimeError(f"not SERVING within {timeout:g} s: " + "\n".join(parts))
        time.sleep(interval)
