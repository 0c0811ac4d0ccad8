"""Fixtures of the service tier: history and matching run IN THIS PROCESS, on
one event loop, against a fresh database of the session's PostgreSQL and a
per-test subject prefix of the session's NATS, with no service processes, so a
state-machine bug shows in milliseconds.

Each service is built by its own ``services/<name>/main.run(settings)``, the
code a real process runs, so a change to a constructor or to the wiring (bus
subscriptions, timer loop, sweeper) needs no change here. Only the last step of
``run``, ``grpc_server.serve`` (serve until SIGINT/SIGTERM), is replaced for
the test: it serves until the fixture's teardown, without signal handlers.
Both servers listen on 127.0.0.1; tests call them through the protobuf API
(HistoryService and MatchingService stubs), never through internal classes.

Each test's database is a clone of a template database migrated once per
session (cheaper than migrating each). Tests are ``async def`` and run on the
fixture's event loop (``pytest_pyfunc_call`` below), each within TEST_TIMEOUT.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2
from harness import (
    clone_database,
    create_template,
    drop_database,
    new_database_name,
    run_coro,
    table_counts_query,
)
from harness.waiting import wait_for_async

from cairn.internal.v1 import history_service_pb2 as hpb
from cairn.internal.v1 import history_service_pb2_grpc as hgrpc
from cairn.internal.v1 import matching_service_pb2_grpc as mgrpc
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from cairn_cli.embedded import free_ports
from services.common import db, grpc_server, internal_auth
from services.common.config import add_service_flags, settings_from_args
from services.history import main as history_main
from services.matching import main as matching_main

NAMESPACE = "default"
WORKER_ID = "worker-1"
WORKER_VERSION = "v1"
LEASE_SECONDS = 10.0  # no lease expires during a test, unless it is marked lease_seconds(...)
SHORT_LEASE_SWEEP = 0.1  # the timer loop's longest sleep with a short lease
STARTUP_TIMEOUT = 10.0
TEST_TIMEOUT = 10.0
RPC_TIMEOUT = 5.0
KEEP_DATA = bool(os.environ.get("CAIRN_TEST_KEEP_DATA"))
WAIT_TIMEOUT = 3.0  # for a background transition (a timer, a child's signal)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lease_seconds(s): the services' lease, for a test in which a lease expires"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs an ``async def`` test on the loop of its ``loop_runner`` (where its
    fixtures' servers live), within TEST_TIMEOUT."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    runner = pyfuncitem.funcargs.get("loop_runner")
    if not isinstance(runner, asyncio.Runner):
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: an async test here needs the services fixture")
    names = inspect.signature(pyfuncitem.obj).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    runner.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT))
    return True


@pytest.fixture
def loop_runner() -> Iterator[asyncio.Runner]:
    """The test's event loop: its servers, its channels and its body share it."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="session")
def service_template(postgres_server: Any) -> str:
    """The name of a database with every migration applied, made once per session
    on the session's PostgreSQL, for each test's database to be cloned from."""
    if not postgres_server.running:  # an earlier test may have killed it
        postgres_server.start()
    name = f"cairn_service_template_{secrets.token_hex(3)}"

    async def migrate(url: str) -> None:
        pool = await db.connect_pool(url, min_size=1, max_size=1)
        try:
            await db.migrate(pool)
        finally:
            await pool.close()

    run_coro(lambda: create_template(postgres_server.url, name, migrate))
    return name


