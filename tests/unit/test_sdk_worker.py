"""Worker and Client against an in-process fake of the frontend's gRPC services
(plain Python, no cluster): registration, polling, stopping, client calls and
error mapping."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from harness.waiting import wait_for_async

from cairn import payloads
from cairn.v1 import common_pb2, run_service_pb2_grpc, worker_service_pb2_grpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import (
    AsyncClient,
    Client,
    FailedPreconditionError,
    NotFoundError,
    RunFailedError,
    UnavailableError,
    Worker,
    context,
    step,
    task,
)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message


class _ItemContext:
    """What a batched write's handler aborts with: the write's own error."""

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        raise _Refused(code, message)


class FakeFrontend(worker_service_pb2_grpc.WorkerServiceServicer, run_service_pb2_grpc.RunServiceServicer):
    """Just enough of the frontend: runs live in a dict, a trigger queues an
    attempt, PollAttempt hands it out, FinishAttempt completes or fails the run."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.registrations: list[wpb.RegisterWorkerRequest] = []
        self.runs: dict[str, common_pb2.Run] = {}
        self.ready: list[str] = []
        self.polls = 0

    # WorkerService
    def RegisterWorker(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.registrations.append(request)
        return wpb.RegisterWorkerResponse()

    def PollAttempt(self, request: Any, context: Any) -> Any:
        deadline = time.monotonic() + 1.0
        with self.lock:
            self.polls += 1
            while not self.ready:
                left = deadline - time.monotonic()
                if left <= 0 or not context.is_active():
                    return wpb.PollAttemptResponse()
                self.lock.wait(min(left, 0.05))
            run = self.runs[self.ready.pop(0)]
            run.status = common_pb2.RUN_STATUS_EXECUTING
            run.attempt_count += 1
            lease = wpb.AttemptAssignment().lease_duration
            lease.FromSeconds(3)
            return wpb.PollAttemptResponse(
                assignments=[
                    wpb.AttemptAssignment(
                        run_id=run.id,
                        attempt=run.attempt_count,
                        task_id=run.task_id,
                        payload=run.input,
                        steps=list(run.steps),
                        lease_duration=lease,
                    )
                ]
            )

    def Heartbeat(self, request: Any, context: Any) -> Any:
        return wpb.HeartbeatResponse()

    def RecordStep(self, request: Any, context: Any) -> Any:
        with self.lock:
            run = self.runs[request.run_id]
            if any(s.position == request.position for s in run.steps):
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "position recorded")
            s = run.steps.add(
                position=request.position,
                name=request.name,
                status=request.status,
                attempt=request.attempt,
                tries=request.tries,
            )
            if request.HasField("output"):
                s.output.CopyFrom(request.output)
            if request.HasField("error"):
                s.error.CopyFrom(request.error)
            return wpb.RecordStepResponse(step=s)

    def FinishAttempt(self, request: Any, context: Any) -> Any:
        with self.lock:
            run = self.runs[request.run_id]
            if run.status != common_pb2.RUN_STATUS_EXECUTING:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "attempt is not current")
            if request.outcome == wpb.ATTEMPT_OUTCOME_COMPLETED:
                run.status = common_pb2.RUN_STATUS_COMPLETED
                run.output.CopyFrom(request.output)
            else:
                run.status = common_pb2.RUN_STATUS_FAILED
                run.error.CopyFrom(request.error)
            self.lock.notify_all()
            return wpb.FinishAttemptResponse(run_status=run.status)

    def BatchWrite(self, request: Any, context: Any) -> Any:
        response = wpb.BatchWriteResponse()
        for w in request.writes:
            kind = w.WhichOneof("write")
            item = response.results.add()
            try:
                handler = self.RecordStep if kind == "record_step" else self.FinishAttempt
                getattr(item, kind).CopyFrom(handler(getattr(w, kind), _ItemContext()))
            except _Refused as exc:
                item.error.code, item.error.message = exc.code.value[0], exc.message
        return response

    # RunService
    def TriggerRun(self, request: Any, context: Any) -> Any:
        if request.task_id == "unknown":
            context.abort(grpc.StatusCode.NOT_FOUND, "task 'unknown' is not registered")
        with self.lock:
            for run in self.runs.values():
                if request.idempotency_key and run.idempotency_key == request.idempotency_key:
                    return rpb.TriggerRunResponse(run=run, existing=True)
            run = common_pb2.Run(
                id=uuid.uuid4().hex,
                namespace=request.namespace,
                task_id=request.task_id,
                queue=request.task_id,
                status=common_pb2.RUN_STATUS_QUEUED,
                input=request.payload,
                idempotency_key=request.idempotency_key,
            )
            self.runs[run.id] = run
            self.ready.append(run.id)
            self.lock.notify_all()
            return rpb.TriggerRunResponse(run=run)

    def GetRun(self, request: Any, context: Any) -> Any:
        with self.lock:
            if request.run_id not in self.runs:
                context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.run_id} not found")
            return rpb.GetRunResponse(run=self.runs[request.run_id])

    def ListRuns(self, request: Any, context: Any) -> Any:
        with self.lock:
            runs = [
                r
                for r in self.runs.values()
                if (not request.task_id or r.task_id == request.task_id)
                and (not request.statuses or r.status in request.statuses)
            ]
        start = int(request.page_token or 0)
        page = runs[start : start + request.page_size]
        token = str(start + len(page)) if start + len(page) < len(runs) else ""
        return rpb.ListRunsResponse(runs=page, next_page_token=token)

    def CancelRun(self, request: Any, context: Any) -> Any:
        with self.lock:
            run = self.runs[request.run_id]
            if run.status in (
                common_pb2.RUN_STATUS_COMPLETED,
                common_pb2.RUN_STATUS_FAILED,
                common_pb2.RUN_STATUS_CANCELED,
            ):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"run {run.id} already finished")
            run.status = common_pb2.RUN_STATUS_CANCELED
            if run.id in self.ready:
                self.ready.remove(run.id)
            self.lock.notify_all()
            return rpb.CancelRunResponse(run=run)

    def WaitRun(self, request: Any, context: Any) -> Any:
        deadline = time.monotonic() + request.timeout.ToTimedelta().total_seconds()
        with self.lock:
            run = self.runs[request.run_id]
            while run.status not in (
                common_pb2.RUN_STATUS_COMPLETED,
                common_pb2.RUN_STATUS_FAILED,
                common_pb2.RUN_STATUS_CANCELED,
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(min(left, 0.05))
            done = run.status in (
                common_pb2.RUN_STATUS_COMPLETED,
                common_pb2.RUN_STATUS_FAILED,
                common_pb2.RUN_STATUS_CANCELED,
            )
            return rpb.WaitRunResponse(run=run, done=done)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(fake: FakeFrontend, port: int = 0) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(fake, server)
    run_service_pb2_grpc.add_RunServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def frontend() -> Iterator[tuple[FakeFrontend, str]]:
    fake = FakeFrontend()
    server, address = start_server(fake)
    yield fake, address
    server.stop(0)


@step(name="double")
async def double(x: int) -> int:
    return x * 2


@task(id="math")
async def math_task(payload: dict) -> dict:
    doubled = await double(payload["x"])
    return {"doubled": doubled, "run": context.run_id}


@task(id="fails")
async def failing_task(payload: Any) -> None:
    raise ValueError("nope")


def test_worker_runs_attempts_and_client_sees_results(frontend: tuple[FakeFrontend, str]) -> None:
    fake, address = frontend

    async def main() -> None:
        worker = Worker([math_task, failing_task], address=address, slots=2, version="v1", worker_id="w-test")
        running = asyncio.create_task(worker.run())
        async with AsyncClient(address=address) as client:
            run = await client.trigger_and_wait("math", {"x": 21}, timeout=10)
            assert run.status == "completed" and run.done
            assert run.output == {"doubled": 42, "run": run.id}
            assert [s.name for s in run.steps] == ["double"]
            with pytest.raises(RunFailedError) as info:
                await client.trigger_and_wait(failing_task, None, timeout=10)
            assert info.value.run.status == "failed"
            assert info.value.run.error is not None and info.value.run.error.type == "ValueError"
            assert "nope" in str(info.value)
        started = time.monotonic()
        worker.stop()
        await asyncio.wait_for(running, 5)
        assert time.monotonic() - started < 2, "stop must not wait for a long poll"

    asyncio.run(main())
    [reg] = fake.registrations[:1]
    assert (reg.worker_id, reg.version, reg.slots) == ("w-test", "v1", 2)
    assert sorted(t.task_id for t in reg.tasks) == ["fails", "math"]


def test_worker_waits_for_the_server_to_come_up() -> None:
    port = free_port()
    fake = FakeFrontend()

    async def main() -> None:
        worker = Worker([math_task], address=f"127.0.0.1:{port}", slots=1)
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        assert not running.done()
        server, _ = start_server(fake, port)

        async def registered() -> bool:
            return bool(fake.registrations)

        try:
            await wait_for_async(registered, 10, message="the worker registered once the server was up")
            worker.stop()
            await asyncio.wait_for(running, 5)
        finally:
            server.stop(0)

    asyncio.run(main())


def test_stop_before_registration_returns() -> None:
    async def main() -> None:
        worker = Worker([math_task], address=f"127.0.0.1:{free_port()}")
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)
        worker.stop()
        await asyncio.wait_for(running, 5)

    asyncio.run(main())


