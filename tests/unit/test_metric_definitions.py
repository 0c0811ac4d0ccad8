"""The metric definitions (services/common/metrics.py), what history's
announcements count, the gRPC metrics interceptor on a real in-process
grpc.aio server, the /metrics server, and each service's --help."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest

from services.common import config, grpc_server, metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---- definitions -------------------------------------------------------------------


def test_every_metric_is_a_cairn_metric_in_the_default_registry() -> None:
    text = generate_latest(REGISTRY).decode()
    for name in metrics.METRIC_NAMES:
        assert name.startswith("cairn_")
        if name in (metrics.QUEUE_DEPTH, metrics.QUEUE_EXECUTING):
            continue  # matching's scrape-time collector
        assert f"# HELP {name}" in text, name
    assert "_created" not in text  # no doubled series for counters and histograms


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_promtool_accepts_the_exposition() -> None:
    metrics.run_created("ns", "t", "q")
    families = metrics.queue_families([("ns", "q", 3, 1)])
    text = generate_latest(REGISTRY).decode()
    for family in families:
        text += f"# HELP {family.name} {family.documentation}\n# TYPE {family.name} gauge\n"
        for s in family.samples:
            text += f'{s.name}{{namespace="{s.labels["namespace"]}",queue="{s.labels["queue"]}"}} {s.value}\n'
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_run_changes_count_started_and_ended_by_status() -> None:
    labels = {"namespace": "n1", "task": "t1", "queue": "q1"}
    ready = datetime(2026, 1, 1, tzinfo=UTC)
    before = {
        s: value(f"cairn_runs_{s}_total", **labels) for s in ("triggered", "started", "completed", "failed")
    }
    dispatched = value("cairn_dispatch_latency_seconds_count", namespace="n1", queue="q1")
    slow = value("cairn_dispatch_latency_seconds_bucket", namespace="n1", queue="q1", le="0.25")

    metrics.run_created("n1", "t1", "q1")
    run: dict[str, Any] = {"namespace": "n1", "task_id": "t1", "queue": "q1", "status": "executing"}
    metrics.run_changed({**run, "ready_at": ready, "updated_at": ready + timedelta(seconds=0.5)})
    metrics.run_changed({**run, "status": "completed"})
    metrics.run_changed({**run, "status": "failed"})
    metrics.run_changed({**run, "status": "timed_out"})
    metrics.run_changed({**run, "status": "queued"})  # not counted: neither a start nor an end

    assert value("cairn_runs_triggered_total", **labels) == before["triggered"] + 1
    assert value("cairn_runs_started_total", **labels) == before["started"] + 1
    assert value("cairn_runs_completed_total", **labels) == before["completed"] + 1
    assert value("cairn_runs_failed_total", **labels) == before["failed"] + 1
    assert value("cairn_runs_ended_total", **labels, status="timed_out") >= 1
    assert value("cairn_dispatch_latency_seconds_count", namespace="n1", queue="q1") == dispatched + 1
    # 0.5 s is above the 0.25 s bucket: that bucket did not move
    assert value("cairn_dispatch_latency_seconds_bucket", namespace="n1", queue="q1", le="0.25") == slow


def test_queue_families() -> None:
    depth, executing = metrics.queue_families([("default", "video", 7, 2)])
    assert depth.name == "cairn_queue_depth" and executing.name == "cairn_queue_executing"
    assert [(s.labels, s.value) for s in depth.samples] == [({"namespace": "default", "queue": "video"}, 7)]
    assert [s.value for s in executing.samples] == [2]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("", None), ("127.0.0.1:9375", ("127.0.0.1", 9375)), ("[::1]:0", ("::1", 0)), ("h:1", ("h", 1))],
)
def test_parse_address(text: str, parsed: tuple[str, int] | None) -> None:
    assert metrics.parse_address(text) == parsed


@pytest.mark.parametrize("text", ["9375", ":9375", "host:", "host:x", "host:70000"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="host:port|port"):
        metrics.parse_address(text)


def test_metrics_server_serves_the_registry() -> None:
    server = metrics.MetricsServer("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=10) as r:
            body = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE cairn_runs_completed_total counter" in body
    finally:
        server.stop()


def test_loop_collector_reads_on_the_loop_and_survives_a_failed_read() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def rows() -> list[tuple[str, str, int, int]]:
            assert asyncio.get_running_loop() is loop
            return [("ns", "q", 4, 1)]

        async def broken() -> list[tuple[str, str, int, int]]:
            raise RuntimeError("database down")

        good = metrics.LoopCollector(loop, rows, metrics.queue_families)
        bad = metrics.LoopCollector(loop, broken, metrics.queue_families)
        collected = await asyncio.to_thread(lambda: list(good.collect()))
        assert [s.value for f in collected for s in f.samples] == [4, 1]
        assert await asyncio.to_thread(lambda: list(bad.collect())) == []
        assert [f.name for f in good.describe()] == ["cairn_queue_depth", "cairn_queue_executing"]

    asyncio.run(main())


# ---- the gRPC interceptor ------------------------------------------------------------

SERVICE = "test.Probe"


async def _ok(request: bytes, context: Any) -> bytes:
    return request


async def _refused(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("unreachable")


async def _broken(request: bytes, context: Any) -> bytes:
    raise RuntimeError("boom")


async def _set_code(request: bytes, context: Any) -> bytes:
    context.set_code(grpc.StatusCode.ALREADY_EXISTS)
    return b""


async def _stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield bytes([i])


def _register(server: grpc.aio.Server) -> None:
    unary = {
        "Ok": _ok,
        "Refused": _refused,
        "Broken": _broken,
        "SetCode": _set_code,
    }
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(f) for name, f in unary.items()
    }
    handlers["Stream"] = grpc.unary_stream_rpc_method_handler(_stream)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def handled(method: str, code: str) -> float:
    return value("cairn_grpc_server_handled_total", grpc_service=SERVICE, grpc_method=method, grpc_code=code)


def test_interceptor_counts_calls_by_method_and_code() -> None:
    async def main() -> None:
        server, _health = grpc_server.make_server("127.0.0.1:0", _register, [SERVICE])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        before = {
            (m, c): handled(m, c)
            for m, c in [
                ("Ok", "OK"),
                ("Refused", "NOT_FOUND"),
                ("Broken", "UNKNOWN"),
                ("SetCode", "ALREADY_EXISTS"),
                ("Stream", "OK"),
            ]
        }
        timed = value("cairn_grpc_server_handling_seconds_count", grpc_service=SERVICE, grpc_method="Ok")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                for _ in range(2):
                    assert await ch.unary_unary(f"/{SERVICE}/Ok")(b"x") == b"x"
                for method, code in [
                    ("Refused", grpc.StatusCode.NOT_FOUND),
                    ("Broken", grpc.StatusCode.UNKNOWN),
                    ("SetCode", grpc.StatusCode.ALREADY_EXISTS),
                ]:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await ch.unary_unary(f"/{SERVICE}/{method}")(b"")
                    assert err.value.code() == code
                assert [m async for m in ch.unary_stream(f"/{SERVICE}/Stream")(b"")] == [b"\0", b"\1", b"\2"]
                with pytest.raises(grpc.aio.AioRpcError):  # unknown: grpc's UNIMPLEMENTED, not counted
                    await ch.unary_unary(f"/{SERVICE}/Missing")(b"")
        finally:
            await server.stop(None)
        assert handled("Ok", "OK") == before[("Ok", "OK")] + 2
        assert handled("Refused", "NOT_FOUND") == before[("Refused", "NOT_FOUND")] + 1
        assert handled("Broken", "UNKNOWN") == before[("Broken", "UNKNOWN")] + 1
        assert handled("SetCode", "ALREADY_EXISTS") == before[("SetCode", "ALREADY_EXISTS")] + 1
        assert handled("Stream", "OK") == before[("Stream", "OK")] + 1
        assert handled("Missing", "UNIMPLEMENTED") == 0
        assert (
            value("cairn_grpc_server_handling_seconds_count", grpc_service=SERVICE, grpc_method="Ok")
            == timed + 2
        )

    asyncio.run(main())


# ---- flags -----------------------------------------------------------------------------


def _help(service: str) -> str:
    parser = argparse.ArgumentParser(prog=f"cairn {service}")
    config.add_service_flags(parser, "127.0.0.1:0")
    return parser.format_help()


def test_each_service_help_lists_only_its_own_flags() -> None:
    every = set().union(*config.SERVICE_FLAGS.values())
    for service, own in config.SERVICE_FLAGS.items():
        text = _help(service)
        for flag in ("listen", "nats-url", "nats-prefix", *own):
            assert f"--{flag}" in text, (service, flag)
        for flag in every - own:
            assert f"--{flag}" not in text, (service, flag)
    assert "--metrics-address" not in _help("frontend")  # the frontend's are on its HTTP port


def test_metrics_address_flag() -> None:
    parser = argparse.ArgumentParser(prog="cairn history")
    config.add_service_flags(parser, "127.0.0.1:0")
    assert config.settings_from_args(parser.parse_args([])).metrics_address == ""
    args = parser.parse_args(["--metrics-address", "127.0.0.1:9375"])
    assert config.settings_from_args(args).metrics_address == "127.0.0.1:9375"
    with pytest.raises(SystemExit):
        parser.parse_args(["--metrics-address", "9375"])


def test_settings_keep_defaults_for_flags_a_service_does_not_take() -> None:
    parser = argparse.ArgumentParser(prog="cairn frontend")
    config.add_service_flags(parser, "127.0.0.1:0")
    settings = config.settings_from_args(parser.parse_args(["--sweep-seconds", "2"]))
    assert settings.sweep_seconds == 2 and settings.lease_seconds == 10.0 and settings.metrics_address == ""
