"""Queues in the SDK: the concurrency_key option, queue management in the
clients (update, list, pause, resume) and a queue's JSON form, against an
in-memory stand-in for the RunService and QueueService stubs; and the worker's
queue filter (which tasks a worker serves, registers and polls for). No
cluster."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from cairn.run_json import queue_to_dict, run_to_dict
from cairn.v1 import common_pb2
from cairn.v1 import queue_service_pb2 as qpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import AsyncClient, Queue, RateLimit, Worker, _children, task
from worker_sdk._requests import options_from_kwargs, trigger_options


async def _handler(payload: Any) -> Any:
    return payload


# ---- concurrency_key ---------------------------------------------------------------------


def test_concurrency_key_option() -> None:
    assert trigger_options(concurrency_key="tenant-1").concurrency_key == "tenant-1"
    assert trigger_options(concurrency_key="k" * 128).concurrency_key == "k" * 128
    assert trigger_options().concurrency_key == ""
    opts = options_from_kwargs("video.trigger_and_wait", {"concurrency_key": "t"})
    assert opts.concurrency_key == "t"


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("", ValueError, "concurrency_key must not be empty"),
        ("k" * 129, ValueError, "129 characters; at most 128"),
        (7, TypeError, "concurrency_key must be a string"),
    ],
)
def test_bad_concurrency_key(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        trigger_options(concurrency_key=value)


def test_run_json_concurrency_key() -> None:
    assert run_to_dict(common_pb2.Run(id="r", concurrency_key="t1"))["concurrency_key"] == "t1"
    assert run_to_dict(common_pb2.Run(id="r"))["concurrency_key"] is None


# ---- the clients, against an in-memory stub ----------------------------------------------


def _queue(name: str, **fields: Any) -> qpb.Queue:
    return qpb.Queue(name=name, namespace="ns", **fields)


class Recorder:
    """Stands in for the RunService and QueueService stubs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, method: str) -> Any:
        responses = {
            "TriggerRun": lambda r: rpb.TriggerRunResponse(
                run=common_pb2.Run(id="r1", task_id=r.task_id, concurrency_key=r.options.concurrency_key)
            ),
            "BatchTriggerRuns": lambda r: rpb.BatchTriggerRunsResponse(
                runs=[
                    rpb.TriggerRunResponse(run=common_pb2.Run(id=f"r{i}", task_id=item.task_id))
                    for i, item in enumerate(r.runs)
                ]
            ),
            "UpdateQueue": lambda r: qpb.UpdateQueueResponse(
                queue=_queue(
                    r.name,
                    concurrency_limit=r.concurrency_limit,
                    rate_limit=r.rate_limit,
                    max_depth=r.max_depth,
                    managed=True,
                )
            ),
            "ListQueues": lambda r: qpb.ListQueuesResponse(
                queues=[_queue("a", depth=3, running=1), _queue("b", paused=True)]
            ),
            "PauseQueue": lambda r: qpb.PauseQueueResponse(queue=_queue(r.name, paused=True)),
            "ResumeQueue": lambda r: qpb.ResumeQueueResponse(queue=_queue(r.name)),
        }
        if method not in responses:
            raise AttributeError(method)

        async def call(request: Any, timeout: float | None = None) -> Any:
            self.calls.append((method, request))
            return responses[method](request)

        return call

    def request(self, method: str) -> Any:
        return [r for m, r in self.calls if m == method][-1]


def client_with(stub: Recorder) -> AsyncClient:
    client = AsyncClient(address="127.0.0.1:1", namespace="ns")
    client._stub = client._queue_stub = stub  # type: ignore[assignment]
    return client


def test_client_sends_the_concurrency_key() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        run = await client.trigger("t", {}, concurrency_key="tenant-7")
        assert stub.request("TriggerRun").options.concurrency_key == "tenant-7"
        assert run.concurrency_key == "tenant-7"
        await client.batch_trigger([{"task": "t", "payload": 1, "concurrency_key": "a"}, ("t", 2)])
        batch = stub.request("BatchTriggerRuns")
        assert [r.options.concurrency_key for r in batch.runs] == ["a", ""]
        with pytest.raises(ValueError, match="concurrency_key must not be empty"):
            await client.trigger("t", concurrency_key="")

    asyncio.run(main())