class Services:
    """History and matching serving in process, the stubs to call them, and
    shortcuts for the requests most tests make (each one protobuf call)."""

    def __init__(
        self,
        database_url: str,
        history_address: str,
        matching_address: str,
        nats_url: str,
        nats_prefix: str,
        internal_credential: str,
    ) -> None:
        self.database_url = database_url
        self.nats_url = nats_url  # the services' NATS and subject prefix, for a test to listen or announce
        self.nats_prefix = nats_prefix
        self.namespace = NAMESPACE
        # The attempt_token of every attempt handed to this tier (claim, start,
        # poll), by (run id, attempt): its writes send it, as the attempt's worker would.
        self.tokens: dict[tuple[str, int], str] = {}
        self.internal_credential = internal_credential  # the services' shared secret: their stubs send it
        self._channels = [grpc.aio.insecure_channel(a) for a in (history_address, matching_address)]
        history, matching = (internal_auth.credentialed(c, internal_credential) for c in self._channels)
        self.history = hgrpc.HistoryServiceStub(history)
        self.matching = mgrpc.MatchingServiceStub(matching)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def token(self, run_id: str, attempt: int) -> str:
        """The attempt_token of an attempt handed to this tier ('' for any other)."""
        return self.tokens.get((run_id, attempt), "")

    def _handed(self, assignments: Iterable[wpb.AttemptAssignment]) -> list[wpb.AttemptAssignment]:
        """The assignments, their tokens kept (see token)."""
        handed = list(assignments)
        for a in handed:
            self.tokens[(a.run_id, a.attempt)] = a.attempt_token
        return handed

    # ---- matching ------------------------------------------------------------------

    async def register(
        self,
        *tasks: str | wpb.TaskDefinition,
        worker_id: str = WORKER_ID,
        version: str = WORKER_VERSION,
        slots: int = 4,
    ) -> None:
        """RegisterWorker with these tasks (a task id stands for a default definition)."""
        definitions = [wpb.TaskDefinition(task_id=t) if isinstance(t, str) else t for t in tasks]
        await self.matching.RegisterWorker(
            wpb.RegisterWorkerRequest(
                namespace=self.namespace, worker_id=worker_id, version=version, tasks=definitions, slots=slots
            ),
            timeout=RPC_TIMEOUT,
        )

    async def poll(
        self,
        *task_ids: str,
        worker_id: str = WORKER_ID,
        max_attempts: int = 1,
        wait: float = 0.0,
    ) -> list[wpb.AttemptAssignment]:
        """PollAttempt; by default it does not wait when nothing is ready."""
        request = wpb.PollAttemptRequest(
            namespace=self.namespace,
            worker_id=worker_id,
            task_ids=task_ids,
            wait=seconds(wait),
            max_attempts=max_attempts,
        )
        response = await self.matching.PollAttempt(request, timeout=RPC_TIMEOUT + wait)
        return self._handed(response.assignments)

    # ---- history -------------------------------------------------------------------

    async def trigger(self, task_id: str, value: Any = None, **fields: Any) -> rpb.TriggerRunResponse:
        """TriggerRun with a JSON payload; fields are other TriggerRunRequest fields."""
        request = rpb.TriggerRunRequest(
            namespace=self.namespace, task_id=task_id, payload=json_payload(value), **fields
        )
        response: rpb.TriggerRunResponse = await self.history.TriggerRun(request, timeout=RPC_TIMEOUT)
        return response

    async def claim(
        self, *task_ids: str, max_attempts: int = 1, worker_id: str = WORKER_ID
    ) -> list[wpb.AttemptAssignment]:
        """ClaimAttempts: history claims and starts up to max_attempts ready runs."""
        request = hpb.ClaimAttemptsRequest(
            namespace=self.namespace,
            task_ids=task_ids,
            max_attempts=max_attempts,
            worker_id=worker_id,
            worker_version=WORKER_VERSION,
        )
        response = await self.history.ClaimAttempts(request, timeout=RPC_TIMEOUT)
        return self._handed(r.assignment for r in response.results if r.HasField("assignment"))

    async def start(self, task_id: str, value: Any = None, **fields: Any) -> wpb.AttemptAssignment:
        """Triggers a run of a registered task and claims it: its first attempt."""
        run_id = (await self.trigger(task_id, value, **fields)).run.id
        (assignment,) = await self.claim(task_id)
        assert assignment.run_id == run_id, "another run of the task was ready"
        return assignment

    async def record_step(
        self, run_id: str, attempt: int, position: int, name: str, value: Any = None, token: str | None = None
    ) -> wpb.RecordStepResponse:
        """RecordStep of a completed step with a JSON output, with the attempt's
        token (see token) unless another is given."""
        request = wpb.RecordStepRequest(
            namespace=self.namespace,
            run_id=run_id,
            attempt=attempt,
            position=position,
            name=name,
            status=cpb.STEP_STATUS_COMPLETED,
            output=json_payload(value),
            tries=1,
            attempt_token=self.token(run_id, attempt) if token is None else token,
        )
        response: wpb.RecordStepResponse = await self.history.RecordStep(request, timeout=RPC_TIMEOUT)
        return response

    async def finish(
        self, run_id: str, attempt: int, outcome: int, value: Any = None, **fields: Any
    ) -> wpb.FinishAttemptResponse:
        """FinishAttempt (an AttemptOutcome); a completed one carries value as its
        output; fields are other FinishAttemptRequest fields (error, wait;
        attempt_token: the attempt's, see token, unless given)."""
        fields.setdefault("attempt_token", self.token(run_id, attempt))
        request = wpb.FinishAttemptRequest(
            namespace=self.namespace, run_id=run_id, attempt=attempt, outcome=outcome, **fields
        )
        if outcome == wpb.ATTEMPT_OUTCOME_COMPLETED:
            request.output.CopyFrom(json_payload(value))
        response: wpb.FinishAttemptResponse = await self.history.FinishAttempt(request, timeout=RPC_TIMEOUT)
        return response

    @staticmethod
    async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
        """The error of a call that must fail."""
        try:
            result = await call
        except grpc.aio.AioRpcError as exc:
            return exc
        raise AssertionError(f"the call succeeded: {result}")

    async def get(self, run_id: str) -> cpb.Run:
        """GetRun: the run in full (attempts, steps, events, wait)."""
        request = rpb.GetRunRequest(namespace=self.namespace, run_id=run_id)
        response = await self.history.GetRun(request, timeout=RPC_TIMEOUT)
        return response.run

    async def wait_status(self, run_id: str, status: int, timeout: float = WAIT_TIMEOUT) -> cpb.Run:
        """The run once it has `status` (a RunStatus), reached in the background."""

        async def reached() -> cpb.Run | None:
            run = await self.get(run_id)
            return run if run.status == status else None

        name = cpb.RunStatus.Name(status)
        return await wait_for_async(reached, timeout, message=f"run {run_id} never became {name}")

    # ---- the database, read only -------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Rows per table: to show that a refused request wrote nothing."""
        conn = await asyncpg.connect(self.database_url, timeout=RPC_TIMEOUT)
        try:
            row = await conn.fetchrow(table_counts_query())
            assert row is not None
            return dict(row)
        finally:
            await conn.close()