def test_stop_lets_a_running_attempt_finish_within_grace(frontend: tuple[FakeFrontend, str]) -> None:
    fake, address = frontend

    started: list[str] = []

    @task(id="slow")
    async def slow(payload: Any) -> str:
        started.append(context.run_id)
        await asyncio.sleep(0.5)
        return "finished"

    async def attempt_started() -> bool:
        return bool(started)

    async def main() -> None:
        worker = Worker([slow], address=address, slots=1, grace=5)
        running = asyncio.create_task(worker.run())
        async with AsyncClient(address=address) as client:
            run = await client.trigger("slow")
            # Wait until the worker runs the attempt, not just until the fake handed it
            # over: a poll cancelled by stop() with its answer in flight loses it.
            await wait_for_async(attempt_started, 10, message="the worker started the attempt")
            assert started == [run.id]
            worker.stop()
            await asyncio.wait_for(running, 5)
            assert (await client.get(run.id)).output == "finished"

    asyncio.run(main())


def test_sync_client_and_error_mapping(frontend: tuple[FakeFrontend, str]) -> None:
    fake, address = frontend
    with Client(address=address, namespace="ns") as client:
        first = client.trigger("math", {"x": 1}, idempotency_key="k1")
        again = client.trigger("math", {"x": 1}, idempotency_key="k1")
        assert again.id == first.id and first.status == "queued" and not first.done
        for i in range(4):
            client.trigger("other", i)
        assert len(client.list()) == 5
        assert len(client.list(limit=3)) == 3
        assert len(client.list(task="other", status=["queued"])) == 4
        assert client.list(status="completed") == []
        with pytest.raises(ValueError, match="status 'finished' is not a run status"):
            client.list(status="finished")
        assert client.get(first.id).idempotency_key == "k1"
        assert client.cancel(first.id, reason="test").status == "canceled"
        with pytest.raises(FailedPreconditionError, match="already finished") as info:
            client.cancel(first.id)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(NotFoundError, match="not found"):
            client.get("missing")
        with pytest.raises(NotFoundError, match="'unknown' is not registered"):
            client.trigger("unknown", {})
        with pytest.raises(payloads.PayloadError, match="payload for task 'math'"):
            client.trigger("math", {"x": object()})
        with pytest.raises(TimeoutError, match=f"run {fake.ready[0]} did not finish"):
            client.wait(fake.ready[0], timeout=0.3)
    assert fake.runs[first.id].namespace == "ns"


def test_unreachable_server_raises_unavailable() -> None:
    with Client(address=f"127.0.0.1:{free_port()}", rpc_timeout=2) as client:
        with pytest.raises(UnavailableError):
            client.get("x")
