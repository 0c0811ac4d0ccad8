"""Trigger options and schedules end to end, against a real cluster (history,
matching, frontend, PostgreSQL, NATS): delay, ttl, max_duration, priority, tags
and metadata, batch triggers, schedules (created over the API with two history
replicas, declared with a task, refused when bad, and from the command line),
and the refusal of bad trigger options.

Task code lives in tests/apps/option_tasks.py; workers run it with
cwd=tests/apps, so it imports as `option_tasks`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from harness import (
    REPO_ROOT,
    TESTS_DIR,
    Cluster,
    WorkerProcess,
    assert_clean,
    b64_json,
    grpcurl,
    grpcurl_call,
    json_payload,
    table_counts,
    wait_for,
    wait_registered,
    worker_alive,
)

from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc, schedule_service_pb2_grpc, worker_service_pb2_grpc
from cairn.v1 import schedule_service_pb2 as spb
from cairn.v1 import worker_service_pb2 as wpb
from worker_sdk import AlreadyExistsError, Client, InvalidArgumentError, NotFoundError, Schedule

APPS_DIR = TESTS_DIR / "apps"
TASKS_MODULE = "option_tasks"
SCHEDULE_ENV = "OPTION_TASKS_SCHEDULE"
ALL_TASKS = (
    "opt-echo",
    "opt-record",
    "opt-gated",
    "opt-stuck",
    "opt-stuck-declared",
    "opt-metadata",
    "opt-scheduled",
)
EVERY_2S = "*/2 * * * * *"
JSON = "json/plain"
RPC_TIMEOUT = 15.0
RUN_TIMEOUT = 20.0


# ---- helpers ------------------------------------------------------------------------


def start_option_worker(
    cluster: Cluster, *, slots: int = 4, env: dict[str, str] | None = None
) -> WorkerProcess:
    """A `cairn worker option_tasks` process; returns once its tasks are registered
    and the worker logged its registration."""
    worker = cluster.start_worker(TASKS_MODULE, cwd=APPS_DIR, slots=slots, env=env)
    wait_registered(cluster, *ALL_TASKS, worker=worker)
    return worker


def register_over_grpc(cluster: Cluster, worker_id: str, *task_ids: str) -> None:
    """Registers tasks the way any worker does, without ever polling for them."""
    worker_service_pb2_grpc.WorkerServiceStub(cluster.channel()).RegisterWorker(
        wpb.RegisterWorkerRequest(
            worker_id=worker_id,
            version="test-1",
            slots=1,
            tasks=[wpb.TaskDefinition(task_id=t, retry=cpb.RetryPolicy(max_attempts=1)) for t in task_ids],
        ),
        timeout=RPC_TIMEOUT,
    )


def run_stub(cluster: Cluster) -> run_service_pb2_grpc.RunServiceStub:
    return run_service_pb2_grpc.RunServiceStub(cluster.channel())


def schedule_stub(cluster: Cluster) -> schedule_service_pb2_grpc.ScheduleServiceStub:
    return schedule_service_pb2_grpc.ScheduleServiceStub(cluster.channel())


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(value * 1e9))
    return d


def ts(text: str | None) -> datetime:
    """An ISO time of the JSON shape (e.g. "2025-01-02T03:04:05.123Z") as aware UTC."""
    assert text, "timestamp missing"
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def expect_rpc_error(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    """Runs call; asserts it fails with `code`, a message naming every word and no
    stack trace. Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for word in words:
        assert word.lower() in details.lower(), f"{word!r} not named in {details!r}"
    assert_clean(details)
    return details


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def cairn_cli(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args, "--address", cluster.address],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )


def db_status(cluster: Cluster, run_id: str) -> str:
    return cluster.sql_value("SELECT status FROM runs WHERE id = $1", uuid.UUID(run_id))


def timer_kinds(cluster: Cluster, run_id: str) -> set[str]:
    return {r["kind"] for r in cluster.sql("SELECT kind FROM timers WHERE run_id = $1", uuid.UUID(run_id))}


