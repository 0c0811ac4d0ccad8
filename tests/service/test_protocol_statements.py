"""What the protos state beyond their fields holds (issue 11, finding 11): every
run event type history writes is listed, with its details, in RunEvent's
comment; a step record renews the attempt's lease, the identical re-record
too; a suspension resolved at once by a buffered event answers QUEUED."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
from harness import json_payload

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import wait_service_pb2 as wspb
from cairn.v1 import worker_service_pb2 as wpb

ROOT = Path(__file__).resolve().parents[2]
TASK = "statements-task"
DOCUMENTED = re.compile(r'"([a-z_]+)"')


def documented_event_types() -> set[str]:
    """The quoted names of the type list in the comment above `message RunEvent`
    (its bullets and their continuation lines)."""
    text = (ROOT / "proto/cairn/v1/common.proto").read_text()
    comment = text[: text.index("message RunEvent")].rsplit("\n\n", 1)[1]
    bullets = comment.split("// - ", 1)[1].split("Readers should skip")[0]
    return set(DOCUMENTED.findall(bullets))


async def sql_rows(services: Any, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(services.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def event_wait(position: int) -> wpb.WaitSpec:
    return wpb.WaitSpec(position=position, name="wait.for_event", event=wpb.EventWait(name="go", key=""))


async def test_every_event_type_history_writes_is_documented(services):
    await services.register(TASK)
    a = await services.start(TASK, {"n": 1})
    await services.record_step(a.run_id, 1, 0, "first", 1)
    await services.history.UpdateRunMetadata(
        wpb.UpdateRunMetadataRequest(
            namespace=services.namespace, run_id=a.run_id, attempt=1, attempt_token=a.attempt_token
        )
    )
    await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_SUSPENDED, wait=event_wait(1))
    await services.history.SendEvent(
        wspb.SendEventRequest(
            namespace=services.namespace, run_id=a.run_id, name="go", payload=json_payload(2)
        )
    )
    (b,) = await services.claim(TASK)
    await services.finish(
        b.run_id, 2, wpb.ATTEMPT_OUTCOME_FAILED, error=cpb.ErrorInfo(type="Boom", message="try again")
    )
    await services.wait_status(a.run_id, cpb.RUN_STATUS_QUEUED)
    (c,) = await services.claim(TASK)
    await services.finish(c.run_id, 3, wpb.ATTEMPT_OUTCOME_COMPLETED, {"done": True})
    other = (await services.trigger(TASK, {"n": 2})).run.id
    await services.history.CancelRun(rpb.CancelRunRequest(namespace=services.namespace, run_id=other))

    written = {r["type"] for r in await sql_rows(services, "SELECT DISTINCT type FROM run_events")}
    assert {"triggered", "attempt_started", "step_recorded", "suspended", "completed", "canceled"} <= written
    assert written <= documented_event_types(), written - documented_event_types()


async def test_a_step_record_renews_the_lease_and_so_does_the_identical_re_record(services):
    await services.register(TASK)
    a = await services.start(TASK)
    query = "SELECT due_at FROM timers WHERE run_id = $1 AND kind = 'lease'"
    (before,) = await sql_rows(services, query, a.run_id)
    await services.record_step(a.run_id, 1, 0, "first", 1)
    (after_record,) = await sql_rows(services, query, a.run_id)
    assert after_record["due_at"] > before["due_at"]
    again = await services.record_step(a.run_id, 1, 0, "first", 1)
    assert again.step.position == 0 and again.step.name == "first"
    (after_again,) = await sql_rows(services, query, a.run_id)
    assert after_again["due_at"] > after_record["due_at"]


async def test_a_suspension_resolved_at_once_by_a_buffered_event_answers_queued(services):
    await services.register(TASK)
    a = await services.start(TASK)
    sent = await services.history.SendEvent(
        wspb.SendEventRequest(
            namespace=services.namespace, run_id=a.run_id, name="go", payload=json_payload(1)
        )
    )
    assert sent.buffered
    answer = await services.finish(a.run_id, 1, wpb.ATTEMPT_OUTCOME_SUSPENDED, wait=event_wait(0))
    assert answer.run_status == cpb.RUN_STATUS_QUEUED
