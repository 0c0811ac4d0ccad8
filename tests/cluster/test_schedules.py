"""Schedules end to end, against a real cluster (history, matching, frontend,
PostgreSQL, NATS): created over the API with two history replicas (one run per
tick; pause, resume, delete), ticks missed while history was down (caught up
once), declared with a task (from the worker's registration), refused when
bad, and managed from the command line (`cairn schedules ...`).

Task code lives in tests/apps/option_tasks.py; workers run it with
cwd=tests/apps, so it imports as `option_tasks` (option_helpers.py starts them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from harness import Cluster, cairn_cli, expect_rpc_error, hold, schedule_stub, table_counts, wait_for
from option_helpers import JSON, RPC_TIMEOUT, RUN_TIMEOUT, register_over_grpc, start_option_worker

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import schedule_service_pb2 as spb
from worker_sdk import AlreadyExistsError, Client, InvalidArgumentError, NotFoundError, Schedule

SCHEDULE_ENV = "OPTION_TASKS_SCHEDULE"
EVERY_2S = "*/2 * * * * *"


# ---- schedules -----------------------------------------------------------------------


def schedule_runs(cluster: Cluster, schedule_id: str) -> list[Any]:
    return cluster.sql(
        "SELECT id, idempotency_key, created_at, input, status FROM runs "
        "WHERE schedule_id = $1 ORDER BY created_at, id",
        schedule_id,
    )


def tick_of(key: str, dedup_key: str) -> datetime:
    prefix = f"{dedup_key}:"
    assert key.startswith(prefix), f"idempotency key {key!r} does not start with {prefix!r}"
    return datetime.fromisoformat(key[len(prefix) :])


def check_ticks(rows: list[Any], dedup_key: str) -> list[datetime]:
    """One run per tick, ticks on even seconds, consecutive ticks 2 s apart, each
    run created at (or just after) its tick. Returns the ticks in order."""
    ticks = [tick_of(r["idempotency_key"], dedup_key) for r in rows]
    assert len(set(ticks)) == len(ticks), f"two runs for one tick: {sorted(ticks)}"
    ticks.sort()
    for tick in ticks:
        assert tick.second % 2 == 0 and tick.microsecond == 0, tick
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:])]
    assert all(g == 2.0 for g in gaps), f"ticks not 2 s apart: {gaps}"
    for r in rows:
        lag = (r["created_at"] - tick_of(r["idempotency_key"], dedup_key)).total_seconds()
        assert 0 <= lag < 1.5, f"run {r['id']} created {lag:.3f} s after its tick"
    return ticks


def find_schedule(schedules: list[Schedule], schedule_id: str) -> Schedule | None:
    return next((s for s in schedules if s.id == schedule_id), None)


def test_created_schedule_fires_once_per_tick_with_two_history_replicas(
    cluster: Cluster, client: Client
) -> None:
    cluster.add_replica("history")
    start_option_worker(cluster)
    sid, payload = "every-2s", {"from": "schedule", "n": 1}
    created_at = datetime.now(UTC)
    sch = client.create_schedule(sid, "opt-echo", EVERY_2S, payload=payload)
    assert (sch.id, sch.task, sch.cron, sch.timezone) == (sid, "opt-echo", EVERY_2S, "UTC")
    assert sch.payload == payload and sch.paused is False and sch.declared is False
    assert sch.last_run_id is None
    first_fire = sch.next_fire_at
    assert created_at < first_fire <= created_at + timedelta(seconds=2.01), sch
    # A second schedule, deleted while the first is paused: one observation
    # shows that neither a paused nor a deleted schedule fires.
    gone = "every-2s-deleted"
    client.create_schedule(gone, "opt-echo", EVERY_2S, payload=payload)

    wait_for(
        lambda: len(schedule_runs(cluster, sid)) >= 3, 15, message="the schedule did not fire three ticks"
    )
    wait_for(lambda: schedule_runs(cluster, gone), 5, message="the second schedule never fired")
    listed = find_schedule(client.list_schedules(), sid)
    assert listed is not None and listed.next_fire_at and listed.last_run_id, listed
    rows = schedule_runs(cluster, sid)
    assert listed.last_run_id in {str(r["id"]) for r in rows}
    assert sorted(s.id for s in client.list_schedules(task="opt-echo")) == sorted([sid, gone])
    assert client.list_schedules(task="opt-record") == []

    paused = client.pause_schedule(sid)
    assert paused.paused is True
    rows = schedule_runs(cluster, sid)
    ticks = check_ticks(rows, sid)
    assert ticks[0] == first_fire, "the first run is for the first tick after creation"
    assert all(json.loads(bytes(r["input"])) == payload for r in rows)
    listed = find_schedule(client.list_schedules(), sid)
    assert listed.paused is True
    by_tick = {tick_of(r["idempotency_key"], sid): str(r["id"]) for r in rows}
    assert listed.last_run_id == by_tick[ticks[-1]]
    assert listed.last_fired_at == ticks[-1]
    assert listed.next_fire_at > ticks[-1]
    for r in rows:
        done = client.wait(str(r["id"]), timeout=RUN_TIMEOUT)
        assert done.status == "completed" and done.output["payload"] == payload, done
        assert done.schedule_id == sid
    lags = [round((r["created_at"] - tick_of(r["idempotency_key"], sid)).total_seconds(), 3) for r in rows]

    # Deleted: gone from the list, and no run after it.
    client.delete_schedule(gone)
    assert find_schedule(client.list_schedules(), gone) is None
    assert cluster.sql_value("SELECT count(*) FROM schedules WHERE id = $1", gone) == 0
    count_at_delete = len(schedule_runs(cluster, gone))

    # Paused (and the other deleted): no run for more than two ticks.
    count_at_pause = len(rows)

    def no_new_runs() -> None:
        n = len(schedule_runs(cluster, sid))
        assert n == count_at_pause, f"{n - count_at_pause} run(s) fired while paused"
        n = len(schedule_runs(cluster, gone))
        assert n == count_at_delete, f"{n - count_at_delete} run(s) fired after the delete"

    hold(no_new_runs, 4.5, "the paused or the deleted schedule fired")
    with pytest.raises(NotFoundError):
        client.delete_schedule(gone)

    # Resumed: fires again, from its next tick (the paused ticks are not caught up).
    resumed_at = datetime.now(UTC)
    resumed = client.resume_schedule(sid)
    assert resumed.paused is False and resumed.next_fire_at > resumed_at
    wait_for(
        lambda: len(schedule_runs(cluster, sid)) > count_at_pause,
        8,
        message="the resumed schedule did not fire",
    )
    rows = schedule_runs(cluster, sid)
    new_ticks = sorted(tick_of(r["idempotency_key"], sid) for r in rows[count_at_pause:])
    assert new_ticks[0] > resumed_at, f"a paused tick was fired after resume: {new_ticks[0]}"
    assert (new_ticks[0] - ticks[-1]).total_seconds() >= 6.0
    check_ticks(rows[count_at_pause:], sid)

    client.delete_schedule(sid)
    assert find_schedule(client.list_schedules(), sid) is None
    assert cluster.sql_value("SELECT count(*) FROM schedules WHERE id = $1", sid) == 0
    assert cluster.services["history"].running and cluster.services["history-2"].running
    print(
        f"schedule */2 s with two history replicas: {len(schedule_runs(cluster, sid))} runs, one per "
        f"tick; run created after its tick (s): {lags}"
    )


def test_ticks_missed_while_history_was_down_are_caught_up_once(cluster: Cluster, client: Client) -> None:
    """The documented policy: after an outage, one run for the latest missed tick,
    then on schedule; the ticks before it get no run."""
    start_option_worker(cluster)
    sid = "catch-up"
    client.create_schedule(sid, "opt-echo", EVERY_2S, payload={"n": 1})
    wait_for(lambda: len(schedule_runs(cluster, sid)) >= 1, 10, message="the schedule never fired")
    cluster.kill("history")
    down_at = datetime.now(UTC)
    before = [tick_of(r["idempotency_key"], sid) for r in schedule_runs(cluster, sid)]
    # At least three ticks pass while history is down: a condition on the clock.
    wait_for(lambda: datetime.now(UTC) >= down_at + timedelta(seconds=7), 10)
    restart_begin = datetime.now(UTC)
    cluster.start("history")
    wait_for(
        lambda: len(schedule_runs(cluster, sid)) >= len(before) + 3,
        15,
        message="the schedule did not fire again after history restarted",
    )
    after = sorted(
        tick_of(r["idempotency_key"], sid)
        for r in schedule_runs(cluster, sid)
        if tick_of(r["idempotency_key"], sid) > max(before)
    )
    catch_up = after[0]
    missed = (catch_up - max(before)).total_seconds() / 2 - 1
    print(f"outage skipped {missed:.0f} ticks; caught up once at {catch_up.isoformat()}")
    assert catch_up >= down_at + timedelta(seconds=5), (
        f"a run was made for an early missed tick {catch_up} (outage from {down_at})"
    )
    assert missed >= 2, f"fewer than two ticks were skipped: {before} then {after}"
    check_ticks(
        [r for r in schedule_runs(cluster, sid) if tick_of(r["idempotency_key"], sid) > catch_up], sid
    )
    assert len(after) == len(set(after)), f"two runs for one tick: {after}"
    assert all((b - a).total_seconds() == 2.0 for a, b in zip(after, after[1:])), after
    assert restart_begin - timedelta(seconds=2) <= catch_up, (restart_begin, catch_up)


def test_declared_schedule_fires_from_the_workers_registration(cluster: Cluster, client: Client) -> None:
    worker = start_option_worker(cluster, env={SCHEDULE_ENV: EVERY_2S})
    sid = "task:opt-scheduled"
    sch = wait_for(
        lambda: find_schedule(client.list_schedules(), sid), 10, message="the declared schedule is not listed"
    )
    assert sch.declared is True and sch.task == "opt-scheduled"
    assert sch.cron == EVERY_2S and sch.timezone == "UTC" and sch.next_fire_at

    wait_for(
        lambda: len(schedule_runs(cluster, sid)) >= 2, 12, message="the declared schedule did not fire twice"
    )
    rows = schedule_runs(cluster, sid)
    ticks = check_ticks(rows, sid)
    for r in rows:
        tick = tick_of(r["idempotency_key"], sid)
        expected = {"schedule_id": sid, "scheduled_at": tick.isoformat()}
        assert json.loads(bytes(r["input"])) == expected
        done = client.wait(str(r["id"]), timeout=RUN_TIMEOUT)
        assert done.status == "completed" and done.output == expected, done
        assert done.schedule_id == sid

    # A worker whose task no longer declares the schedule removes it: its code
    # is a new version (under the same one, the change is refused).
    worker.stop()
    start_option_worker(cluster, env={"CAIRN_WORKER_VERSION": "2"})
    wait_for(
        lambda: find_schedule(client.list_schedules(), sid) is None,
        10,
        message="the schedule the task no longer declares is still listed",
    )
    count = len(schedule_runs(cluster, sid))

    def none_after_removal() -> None:
        assert len(schedule_runs(cluster, sid)) == count, "a removed declared schedule fired"

    hold(none_after_removal, 4.5, "the removed declared schedule fired")
    print(f"declared schedule: ticks {[t.isoformat() for t in ticks]}")


def test_bad_schedules_are_refused_and_nothing_is_written(cluster: Cluster, client: Client) -> None:
    register_over_grpc(cluster, "schedule-registrar", "opt-echo")
    stub = schedule_stub(cluster)
    t = RPC_TIMEOUT
    stub.CreateSchedule(
        spb.CreateScheduleRequest(schedule_id="nightly", task_id="opt-echo", cron="0 3 * * *"), timeout=t
    )
    before = table_counts(cluster)
    assert before["schedules"] == 1

    def refused(code: grpc.StatusCode, *words: str, **fields: Any) -> None:
        request = {"schedule_id": "new-one", "task_id": "opt-echo", "cron": EVERY_2S, **fields}
        expect_rpc_error(
            lambda: stub.CreateSchedule(spb.CreateScheduleRequest(**request), timeout=t), code, *words
        )
        assert table_counts(cluster) == before, f"rows written by a refused {request}"

    refused(grpc.StatusCode.INVALID_ARGUMENT, "cron", cron="not a cron")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "cron", cron="*/2 * * * * * *")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "cron", cron="61 * * * *")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "never fires", cron="0 0 30 2 *")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "cron", cron="")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "timezone", "Mars/Olympus_Mons", timezone="Mars/Olympus_Mons")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "schedule_id", schedule_id="")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "schedule_id", schedule_id="has space")
    refused(grpc.StatusCode.INVALID_ARGUMENT, "payload", payload=cpb.Payload(data=b"{nope", encoding=JSON))
    refused(grpc.StatusCode.NOT_FOUND, "no-such-task", task_id="no-such-task")
    refused(grpc.StatusCode.ALREADY_EXISTS, "nightly", schedule_id="nightly")
    for method in ("PauseSchedule", "ResumeSchedule", "DeleteSchedule"):
        request_type = getattr(spb, f"{method}Request")
        expect_rpc_error(
            lambda: getattr(stub, method)(request_type(schedule_id="unknown"), timeout=t),
            grpc.StatusCode.NOT_FOUND,
            "unknown",
        )
    # The same refusals through the Client.
    with pytest.raises(InvalidArgumentError) as ia:
        client.create_schedule("new-one", "opt-echo", "* * *")
    assert "cron" in str(ia.value)
    with pytest.raises(InvalidArgumentError) as ia:
        client.create_schedule("new-one", "opt-echo", EVERY_2S, timezone="Nowhere/City")
    assert "timezone" in str(ia.value)
    with pytest.raises(NotFoundError):
        client.create_schedule("new-one", "no-such-task", EVERY_2S)
    with pytest.raises(AlreadyExistsError):
        client.create_schedule("nightly", "opt-echo", EVERY_2S)
    assert table_counts(cluster) == before
    nightly = find_schedule(client.list_schedules(), "nightly")
    assert nightly is not None and nightly.cron == "0 3 * * *", "the duplicate changed it"


def test_schedules_from_the_command_line(cluster: Cluster, client: Client) -> None:
    start_option_worker(cluster)
    proc = cairn_cli(
        cluster,
        "schedules",
        "create",
        "cli-sched",
        "--task",
        "opt-echo",
        "--cron",
        EVERY_2S,
        "--payload",
        '{"via": "cli"}',
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)
    assert created["id"] == "cli-sched" and created["paused"] is False
    assert created["payload"] == {"via": "cli"} and created["next_fire_at"]

    wait_for(
        lambda: len(schedule_runs(cluster, "cli-sched")) >= 1,
        8,
        message="the schedule created from the CLI never fired",
    )
    proc = cairn_cli(cluster, "schedules", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [s["id"] for s in listed] == ["cli-sched"]
    assert listed[0]["last_run_id"] and listed[0]["next_fire_at"]
    proc = cairn_cli(cluster, "schedules", "list")  # the table
    assert proc.returncode == 0 and "cli-sched" in proc.stdout and "CRON" in proc.stdout

    proc = cairn_cli(cluster, "schedules", "pause", "cli-sched", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["paused"] is True
    assert find_schedule(client.list_schedules(), "cli-sched").paused is True
    proc = cairn_cli(cluster, "schedules", "resume", "cli-sched")
    assert proc.returncode == 0, proc.stderr
    assert "cli-sched" in proc.stdout
    assert find_schedule(client.list_schedules(), "cli-sched").paused is False
    proc = cairn_cli(cluster, "schedules", "delete", "cli-sched")
    assert proc.returncode == 0, proc.stderr
    assert client.list_schedules() == []

    proc = cairn_cli(cluster, "schedules", "delete", "cli-sched")
    assert proc.returncode != 0 and "cli-sched" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cairn_cli(cluster, "schedules", "create", "bad", "--task", "opt-echo", "--cron", "not a cron")
    assert proc.returncode != 0 and "cron" in proc.stderr and "Traceback" not in proc.stderr
    assert cluster.sql_value("SELECT count(*) FROM schedules") == 0