def queue_entry_count(cluster: Cluster, run_id: str) -> int:
    return cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", uuid.UUID(run_id))


def hold(check: Callable[[], Any], duration: float, message: str) -> None:
    """Keeps calling check (which raises AssertionError when the condition it
    guards is broken) for `duration` seconds: a bounded wait that fails at once
    when something happens that must not."""
    end = time.monotonic() + duration

    def still_holds() -> bool:
        check()
        return time.monotonic() >= end

    wait_for(still_holds, duration + 10, interval=0.1, message=message)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# ---- 1. delay ---------------------------------------------------------------------------


def _check_delayed_now(cluster: Cluster, run_id: str) -> None:
    """Right after the trigger: delayed in the database, with a delay timer and no
    queue entry (no worker can take it yet)."""
    assert db_status(cluster, run_id) == "delayed"
    assert "delay" in timer_kinds(cluster, run_id)
    assert queue_entry_count(cluster, run_id) == 0


def test_delay_via_client_cli_and_grpcurl(cluster: Cluster, client: Client) -> None:
    start_option_worker(cluster)
    triggered: dict[str, str] = {}

    run = client.trigger("opt-echo", {"via": "client"}, delay=2)
    assert run.status == "delayed", run
    _check_delayed_now(cluster, run.id)
    delay_at = run.next_attempt_at - run.created_at
    assert abs(delay_at.total_seconds() - 2.0) < 0.05, run
    triggered["client"] = run.id

    proc = cairn_cli(cluster, "trigger", "opt-echo", "--payload", '{"via": "cli"}', "--delay", "2s", "--json")
    assert proc.returncode == 0, proc.stderr
    cli_run = json.loads(proc.stdout)
    assert cli_run["status"] == "delayed", cli_run
    _check_delayed_now(cluster, cli_run["id"])
    triggered["cli"] = cli_run["id"]

    answer = grpcurl_call(
        cluster.address,
        "cairn.v1.RunService/TriggerRun",
        {
            "task_id": "opt-echo",
            "payload": {"data": b64_json({"via": "grpcurl"}), "encoding": JSON},
            "options": {"delay": "2s"},
        },
    )
    assert answer["run"]["status"] == "RUN_STATUS_DELAYED", answer
    _check_delayed_now(cluster, answer["run"]["id"])
    triggered["grpcurl"] = answer["run"]["id"]

    figures = {}
    for via, run_id in triggered.items():
        done = client.wait(run_id, timeout=RUN_TIMEOUT)
        assert done.status == "completed", (via, done)
        assert done.output == {"payload": {"via": via}, "run_id": run_id}
        assert len(done.attempts) == 1, done.attempts
        waited = (done.attempts[0].started_at - done.created_at).total_seconds()
        assert waited >= 1.95, f"{via}: the run started {waited:.3f} s after its creation"
        assert waited < 5.0, f"{via}: the run started only {waited:.3f} s after its creation"
        types = [e.type for e in done.events]
        assert types[0] == "triggered" and "attempt_started" in types, types
        figures[via] = round(waited, 3)
    print(f"delay 2 s: attempt started after creation (s): {figures}")


# ---- 2. ttl -----------------------------------------------------------------------------


