"""Trigger options end to end, against a real cluster (history, matching,
frontend, PostgreSQL, NATS): delay (through the Client, the command line and
grpcurl), ttl, max_duration (on the trigger or declared with the task), priority,
tags and metadata, batch triggers (all items or nothing), and the refusal of bad
trigger options with nothing written.

Task code lives in tests/apps/option_tasks.py; workers run it with
cwd=tests/apps, so it imports as `option_tasks` (option_helpers.py starts them).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from harness import (
    Cluster,
    assert_clean,
    b64_json,
    cairn_cli,
    expect_rpc_error,
    grpcurl,
    grpcurl_call,
    hold,
    json_payload,
    run_stub,
    seconds,
    table_counts,
    wait_for,
    worker_alive,
)
from option_helpers import JSON, RPC_TIMEOUT, RUN_TIMEOUT, register_over_grpc, start_option_worker

from cairn import error_types
from cairn.v1 import common_pb2 as cpb
from cairn.v1 import run_service_pb2 as rpb
from worker_sdk import Client, InvalidArgumentError, NotFoundError


def db_status(cluster: Cluster, run_id: str) -> str:
    return cluster.sql_value("SELECT status FROM runs WHERE id = $1", uuid.UUID(run_id))


def timer_kinds(cluster: Cluster, run_id: str) -> set[str]:
    return {r["kind"] for r in cluster.sql("SELECT kind FROM timers WHERE run_id = $1", uuid.UUID(run_id))}


def queue_entry_count(cluster: Cluster, run_id: str) -> int:
    return cluster.sql_value("SELECT count(*) FROM queue_entries WHERE run_id = $1", uuid.UUID(run_id))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# ---- delay ---------------------------------------------------------------------------


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


# ---- ttl -----------------------------------------------------------------------------


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
        assert done.error is not None and done.error.type == error_types.EXPIRED, done.error
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


# ---- max_duration --------------------------------------------------------------------


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
    assert done.error is not None and done.error.type == error_types.MAX_DURATION_EXCEEDED, done.error
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


# ---- priority ------------------------------------------------------------------------


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


# ---- tags and metadata ---------------------------------------------------------------


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


# ---- batch trigger -------------------------------------------------------------------


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


# ---- bad trigger options -------------------------------------------------------------


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
