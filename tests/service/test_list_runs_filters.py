"""HistoryService.ListRuns' queue and creation-time filters, combined with each
other, with the older filters (status, task, tag, parent) and with cursor
paging (newest first by (created_at, id)): every page walk must give exactly
the runs a Python oracle picks from what the test made, in that order, each
once, for several page sizes.

The runs' creation times are set by the test (an UPDATE of created_at), in
pairs that share a time, so pages break between two runs of one time too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import worker_service_pb2 as wpb

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
QUEUES = {"lf-a": "fast", "lf-b": "fast", "lf-c": "slow", "lf-d": ""}  # "": the task id is its queue
RUNS = 16


@dataclass(frozen=True)
class Made:
    id: str
    task: str
    queue: str
    tagged: bool
    canceled: bool
    parent: str
    created_at: datetime


def timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


async def make_runs(services: Any) -> list[Made]:
    """RUNS runs over the four tasks: every other one tagged 'x', every third
    one canceled, the last four children of the first, two per minute from T0."""
    await services.register(*[wpb.TaskDefinition(task_id=t, queue=q) for t, q in QUEUES.items()])
    made: list[Made] = []
    for i in range(RUNS):
        task = list(QUEUES)[i % 4]
        tags = ["x"] if i % 2 == 0 else []
        parent = made[0].id if i >= RUNS - 4 else ""
        run = (
            await services.trigger(task, i, options=cpb.TriggerOptions(tags=tags), parent_run_id=parent)
        ).run
        canceled = i % 3 == 0
        if canceled:
            await services.history.CancelRun(
                rpb.CancelRunRequest(namespace=services.namespace, run_id=run.id)
            )
        made.append(
            Made(
                run.id,
                task,
                QUEUES[task] or task,
                bool(tags),
                canceled,
                parent,
                T0 + timedelta(minutes=i // 2),
            )
        )
    conn = await asyncpg.connect(services.database_url)
    try:  # the test sets the creation times: pairs of runs share one
        await conn.executemany(
            "UPDATE runs SET created_at = $2 WHERE id = $1", [(uuid.UUID(m.id), m.created_at) for m in made]
        )
    finally:
        await conn.close()
    return made


def oracle(made: list[Made], f: dict[str, Any]) -> list[str]:
    """The ids ListRuns must give for filters f, in its order."""
    picked = [
        m
        for m in made
        if (not f.get("queue") or m.queue == f["queue"])
        and (not f.get("task_id") or m.task == f["task_id"])
        and (not f.get("tag") or m.tagged)
        and (not f.get("parent_run_id") or m.parent == f["parent_run_id"])
        and (not f.get("statuses") or m.canceled == (f["statuses"] == [cpb.RUN_STATUS_CANCELED]))
        and ("created_after" not in f or m.created_at >= f["created_after"])
        and ("created_before" not in f or m.created_at < f["created_before"])
    ]
    picked.sort(key=lambda m: (m.created_at, uuid.UUID(m.id)), reverse=True)
    return [m.id for m in picked]


async def walk(services: Any, page_size: int, f: dict[str, Any]) -> list[str]:
    """Every page of ListRuns with filters f: the ids in order."""
    fields = {k: timestamp(v) if isinstance(v, datetime) else v for k, v in f.items()}
    request = rpb.ListRunsRequest(namespace=services.namespace, page_size=page_size, **fields)
    ids: list[str] = []
    for _ in range(RUNS + 2):
        page = await services.history.ListRuns(request)
        ids.extend(r.id for r in page.runs)
        assert len(page.runs) <= page_size
        if not page.next_page_token:
            return ids
        request.page_token = page.next_page_token
    raise AssertionError(f"ListRuns{f} never ended")


async def test_queue_and_time_filters_combine_with_the_others_and_with_paging(services):
    made = await make_runs(services)
    parent = made[0].id
    t2, t5 = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)  # each the time of a pair
    combos: list[dict[str, Any]] = [
        {},
        {"queue": "fast"},
        {"queue": "slow"},
        {"queue": "lf-d"},  # a task without a queue of its own: its id
        {"queue": "no-such-queue"},
        {"created_after": t2},  # inclusive: the pair at t2 is in
        {"created_before": t5},  # exclusive: the pair at t5 is out
        {"created_after": t2, "created_before": t5},
        {"created_after": t2, "created_before": t2 + timedelta(microseconds=1)},  # one pair
        {"created_after": T0 + timedelta(days=1)},  # nothing that late
        {"queue": "fast", "created_after": t2, "created_before": t5},
        {"queue": "fast", "statuses": [cpb.RUN_STATUS_CANCELED]},
        {"queue": "fast", "statuses": [cpb.RUN_STATUS_QUEUED], "created_before": t5},
        {"queue": "fast", "tag": "x"},
        {"queue": "fast", "task_id": "lf-b"},
        {"queue": "slow", "task_id": "lf-a"},  # nothing: lf-a is on fast
        {"queue": "fast", "parent_run_id": parent},
        {"parent_run_id": parent, "created_after": T0 + timedelta(minutes=7)},
        {"task_id": "lf-c", "created_after": t2, "created_before": t5},
        {"tag": "x", "created_before": t5, "statuses": [cpb.RUN_STATUS_QUEUED]},
    ]
    for f in combos:
        expected = oracle(made, f)
        for size in (1, 3, 50):
            assert await walk(services, size, f) == expected, (f, size)
    assert len(oracle(made, {"queue": "fast"})) == RUNS // 2
    assert oracle(made, {"created_after": t2, "created_before": t2 + timedelta(microseconds=1)})
    assert not oracle(made, {"queue": "slow", "task_id": "lf-a"})


async def test_a_page_token_keeps_its_place_within_the_time_range(services):
    """A token made under a time range, used with it: the next page goes on
    after the token's run, still within the range, and the last page has no
    token even when the range ends exactly after it."""
    made = await make_runs(services)
    f = {"created_after": T0 + timedelta(minutes=1), "created_before": T0 + timedelta(minutes=4)}
    expected = oracle(made, f)
    assert len(expected) == 6
    request = rpb.ListRunsRequest(
        namespace=services.namespace, page_size=3, **{k: timestamp(v) for k, v in f.items()}
    )
    first = await services.history.ListRuns(request)
    assert [r.id for r in first.runs] == expected[:3] and first.next_page_token
    request.page_token = first.next_page_token
    second = await services.history.ListRuns(request)
    assert [r.id for r in second.runs] == expected[3:]
    assert second.next_page_token == ""
    for r in [*first.runs, *second.runs]:
        assert f["created_after"] <= r.created_at.ToDatetime(tzinfo=UTC) < f["created_before"]