def test_ttl_expires_an_unstarted_run_but_not_one_that_started_in_time(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    register_over_grpc(cluster, "ttl-registrar", "opt-unserved")

    queued = client.trigger("opt-unserved", {"n": 1}, ttl=1)
    assert queued.status == "queued"
    assert queued.ttl == timedelta(seconds=1)
    delayed = client.trigger("opt-unserved", {"n": 2}, ttl=1, delay=30)
    assert delayed.status == "delayed"

    figures = {}
    for name, run in (("queued", queued), ("delayed", delayed)):
        done = client.wait(run.id, timeout=RUN_TIMEOUT)
        assert done.status == "expired", (name, done)
        assert done.error is not None and done.error.type == "Expired", done.error
        assert done.error.non_retryable is True
        assert done.attempts == [] and done.attempt_count == 0
        after = (done.finished_at - done.created_at).total_seconds()
        assert 0.95 <= after < 3.0, f"{name}: expired {after:.3f} s after its creation"
        figures[name] = round(after, 3)
        assert db_status(cluster, run.id) == "expired"
        assert queue_entry_count(cluster, run.id) == 0
        assert timer_kinds(cluster, run.id) == set()
    print(f"ttl 1 s: expired after (s): {figures}")

    # A run that starts within its ttl is not expired later, however long it runs.
    start_option_worker(cluster)
    release = tmp_path / "release"
    run = client.trigger("opt-gated", {"release": str(release)}, ttl=1)
    created = run.created_at
    wait_for(
        lambda: db_status(cluster, run.id) == "executing", 10, message="the run with a ttl never started"
    )
    assert "ttl" not in timer_kinds(cluster, run.id), "the ttl timer outlived the start"

    def still_executing() -> None:
        status = db_status(cluster, run.id)
        assert status == "executing", f"a started run changed to {status} past its ttl"

    past_ttl = 2.5 - (datetime.now(UTC) - created).total_seconds()
    hold(still_executing, max(past_ttl, 0.5), "run left executing")
    release.touch()
    done = client.wait(run.id, timeout=RUN_TIMEOUT)
    assert done.status == "completed", done
    assert done.output == {"released": True}
    assert [e.type for e in done.events].count("expired") == 0


# ---- 3. max_duration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id, options",
    [("opt-stuck", {"max_duration": 2}), ("opt-stuck-declared", {})],
    ids=["on-the-trigger", "declared-with-the-task"],
)
def test_max_duration_times_out_the_run_and_stops_its_attempt(
    cluster: Cluster, client: Client, tmp_path: Path, task_id: str, options: dict[str, Any]
) -> None:
    worker = start_option_worker(cluster)
    files = {name: tmp_path / name for name in ("release", "cancelled", "side_effect")}
    run = client.trigger(task_id, {k: str(v) for k, v in files.items()}, **options)
    assert run.max_duration == timedelta(seconds=2), run

    done = client.wait(run.id, timeout=RUN_TIMEOUT)
    assert done.status == "timed_out", done
    assert done.error is not None and done.error.type == "MaxDurationExceeded", done.error
    assert done.error.non_retryable is True
    assert [a.status for a in done.attempts] == ["timed_out"], "a timed-out run is not retried"
    assert done.attempt_count == 1
    assert done.steps == [], "the waiting step never finished, so nothing is recorded"
    ran = (done.finished_at - done.attempts[0].started_at).total_seconds()
    assert 1.95 <= ran < 4.0, f"timed out after {ran:.3f} s of execution"

    # The worker stops the attempt: its heartbeat is refused, the task function
    # is cancelled inside the step, and the step's side effect never happens.
    wait_for(
        lambda: worker_alive(worker) and f"attempt superseded: run={run.id}" in worker.log_text(),
        10,
        message="the worker never noticed its attempt was superseded",
    )
    wait_for(
        lambda: lines(files["cancelled"]) == [f"cancelled {run.id}"],
        10,
        message="the step body was never stopped",
    )
    stopped_after = (datetime.now(UTC) - done.finished_at).total_seconds()
    files["release"].touch()  # were the step still running, it would go on now
    echo = client.trigger("opt-echo", {"after": "timeout"})
    assert client.wait(echo.id, timeout=RUN_TIMEOUT).status == "completed"
    assert not files["side_effect"].exists(), lines(files["side_effect"])
    assert lines(files["cancelled"]) == [f"cancelled {run.id}"]
    rid = uuid.UUID(run.id)
    assert cluster.sql_value("SELECT count(*) FROM steps WHERE run_id = $1", rid) == 0
    assert cluster.sql_value("SELECT count(*) FROM attempts WHERE run_id = $1", rid) == 1
    assert cluster.sql_value("SELECT status FROM attempts WHERE run_id = $1", rid) == "timed_out"
    assert timer_kinds(cluster, run.id) == set() and queue_entry_count(cluster, run.id) == 0
    final = client.get(run.id)
    assert final.status == "timed_out" and [a.status for a in final.attempts] == ["timed_out"]
    print(
        f"max_duration 2 s ({task_id}): timed out after {ran:.3f} s of execution; "
        f"worker had stopped the step within {stopped_after:.3f} s of the timeout"
    )