def seconds(value: float) -> Duration:
    """A Duration of value seconds."""
    d = Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def json_payload(value: Any) -> cpb.Payload:
    """A json/plain payload of value."""
    return cpb.Payload(data=json.dumps(value).encode(), encoding="json/plain")


class _Serving:
    """Stands in for grpc_server.serve: serves until the fixture's teardown."""

    def __init__(self) -> None:
        self.ready: dict[str, asyncio.Event] = {"history": asyncio.Event(), "matching": asyncio.Event()}
        self.stop = asyncio.Event()

    async def serve(
        self,
        server: grpc.aio.Server,
        health_servicer: Any,
        service_names: Iterable[str],
        name: str,
        listen: str,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        **_options: Any,  # grace, draining, ...: a real shutdown's, not the fixture's
    ) -> None:
        await server.start()
        try:
            for svc in [*service_names, ""]:
                await health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
            self.ready[name].set()
            await self.stop.wait()
        finally:
            await server.stop(grace=None)
            if on_stop is not None:
                await on_stop()


def _settings(argv: list[str]) -> Any:
    """A service's Settings from flags, as its main() parses them."""
    parser = argparse.ArgumentParser()
    add_service_flags(parser, "127.0.0.1:0")
    return settings_from_args(parser.parse_args(argv))


async def _start(
    serving: _Serving,
    runs: dict[str, Callable[[Any], Coroutine[Any, Any, None]]],
    argv: dict[str, list[str]],
) -> list[asyncio.Task[None]]:
    """Starts each service's run() and waits until all serve; fails with the
    error of one that ended while starting."""
    tasks = {name: asyncio.create_task(run(_settings(argv[name]))) for name, run in runs.items()}
    waits = {name: asyncio.create_task(serving.ready[name].wait()) for name in runs}
    pending = set(waits.values())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while pending:
                done, _ = await asyncio.wait([*pending, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
                for name, task in tasks.items():
                    if task in done:
                        task.result()  # raises its error
                        raise RuntimeError(f"{name} ended while starting")
                pending -= done
    except BaseException:
        serving.stop.set()
        for waiting in waits.values():
            waiting.cancel()
        for task in tasks.values():
            task.cancel()
        raise
    return list(tasks.values())


@pytest.fixture
def services(
    loop_runner: asyncio.Runner,
    request: pytest.FixtureRequest,
    postgres_server: Any,
    nats: Any,
    service_template: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    """History and matching serving in process on a fresh database (see the
    module docstring); yields the Services to call them with."""
    for name in [k for k in os.environ if k.startswith("CAIRN_")]:
        monkeypatch.delenv(name)  # a developer's shell must not change the services' settings
    serving = _Serving()
    monkeypatch.setattr(grpc_server, "serve", serving.serve)
    if not nats.running:
        nats.start()
    name = new_database_name(request.node.name)
    database_url = loop_runner.run(clone_database(postgres_server.url, service_template, name))
    history_address, matching_address = (f"127.0.0.1:{port}" for port in free_ports(2))
    marker = request.node.get_closest_marker("lease_seconds")
    lease = float(marker.args[0]) if marker else LEASE_SECONDS
    sweep = ["--sweep-seconds", f"{SHORT_LEASE_SWEEP:g}"] if marker else []
    prefix = "s" + secrets.token_hex(4)
    credential = secrets.token_urlsafe(32)
    common = [
        f"--internal-credential={credential}",  # with "=": it may start with "-"
        "--database-url",
        database_url,
        "--nats-url",
        nats.url,
        "--nats-prefix",
        prefix,
        "--history-address",
        history_address,
        "--matching-address",
        matching_address,
        "--lease-seconds",
        f"{lease:g}",
        "--retention-days",
        "0",
        *sweep,
    ]
    argv = {
        "history": ["--listen", history_address, *common],
        "matching": ["--listen", matching_address, *common],
    }
    tasks = loop_runner.run(
        _start(serving, {"history": history_main.run, "matching": matching_main.run}, argv)
    )
    tier = Services(database_url, history_address, matching_address, nats.url, prefix, credential)
    try:
        yield tier
    finally:

        async def stop() -> None:
            await tier.close()
            serving.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), STARTUP_TIMEOUT)
            if not KEEP_DATA:  # its pages need not be written at the server's shutdown
                await drop_database(postgres_server.url, name)

        loop_runner.run(stop())