def test_task_trigger_outside_a_task_sends_the_concurrency_key(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = Recorder()
    monkeypatch.setattr(_children, "make_stub", lambda cls, channel: stub)
    child = task(id="child")(_handler)
    asyncio.run(child.trigger({"x": 1}, concurrency_key="k1"))
    assert stub.request("TriggerRun").options.concurrency_key == "k1"


def test_update_queue_sets_only_the_given_fields() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        q = await client.update_queue("video", concurrency_limit=5)
        req = stub.request("UpdateQueue")
        assert (req.namespace, req.name, req.concurrency_limit) == ("ns", "video", 5)
        assert req.HasField("concurrency_limit")
        assert not req.HasField("max_depth") and not req.HasField("rate_limit")
        assert q.concurrency_limit == 5 and q.managed is True

        await client.update_queue("video", concurrency_limit=0, max_depth=0)
        req = stub.request("UpdateQueue")
        assert req.HasField("concurrency_limit") and req.concurrency_limit == 0
        assert req.HasField("max_depth") and req.max_depth == 0

        q = await client.update_queue("video", rate_limit=(10, timedelta(minutes=1)), max_depth=100)
        req = stub.request("UpdateQueue")
        assert req.rate_limit.limit == 10 and req.rate_limit.period == Duration(seconds=60)
        assert not req.HasField("concurrency_limit") and req.max_depth == 100
        assert q.rate_limit == RateLimit(10, timedelta(seconds=60)) and q.max_depth == 100

        q = await client.update_queue("video", rate_limit=(0, 0))
        req = stub.request("UpdateQueue")
        assert req.HasField("rate_limit") and req.rate_limit.limit == 0
        assert q.rate_limit is None

        await client.update_queue("video")
        assert stub.request("UpdateQueue").ByteSize() == len(
            qpb.UpdateQueueRequest(namespace="ns", name="video").SerializeToString()
        )

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"concurrency_limit": -1}, ValueError, "concurrency_limit must be from 0"),
        ({"concurrency_limit": 2**31}, ValueError, "concurrency_limit must be from 0"),
        ({"concurrency_limit": 1.5}, TypeError, "concurrency_limit must be an int"),
        ({"max_depth": True}, TypeError, "max_depth must be an int"),
        ({"rate_limit": 10}, TypeError, r"rate_limit must be a \(limit, period\) pair"),
        ({"rate_limit": (10, 0)}, ValueError, "rate_limit period must be greater than 0"),
        ({"rate_limit": (10, "1s")}, TypeError, "rate_limit period must be a timedelta"),
        ({"rate_limit": (-1, 1)}, ValueError, "rate_limit limit must be from 0"),
    ],
)
def test_bad_queue_settings(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    client = client_with(Recorder())
    with pytest.raises(error, match=match):
        asyncio.run(client.update_queue("video", **kwargs))


def test_list_pause_and_resume_queues() -> None:
    stub = Recorder()

    async def main() -> None:
        client = client_with(stub)
        queues = await client.list_queues()
        assert [(q.name, q.depth, q.running, q.paused) for q in queues] == [
            ("a", 3, 1, False),
            ("b", 0, 0, True),
        ]
        assert stub.request("ListQueues").namespace == "ns"
        assert (await client.pause_queue("video")).paused is True
        assert stub.request("PauseQueue").name == "video"
        assert (await client.resume_queue("video")).paused is False
        with pytest.raises(ValueError, match="queue name 'bad name' is invalid"):
            await client.pause_queue("bad name")

    asyncio.run(main())


def test_queue_json() -> None:
    q = qpb.Queue(
        name="video",
        namespace="default",
        concurrency_limit=3,
        max_depth=50,
        paused=True,
        depth=7,
        running=3,
        managed=True,
        rate_limit=qpb.RateLimit(limit=10, period=Duration(nanos=500_000_000)),
    )
    q.updated_at.FromSeconds(0)
    assert queue_to_dict(q) == {
        "name": "video",
        "namespace": "default",
        "concurrency_limit": 3,
        "rate_limit": {"limit": 10, "period": 0.5},
        "max_depth": 50,
        "paused": True,
        "depth": 7,
        "running": 3,
        "managed": True,
        "updated_at": "1970-01-01T00:00:00.000Z",
    }
    empty = queue_to_dict(qpb.Queue(name="x"))
    assert (empty["rate_limit"], empty["concurrency_limit"], empty["max_depth"], empty["updated_at"]) == (
        None,
        0,
        0,
        None,
    )


# ---- the worker's queue filter -----------------------------------------------------------


def _tasks() -> list[Any]:
    return [
        task(id="encode", queue=Queue("video", concurrency_limit=2))(_handler),
        task(id="thumb", queue="video")(_handler),
        task(id="mail", queue="email")(_handler),
        task(id="report")(_handler),
    ]


def test_worker_serves_only_the_tasks_of_its_queues() -> None:
    tasks = _tasks()
    assert sorted(Worker(tasks, queues=["video"]).tasks) == ["encode", "thumb"]
    assert sorted(Worker(tasks, queues=["email", "report"]).tasks) == ["mail", "report"]
    assert sorted(Worker(tasks, queues="email").tasks) == ["mail"]
    assert Worker(tasks, queues=["video", "missing"]).queues == ["video"]
    assert len(Worker(tasks).tasks) == 4 and Worker(tasks).queues is None
    with pytest.raises(
        ValueError,
        match="no task is on queue\\(s\\) audio, music; the tasks' queues are email, report, video",
    ):
        Worker(tasks, queues=["music", "audio"])
    with pytest.raises(ValueError, match="at least one queue"):
        Worker(tasks, queues=[])


def test_worker_registers_and_polls_only_its_queues_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(_tasks(), address="127.0.0.1:1", queues=["video"])
    seen: dict[str, Any] = {}

    class Stub:
        async def RegisterWorker(self, request: Any, timeout: float) -> None:
            seen["registered"] = [t.task_id for t in request.tasks]
            worker.stop()

    async def main() -> None:
        worker._stop = asyncio.Event()
        worker._register_lock = asyncio.Lock()
        worker._stub = Stub()
        assert await worker._ensure_registered()

    asyncio.run(main())
    assert sorted(seen["registered"]) == ["encode", "thumb"]