# ---- 4. priority ------------------------------------------------------------------------


def test_a_high_priority_run_starts_before_earlier_low_priority_ones(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    first = start_option_worker(cluster)
    first.stop()  # the tasks stay registered; nobody polls now
    log = tmp_path / "started.txt"
    low = [client.trigger("opt-record", {"log": str(log), "n": i}).id for i in range(5)]
    high = client.trigger("opt-record", {"log": str(log), "n": "high"}, priority=10)
    assert high.priority == 10
    assert cluster.sql_value("SELECT priority FROM queue_entries WHERE run_id = $1", uuid.UUID(high.id)) == 10
    assert all(client.get(r).status == "queued" for r in [*low, high.id])

    start_option_worker(cluster, slots=1)
    done = {rid: client.wait(rid, timeout=RUN_TIMEOUT) for rid in [*low, high.id]}
    assert all(r.status == "completed" for r in done.values()), done
    by_start = sorted(done, key=lambda rid: done[rid].attempts[0].started_at)
    assert by_start[0] == high.id, f"started first: {by_start[0]} (high priority {high.id})"
    assert by_start[1:] == low, "runs of equal priority start in the order they were triggered"
    assert lines(log) == [high.id, *low]


# ---- 5. tags and metadata ---------------------------------------------------------------


def test_tags_filter_lists_and_metadata_is_read_and_updated_by_the_run(
    cluster: Cluster, client: Client
) -> None:
    start_option_worker(cluster)
    tagged = client.trigger("opt-metadata", {"x": 1}, tags=["a", "b"], metadata={"user": "u1"})
    untagged = client.trigger("opt-metadata", {"x": 2})
    assert tagged.tags == ["a", "b"] and tagged.metadata == {"user": "u1"}
    assert untagged.tags == [] and untagged.metadata == {}

    assert [r.id for r in client.list(tag="a")] == [tagged.id]
    assert [r.id for r in client.list(tag="b")] == [tagged.id]
    assert client.list(tag="c") == []
    assert {r.id for r in client.list()} == {tagged.id, untagged.id}

    done = client.wait(tagged.id, timeout=RUN_TIMEOUT)
    assert done.status == "completed", done
    updated = {"user": "u1", "progress": 100}
    assert done.output == {"seen": {"user": "u1"}, "stored": updated, "after": updated}
    assert client.get(tagged.id).metadata == updated
    assert client.get(tagged.id).tags == ["a", "b"]
    assert "metadata_updated" in [e.type for e in done.events]

    plain = client.wait(untagged.id, timeout=RUN_TIMEOUT)
    assert plain.output == {"seen": {}, "stored": {"progress": 100}, "after": {"progress": 100}}
    assert client.get(untagged.id).metadata == {"progress": 100}
    assert [r.id for r in client.list(tag="a")] == [tagged.id], "updates keep the tags"

    # The same through the command line: --tag (repeatable) and --metadata.
    proc = cairn_cli(
        cluster,
        "trigger",
        "opt-metadata",
        "--tag",
        "a",
        "--tag",
        "cli",
        "--metadata",
        '{"user": "u2"}',
        "--wait",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    cli_run = json.loads(proc.stdout)
    assert cli_run["tags"] == ["a", "cli"]
    assert cli_run["output"]["seen"] == {"user": "u2"}
    assert cli_run["metadata"] == {"user": "u2", "progress": 100}
    proc = cairn_cli(cluster, "runs", "list", "--tag", "a", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == [cli_run["id"], tagged.id]


# ---- 6. batch trigger -------------------------------------------------------------------


def test_batch_trigger_runs_all_items_or_writes_nothing(cluster: Cluster, client: Client) -> None:
    start_option_worker(cluster)
    runs = client.batch_trigger([("opt-echo", {"i": i}) for i in range(20)])
    assert len(runs) == 20 and len({r.id for r in runs}) == 20
    assert [r.input for r in runs] == [{"i": i} for i in range(20)]
    ids = [uuid.UUID(r.id) for r in runs]
    # One transaction: PostgreSQL's now() is the same for every row it inserted.
    assert cluster.sql_value("SELECT count(DISTINCT created_at) FROM runs WHERE id = ANY($1)", ids) == 1
    for i, r in enumerate(runs):
        done = client.wait(r.id, timeout=RUN_TIMEOUT)
        assert done.status == "completed", done
        assert done.output == {"payload": {"i": i}, "run_id": r.id}

    before = table_counts(cluster)
    stub = run_stub(cluster)

    def items(bad: rpb.TriggerRunRequest) -> list[rpb.TriggerRunRequest]:
        good = [rpb.TriggerRunRequest(task_id="opt-echo", payload=json_payload({"ok": i})) for i in range(5)]
        good[3] = bad
        return good

    def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> None:
        with pytest.raises(grpc.RpcError) as info:
            call()
        details = info.value.details() or ""
        assert info.value.code() == code, f"expected {code.name}: {info.value.code()} {details}"
        assert table_counts(cluster) == before, f"a refused batch wrote rows ({details})"
        assert_clean(details)
        for word in words:
            assert word in details, f"{word!r} not named in {details!r}"

    def batch(bad: rpb.TriggerRunRequest) -> Callable[[], Any]:
        return lambda: stub.BatchTriggerRuns(
            rpb.BatchTriggerRunsRequest(runs=items(bad)), timeout=RPC_TIMEOUT
        )

    refused(
        batch(
            rpb.TriggerRunRequest(task_id="opt-echo", payload=cpb.Payload(data=b"{not json", encoding=JSON))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "runs[3].payload",
    )
    refused(
        batch(rpb.TriggerRunRequest(task_id="", payload=json_payload(1))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "runs[3].task_id",
    )
    refused(
        batch(
            rpb.TriggerRunRequest(
                task_id="opt-echo", payload=json_payload(1), options=cpb.TriggerOptions(priority=5000)
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "runs[3].options.priority",
    )
    # The same through the Client.
    with pytest.raises(InvalidArgumentError) as ia:
        client.batch_trigger(
            [
                ("opt-echo", {"i": 0}),
                ("opt-echo", {"i": 1}),
                ("opt-echo", {"i": 2}),
                {"task": "opt-echo", "payload": {}, "priority": 5000},
            ]
        )
    assert "runs[3].options.priority" in str(ia.value)
    with pytest.raises(NotFoundError) as nf:
        client.batch_trigger([("opt-echo", {"i": i}) for i in range(3)] + [("no-such-task", {"i": 3})])
    assert "no-such-task" in str(nf.value)
    assert_clean(str(nf.value))
    assert table_counts(cluster) == before, "a refused batch wrote rows"
    # An unknown task is found only when history inserts the items: the first
    # three are inserted by then, and must be rolled back with the rest.
    refused(
        batch(rpb.TriggerRunRequest(task_id="no-such-task", payload=json_payload(1))),
        grpc.StatusCode.NOT_FOUND,
        "no-such-task",
        "runs[3].task_id",
    )


# ---- 7. schedules -----------------------------------------------------------------------


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

    wait_for(
        lambda: len(schedule_runs(cluster, sid)) >= 3, 15, message="the schedule did not fire three ticks"
    )
    listed = find_schedule(client.list_schedules(), sid)
    assert listed is not None and listed.next_fire_at and listed.last_run_id, listed
    rows = schedule_runs(cluster, sid)
    assert listed.last_run_id in {str(r["id"]) for r in rows}
    assert [s.id for s in client.list_schedules(task="opt-echo")] == [sid]
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

    # Paused: no run for more than two ticks.
    count_at_pause = len(rows)

    def no_new_runs() -> None:
        n = len(schedule_runs(cluster, sid))
        assert n == count_at_pause, f"{n - count_at_pause} run(s) fired while paused"

    hold(no_new_runs, 4.5, "the paused schedule fired")

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

    # Deleted: gone from the list, and no run after it.
    client.delete_schedule(sid)
    assert find_schedule(client.list_schedules(), sid) is None
    assert cluster.sql_value("SELECT count(*) FROM schedules WHERE id = $1", sid) == 0
    count_at_delete = len(schedule_runs(cluster, sid))

    def none_after_delete() -> None:
        n = len(schedule_runs(cluster, sid))
        assert n == count_at_delete, f"{n - count_at_delete} run(s) fired after the delete"

    hold(none_after_delete, 4.5, "the deleted schedule fired")
    with pytest.raises(NotFoundError):
        client.delete_schedule(sid)
    assert cluster.services["history"].running and cluster.services["history-2"].running
    print(
        f"schedule */2 s with two history replicas: {count_at_delete} runs, one per tick; "
        f"run created after its tick (s): {lags}"
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

    # A worker whose task no longer declares the schedule removes it.
    worker.stop()
    start_option_worker(cluster)
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


# ---- 8. bad trigger options -------------------------------------------------------------


def test_bad_trigger_options_are_refused_and_nothing_is_written(cluster: Cluster, client: Client) -> None:
    register_over_grpc(cluster, "options-registrar", "opt-echo")
    stub = run_stub(cluster)
    before = table_counts(cluster)

    def refused(options: cpb.TriggerOptions, *words: str) -> None:
        expect_rpc_error(
            lambda: stub.TriggerRun(
                rpb.TriggerRunRequest(task_id="opt-echo", payload=json_payload({}), options=options),
                timeout=RPC_TIMEOUT,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            *words,
        )
        assert table_counts(cluster) == before, f"rows written for refused options {options}"

    big = Struct()
    big.update({"blob": "x" * 4100})
    refused(cpb.TriggerOptions(delay=seconds(-1)), "options.delay")
    refused(cpb.TriggerOptions(ttl=seconds(-1)), "options.ttl")
    refused(cpb.TriggerOptions(max_duration=seconds(-1)), "options.max_duration")
    refused(cpb.TriggerOptions(tags=[f"t{i}" for i in range(11)]), "options.tags")
    refused(cpb.TriggerOptions(tags=["ok", ""]), "options.tags[1]")
    refused(cpb.TriggerOptions(metadata=big), "options.metadata")
    refused(cpb.TriggerOptions(priority=5000), "options.priority")
    refused(cpb.TriggerOptions(priority=-5000), "options.priority")

    # Through the Client: what the SDK can check, it refuses before sending ...
    with pytest.raises(ValueError, match="delay"):
        client.trigger("opt-echo", {}, delay=-1)
    # ... and the server refuses the rest, naming the option.
    for options, word in [
        ({"tags": [f"t{i}" for i in range(11)]}, "options.tags"),
        ({"metadata": {"blob": "x" * 4100}}, "options.metadata"),
        ({"priority": 5000}, "options.priority"),
    ]:
        with pytest.raises(InvalidArgumentError) as ia:
            client.trigger("opt-echo", {}, **options)
        assert word in str(ia.value)
        assert_clean(str(ia.value))
    # Through grpcurl and the command line.
    proc = grpcurl(
        cluster.address,
        "cairn.v1.RunService/TriggerRun",
        data={
            "task_id": "opt-echo",
            "payload": {"data": b64_json({}), "encoding": JSON},
            "options": {"delay": "-2s"},
        },
    )
    assert proc.returncode != 0 and "InvalidArgument" in proc.stderr.replace("_", ""), proc.stderr
    assert "options.delay" in proc.stderr
    proc = cairn_cli(cluster, "trigger", "opt-echo", "--priority", "5000")
    assert proc.returncode != 0 and "options.priority" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert table_counts(cluster) == before
