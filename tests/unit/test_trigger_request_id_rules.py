"""A trigger's request id (TriggerRunRequest.request_id, issue 15): the SDK and
the CLI give every trigger without an idempotency key a new one (a UUID), each
item of a batch its own, and the frontend refuses a malformed one, or one two
items of a batch share, INVALID_ARGUMENT naming the field. In-memory stubs and
the validators; the dedup itself is history's (tests/service)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from sdk_fakes import FakeStub
from test_sdk_watch import client_with

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli import frontend as cli_frontend
from services.common.errors import ServiceError
from services.frontend import validation
from worker_sdk import _requests


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class Triggers(FakeStub):
    """TriggerRun and BatchTriggerRuns answering a run per request, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Any] = []

    async def TriggerRun(self, request: rpb.TriggerRunRequest, timeout: float | None = None) -> Any:  # type: ignore[override]
        self.sent.append(request)
        return rpb.TriggerRunResponse(run=cpb.Run(id=str(uuid.uuid4()), task_id=request.task_id))

    async def BatchTriggerRuns(
        self, request: rpb.BatchTriggerRunsRequest, timeout: float | None = None
    ) -> Any:
        self.sent.append(request)
        return rpb.BatchTriggerRunsResponse(
            runs=[
                rpb.TriggerRunResponse(run=cpb.Run(id=str(uuid.uuid4()), task_id=r.task_id))
                for r in request.runs
            ]
        )


def test_the_sdk_gives_each_trigger_without_a_key_a_new_request_id() -> None:
    fake = Triggers()
    client = client_with(fake)
    asyncio.run(client.trigger("t", 1))
    asyncio.run(client.trigger("t", 1))
    asyncio.run(client.trigger("t", 1, idempotency_key="order-1"))
    asyncio.run(
        client.batch_trigger([("t", 1), {"task": "t", "payload": 2}, {"task": "t", "idempotency_key": "k"}])
    )
    one, two, keyed, batch = fake.sent
    assert is_uuid(one.request_id) and is_uuid(two.request_id) and one.request_id != two.request_id
    assert (keyed.request_id, keyed.idempotency_key) == ("", "order-1")  # the key decides
    ids = [r.request_id for r in batch.runs]
    assert is_uuid(ids[0]) and is_uuid(ids[1]) and ids[0] != ids[1] and ids[2] == ""
    request = _requests.trigger_request("ns", "t", None, None, {})
    assert is_uuid(request.request_id)


def test_the_cli_gives_each_trigger_without_a_key_a_new_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Triggers()

    class Sync:
        def TriggerRun(self, request: rpb.TriggerRunRequest, timeout: float | None = None) -> Any:
            return asyncio.run(fake.TriggerRun(request, timeout))

    frontend = cli_frontend.Frontend(address="127.0.0.1:1", namespace="ns")
    monkeypatch.setattr(frontend, "_runs", Sync)
    frontend.trigger("t", {"a": 1})
    frontend.trigger("t", {"a": 1})
    frontend.trigger("t", {"a": 1}, idempotency_key="k")
    one, two, keyed = fake.sent
    assert is_uuid(one.request_id) and is_uuid(two.request_id) and one.request_id != two.request_id
    assert keyed.request_id == ""


def refusal(check: Any, request: Any) -> str:
    with pytest.raises(ServiceError) as refused:
        check(request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return refused.value.message


@pytest.mark.parametrize("bad", ["a b", "x" * 65, "é", "id/1", "\x00", "id\n"])
def test_the_frontend_refuses_a_malformed_request_id_naming_it(bad: str) -> None:
    message = refusal(validation.trigger, rpb.TriggerRunRequest(task_id="t", request_id=bad))
    assert message.startswith("request_id: ") and "1-64 letters, digits" in message
    batch = rpb.BatchTriggerRunsRequest(
        namespace="default",
        runs=[rpb.TriggerRunRequest(task_id="t"), rpb.TriggerRunRequest(task_id="t", request_id=bad)],
    )
    assert refusal(validation.batch_trigger, batch).startswith("runs[1].request_id: ")


def test_the_frontend_takes_a_uuid_and_refuses_one_shared_in_a_batch() -> None:
    for good in (str(uuid.uuid4()), uuid.uuid4().hex, "a", "A.b_c:d-e" + "x" * 55):
        validation.trigger(rpb.TriggerRunRequest(task_id="t", request_id=good))
    same = str(uuid.uuid4())
    batch = rpb.BatchTriggerRunsRequest(
        namespace="default",
        runs=[rpb.TriggerRunRequest(task_id="t", request_id=r) for r in (same, str(uuid.uuid4()), same)],
    )
    assert refusal(validation.batch_trigger, batch) == f"runs[2].request_id: {same!r} is also runs[0]'s"
