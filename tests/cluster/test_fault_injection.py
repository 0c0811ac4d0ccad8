"""Fault injection with real processes: SIGKILL a worker, history, matching or
frontend, stop NATS, freeze a worker past its lease (SIGSTOP), and restart
`cairn dev`; every run must still complete, exactly once, with no recorded step
run again (DESIGN.md, "Invariants the tests must prove", 1).

The tasks are in tests/apps/fault_tasks.py. Their side effects are lines
"<event> <run_id> <attempt> <pid>" in FAULT_TASKS_DIR/events.log, which the
tests count; markers and go-files in the same directory let a test catch a
task at a precise point (the task polls for its go-file with asyncio.sleep,
heartbeating all the while).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from harness import REPO_ROOT, Cluster, wait_for, wait_registered

from cairn import payloads
from cairn.v1 import common_pb2, worker_service_pb2, worker_service_pb2_grpc
from cairn_cli.embedded import free_port
from worker_sdk import Client, NotFoundError

APP = "tests.apps.fault_tasks"
SUPERSEDED_WORDS = ("superseded", "abandon", "FAILED_PRECONDITION")


# ---- helpers -----------------------------------------------------------------------


@pytest.fixture
def fx_dir(tmp_path: Path) -> Path:
    """The directory the tasks write their side effects, markers and go-files to."""
    d = tmp_path / "fault-tasks"
    d.mkdir()
    return d


def fx_env(d: Path) -> dict[str, str]:
    return {"FAULT_TASKS_DIR": str(d)}


def events(d: Path) -> list[tuple[str, str, int, int]]:
    """Every side-effect line: (event, run_id, attempt, pid)."""
    path = d / "events.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, run_id, attempt, pid = line.split()
        out.append((event, run_id, int(attempt), int(pid)))
    return out


def count(d: Path, event: str, run_id: str, attempt: int | None = None) -> int:
    return sum(
        1 for e, r, a, _ in events(d) if e == event and r == run_id and (attempt is None or a == attempt)
    )


def run_status(c: Cluster, run_id: str) -> str | None:
    return c.sql_value("SELECT status FROM runs WHERE id = $1::uuid", run_id)


def attempts_of(c: Cluster, run_id: str) -> list[Any]:
    return c.sql(
        "SELECT number, status, worker_id, started_at, finished_at, error "
        "FROM attempts WHERE run_id = $1::uuid ORDER BY number",
        run_id,
    )


def steps_of(c: Cluster, run_id: str) -> list[Any]:
    return c.sql(
        "SELECT position, name, status, attempt FROM steps WHERE run_id = $1::uuid ORDER BY position", run_id
    )


def error_type(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, str):  # asyncpg returns jsonb as text without a codec
        error = json.loads(error)
    return error.get("type")


def output_of(c: Cluster, run_id: str) -> Any:
    row = c.sql("SELECT output, output_encoding FROM runs WHERE id = $1::uuid", run_id)[0]
    return payloads.decode(bytes(row["output"]), row["output_encoding"])


def status_counts(c: Cluster, run_ids: list[str]) -> dict[str, int]:
    rows = c.sql("SELECT status, count(*) AS n FROM runs WHERE id = ANY($1::uuid[]) GROUP BY status", run_ids)
    return {r["status"]: r["n"] for r in rows}


def wait_all_completed(c: Cluster, run_ids: list[str], timeout: float) -> None:
    def done() -> bool:
        counts = status_counts(c, run_ids)
        bad = {
            s: n for s, n in counts.items() if s in ("failed", "canceled", "crashed", "timed_out", "expired")
        }
        if bad:
            raise AssertionError(f"runs ended badly: {counts}")
        return counts.get("completed", 0) == len(run_ids)

    wait_for(
        done,
        timeout,
        interval=0.05,
        message=f"not all {len(run_ids)} runs completed; statuses {status_counts(c, run_ids)}",
    )


# ---- 1. a worker SIGKILLed right after step 2 is recorded ------------------------


def test_worker_sigkill_after_step_two_resumes_in_new_worker(cluster: Cluster, fx_dir: Path) -> None:
    lease = cluster.lease_seconds
    w1 = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=w1)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-three-steps", {"x": 4}).id

    # Step 3's body has started in w1 (marker) and steps 1 and 2 are recorded.
    wait_for(
        lambda: (
            (fx_dir / f"s3-started-{run_id}-1").exists()
            and [s["position"] for s in steps_of(cluster, run_id)] == [0, 1]
        ),
        10,
        message="step 3 of attempt 1 never started after steps 1 and 2 were recorded",
    )
    assert run_status(cluster, run_id) == "executing"
    w1.kill()
    killed_wall, killed_mono = time.time(), time.monotonic()
    w2 = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    (fx_dir / f"go-s3-{run_id}").touch()  # attempt 1 is dead; attempt 2 may go on at once

    def crashed() -> Any:
        rows = attempts_of(cluster, run_id)
        return rows[0] if rows and rows[0]["status"] != "executing" else None

    first = wait_for(
        crashed, lease + 5, interval=0.02, message="the killed worker's attempt was never marked crashed"
    )
    seen_after = time.monotonic() - killed_mono
    db_after = first["finished_at"].timestamp() - killed_wall
    print(
        f"\ncrash detection: attempt 1 marked {first['status']} {db_after:.3f} s after "
        f"SIGKILL by the database clock ({seen_after:.3f} s until the test saw it); "
        f"lease {lease:g} s"
    )
    assert first["status"] == "crashed"
    assert error_type(first["error"]) == "LeaseExpired"
    assert db_after <= lease + 2, (
        f"crash detected {db_after:.2f} s after the kill; the README "
        f"promises one lease ({lease:g} s) plus well under a second"
    )

    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=15)
    assert run.status == "completed", run
    assert run.output == {"result": 13, "attempt": 2}  # ((4 + 1) * 2) + 3

    atts = attempts_of(cluster, run_id)
    assert [(a["number"], a["status"]) for a in atts] == [(1, "crashed"), (2, "completed")]
    assert atts[1]["worker_id"] != atts[0]["worker_id"], "attempt 2 must run on the new worker"
    assert [(s["position"], s["name"], s["status"], s["attempt"]) for s in steps_of(cluster, run_id)] == [
        (0, "add-one", "completed", 1),
        (1, "double", "completed", 1),
        (2, "add-three", "completed", 2),
    ]

    # Step bodies: 1 and 2 ran once (in attempt 1, never replayed live); step 3
    # started in both attempts but completed once, in attempt 2; the task once.
    assert count(fx_dir, "s1-done", run_id) == 1
    assert count(fx_dir, "s2-done", run_id) == 1
    assert count(fx_dir, "s3-start", run_id, 1) == 1
    assert count(fx_dir, "s3-start", run_id, 2) == 1
    assert count(fx_dir, "s3-done", run_id) == 1
    assert count(fx_dir, "s3-done", run_id, 2) == 1
    assert count(fx_dir, "task-done", run_id) == 1
    pids = {p for e, r, a, p in events(fx_dir) if r == run_id and a == 2}
    assert pids == {w2.pid}


# ---- 2. history / matching / frontend SIGKILLed under load ------------------------

# A longer lease than the harness default: an outage of a service shorter than
# the lease must cost no attempt at all (the SDK retries its writes for a lease),
# so any run with a second attempt shows a lost assignment, not a slow restart.
SERVICE_KILL_LEASE = 6.0


@pytest.mark.parametrize("victim", ["history", "matching", "frontend"])
def test_service_sigkill_under_load_loses_and_duplicates_nothing(
    cluster_factory: Any, fx_dir: Path, victim: str
) -> None:
    c = cluster_factory(lease_seconds=SERVICE_KILL_LEASE)
    workers = [c.start_worker(APP, slots=3, env=fx_env(fx_dir)) for _ in range(2)]
    for w in workers:
        wait_registered(c, worker=w)
    n_runs, delay = 20, 0.4
    with Client(c.address) as client:
        run_ids = [client.trigger("fault-two-steps", {"n": i, "delay": delay}).id for i in range(n_runs)]

    wait_for(
        lambda: status_counts(c, run_ids).get("completed", 0) >= 4,
        20,
        message="the first runs did not complete",
    )
    before = status_counts(c, run_ids)
    offsets = [len(w.log_text()) for w in workers]
    c.kill(victim)
    killed = time.monotonic()
    # Keep it down until a worker has felt it (a failed heartbeat or poll), so the
    # outage overlaps the workers' writes; still well within the lease.
    felt = wait_for(
        lambda: [
            line
            for w, off in zip(workers, offsets)
            for line in w.log_text()[off:].splitlines()
            if "heartbeat failed" in line or "poll failed" in line
        ],
        10,
        interval=0.02,
        message=f"no worker noticed {victim} was down",
    )
    c.start(victim)
    outage = time.monotonic() - killed
    print(
        f"\n{victim} SIGKILLed with runs {before}; back SERVING after {outage:.2f} s; "
        f"a worker noticed: {felt[0].split(': ', 1)[-1][:120]}"
    )
    assert before.get("completed", 0) < n_runs and before.get("queued", 0) > 0, (
        f"the kill must land while runs are both queued and executing: {before}"
    )

    wait_all_completed(c, run_ids, 30)
    for w in workers:
        assert w.running, f"{w.name} died:\n{w.log_tail(40)}"

    extra_attempts = {}
    for i, run_id in enumerate(run_ids):
        assert output_of(c, run_id) == {"n": i, "value": i * 10 + 1}
        atts = attempts_of(c, run_id)
        completed = [a["number"] for a in atts if a["status"] == "completed"]
        assert len(completed) == 1, f"run {run_id} attempts {[tuple(a) for a in atts]}"
        # The task code never raises, so the only acceptable reason for another
        # attempt is a lost lease (an assignment lost with the killed service).
        for a in atts:
            if a["status"] != "completed":
                assert (a["status"], error_type(a["error"])) == ("crashed", "LeaseExpired"), (
                    f"run {run_id} attempt {a['number']}: {a['status']} {a['error']}"
                )
        if len(atts) > 1:
            extra_attempts[run_id] = len(atts)
        steps = steps_of(c, run_id)
        assert [(s["position"], s["name"], s["status"]) for s in steps] == [
            (0, "first", "completed"),
            (1, "second", "completed"),
        ]
        # No recorded step ran again: its body finished exactly once in the attempt
        # that recorded it, and never in a later attempt.
        for s in steps:
            event = f"{s['name']}-done"
            assert count(fx_dir, event, run_id, s["attempt"]) == 1, (run_id, dict(s))
            later = [a for e, r, a, _ in events(fx_dir) if e == event and r == run_id and a > s["attempt"]]
            assert not later, f"recorded step {s['name']} of run {run_id} ran again: {later}"
        # The run completed exactly once: the task's last line was written once,
        # by the attempt that completed it.
        assert count(fx_dir, "task-done", run_id) == 1, [e for e in events(fx_dir) if e[1] == run_id]
        assert count(fx_dir, "task-done", run_id, completed[0]) == 1
    print(
        f"runs with more than one attempt after killing {victim}: {len(extra_attempts)} "
        f"{sorted(extra_attempts.values())}"
    )


# ---- 3. NATS down: the database sweep carries the work ----------------------------


def _latencies(c: Cluster, run_ids: list[str]) -> list[float]:
    """Seconds from trigger (runs.created_at) to the start of attempt 1."""
    rows = c.sql(
        "SELECT extract(epoch FROM a.started_at - r.created_at)::float8 AS s "
        "FROM runs r JOIN attempts a ON a.run_id = r.id AND a.number = 1 "
        "WHERE r.id = ANY($1::uuid[])",
        run_ids,
    )
    assert len(rows) == len(run_ids)
    return [r["s"] for r in rows]


def _log_count(c: Cluster, service: str, text: str) -> int:
    return c.services[service].log_text().count(text)


def test_nats_down_runs_complete_by_sweep(cluster_factory: Any, private_nats: Any, fx_dir: Path) -> None:
    sweep = 1.0
    c = cluster_factory(nats=private_nats, sweep_seconds=sweep)
    w = c.start_worker(APP, slots=10, env=fx_env(fx_dir))
    wait_registered(c, worker=w)
    for svc in ("history", "matching", "frontend"):
        wait_for(
            lambda: _log_count(c, svc, "connected to NATS") >= 1, 10, message=f"{svc} never connected to NATS"
        )

    private_nats.kill()
    for svc in ("history", "matching"):
        wait_for(
            lambda: _log_count(c, svc, "disconnected from NATS") >= 1,
            10,
            message=f"{svc} did not notice NATS going away",
        )
    with Client(c.address) as client:
        down_ids = [client.trigger("fault-quick", {"i": i}).id for i in range(10)]
        wait_all_completed(c, down_ids, 20)
        down = _latencies(c, down_ids)

        reconnects = {s: _log_count(c, s, "reconnected to NATS") for s in c.services}
        private_nats.start()
        for svc in ("history", "matching", "frontend"):
            wait_for(
                lambda: _log_count(c, svc, "reconnected to NATS") > reconnects[svc],
                15,
                message=f"{svc} did not reconnect to NATS",
            )
        up_ids = [client.trigger("fault-quick", {"i": i}).id for i in range(10, 20)]
        wait_all_completed(c, up_ids, 20)
        up = _latencies(c, up_ids)

    for run_id in down_ids + up_ids:
        assert count(fx_dir, "quick-start", run_id) == 1
        assert [a["status"] for a in attempts_of(c, run_id)] == ["completed"]
    print(
        f"\ntrigger-to-start latency, NATS down (sweep every {sweep:g} s): median "
        f"{statistics.median(down) * 1000:.0f} ms, max {max(down) * 1000:.0f} ms; "
        f"NATS back: median {statistics.median(up) * 1000:.0f} ms, "
        f"max {max(up) * 1000:.0f} ms"
    )
    assert statistics.median(up) < sweep, (
        f"with NATS back, dispatch should not wait for the sweep: {sorted(up)}"
    )


# ---- 4. fencing: a worker frozen past its lease cannot record anything ------------


def test_sigstopped_worker_is_fenced_after_its_lease_expires(cluster: Cluster, fx_dir: Path) -> None:
    # One slot: while A runs the attempt it has no poll outstanding, so the retry
    # cannot be handed to the frozen process.
    a = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    wait_registered(cluster, worker=a)
    with Client(cluster.address) as client:
        run_id = client.trigger("fault-fenced", {"tag": "t1"}).id
    wait_for(lambda: (fx_dir / f"held-{run_id}").exists(), 10, message="attempt 1 never reached its step")
    a.pause()
    b = cluster.start_worker(APP, slots=1, env=fx_env(fx_dir))
    with Client(cluster.address) as client:
        run = client.wait(run_id, timeout=cluster.lease_seconds + 15)
    assert run.status == "completed", run
    assert run.output == {"step": {"tag": "t1", "attempt": 2, "pid": b.pid}, "attempt": 2, "pid": b.pid}

    # Let A's step finish, then wake A: it is long past its lease.
    a_log_before = len(a.log_text())
    (fx_dir / f"go-hold-{run_id}").touch()
    a.resume()

    def a_gave_up() -> str | None:
        new = a.log_text()[a_log_before:]
        hits = [
            line
            for line in new.splitlines()
            if any(word in line for word in SUPERSEDED_WORDS) and run_id in line
        ]
        return "\n".join(hits) if hits else None

    wait_for(a_gave_up, 10, message="A never reported abandoning its stale attempt")
    # The SDK's last word on the attempt ("... its result is discarded" or "... refused
    # its finish"): after it, A does nothing more for this attempt.
    wait_for(
        lambda: any(w in a.log_text()[a_log_before:] for w in ("discarded", "refused")),
        10,
        message="A never finished with its stale attempt",
    )
    print(f"\nworker A after SIGCONT:\n{a_gave_up()}")
    # A's attempt must never get past its step (its result is refused or discarded)...
    assert count(fx_dir, "task-done", run_id, 1) == 0
    assert a.running, f"worker A died:\n{a.log_tail(40)}"
    print(f"A's step body finished after SIGCONT: {count(fx_dir, 'hold-done', run_id, 1)} time(s)")

    # ... and nothing it sent was applied.
    assert run_status(cluster, run_id) == "completed"
    assert output_of(cluster, run_id)["pid"] == b.pid
    atts = attempts_of(cluster, run_id)
    assert [(x["number"], x["status"]) for x in atts] == [(1, "crashed"), (2, "completed")]
    assert error_type(atts[0]["error"]) == "LeaseExpired"
    assert [(s["position"], s["name"], s["attempt"]) for s in steps_of(cluster, run_id)] == [(0, "hold", 2)]
    assert (
        cluster.sql_value(
            "SELECT count(*) FROM run_events WHERE run_id = $1::uuid "
            "AND attempt = 1 AND type = 'step_recorded'",
            run_id,
        )
        == 0
    )
    assert count(fx_dir, "hold-done", run_id, 2) == 1
    assert count(fx_dir, "task-done", run_id) == 1

    # The protocol refuses every write of the stale attempt, whatever it says.
    stub = worker_service_pb2_grpc.WorkerServiceStub(cluster.channel())
    out = common_pb2.Payload(data=payloads.encode_json({"stale": True}), encoding=payloads.JSON)
    stale_writes = {
        "RecordStep(new position)": (
            stub.RecordStep,
            worker_service_pb2.RecordStepRequest(
                run_id=run_id,
                attempt=1,
                position=1,
                name="later",
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=out,
                tries=1,
            ),
        ),
        "RecordStep(recorded position)": (
            stub.RecordStep,
            worker_service_pb2.RecordStepRequest(
                run_id=run_id,
                attempt=1,
                position=0,
                name="hold",
                status=common_pb2.STEP_STATUS_COMPLETED,
                output=out,
                tries=1,
            ),
        ),
        "Heartbeat": (stub.Heartbeat, worker_service_pb2.HeartbeatRequest(run_id=run_id, attempt=1)),
        "FinishAttempt": (
            stub.FinishAttempt,
            worker_service_pb2.FinishAttemptRequest(
                run_id=run_id, attempt=1, outcome=worker_service_pb2.ATTEMPT_OUTCOME_COMPLETED, output=out
            ),
        ),
    }
    for what, (method, request) in stale_writes.items():
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (
            f"{what} of the stale attempt: {err.value.code()} {err.value.details()}"
        )
    assert run_status(cluster, run_id) == "completed"
    assert output_of(cluster, run_id)["pid"] == b.pid
    assert len(steps_of(cluster, run_id)) == 1
    assert [(x["number"], x["status"]) for x in attempts_of(cluster, run_id)] == [
        (1, "crashed"),
        (2, "completed"),
    ]


# ---- 5. `cairn dev` stopped with Ctrl-C and started again on the same data --------


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DevProcess:
    """`python -m cairn_cli dev ...` with its output in a file."""

    def __init__(self, data_dir: Path, ports: dict[str, int], log_path: Path) -> None:
        self.args = [
            sys.executable,
            "-m",
            "cairn_cli",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(ports["frontend"]),
            "--history-port",
            str(ports["history"]),
            "--matching-port",
            str(ports["matching"]),
            "--postgres-port",
            str(ports["postgres"]),
            "--nats-port",
            str(ports["nats"]),
        ]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self._offset = log.tell()
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=str(REPO_ROOT),
            )

    def output(self) -> str:
        return self.log_path.read_bytes()[self._offset :].decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"cairn dev exited with {self.proc.returncode}:\n{self.output()}")
            return "cairn dev: ready" in self.output()

        wait_for(ready, timeout, interval=0.1, message="cairn dev never printed its ready line")

    def interrupt(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    # Outside pytest's 0700 tmp tree, which the postgres OS user cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="cairn-test-dev-"))
    try:
        yield root
    finally:
        if not os.environ.get("CAIRN_TEST_KEEP_DATA"):
            shutil.rmtree(root, ignore_errors=True)


def _start_dev_worker(address: str, fx: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**_child_env(), **fx_env(fx)}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cairn_cli", "worker", APP, "--address", address, "--slots", "2"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO_ROOT),
        )


def test_cairn_dev_restart_keeps_a_queued_run(dev_dir: Path, fx_dir: Path, tmp_path: Path) -> None:
    data = dev_dir / "data"
    ports = {k: free_port() for k in ("frontend", "history", "matching", "postgres", "nats")}
    address = f"127.0.0.1:{ports['frontend']}"
    dev_log, worker_log = tmp_path / "cairn-dev.log", tmp_path / "worker.log"
    dev = DevProcess(data, ports, dev_log)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.monotonic()
        dev.start()
        dev.wait_ready()
        first_start = time.monotonic() - t0
        for sub in ("postgres", "nats", "logs"):
            assert (data / sub).is_dir(), f"{data} has no {sub}/: {os.listdir(data)}"

        # Register the task with a worker, then stop it, so the run waits queued.
        with Client(address) as client:
            with pytest.raises(NotFoundError):
                client.trigger("fault-echo", {"hello": "early"})
            workers.append(_start_dev_worker(address, fx_dir, worker_log))
            wait_for(
                lambda: "worker registered" in worker_log.read_text(errors="replace"),
                20,
                message="the worker did not register with cairn dev",
            )
            workers[-1].send_signal(signal.SIGTERM)
            assert workers[-1].wait(20) == 0
            run_id = client.trigger("fault-echo", {"hello": "dev"}).id
            assert client.get(run_id).status == "queued"

        code = dev.interrupt()
        assert code == 0, f"cairn dev exited with {code} on SIGINT:\n{dev.output()}"
        assert "cairn dev: stopped" in dev.output()
        for sub in ("postgres", "nats", "logs"):
            assert (data / sub).is_dir()
        assert count(fx_dir, "echo", run_id) == 0

        t0 = time.monotonic()
        dev.start()
        dev.wait_ready()
        second_start = time.monotonic() - t0
        with Client(address) as client:
            assert client.get(run_id).status == "queued"
            workers.append(_start_dev_worker(address, fx_dir, worker_log))
            run = client.wait(run_id, timeout=20)
        assert run.status == "completed", run
        assert run.output == {"echo": {"hello": "dev"}}
        assert count(fx_dir, "echo", run_id) == 1
        assert (data / "logs" / "history.log").exists()
        print(f"\ncairn dev ready after {first_start:.1f} s (fresh data dir), {second_start:.1f} s (restart)")
        workers[-1].send_signal(signal.SIGTERM)
        workers[-1].wait(20)
        assert dev.interrupt() == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        dev.kill()
        # A cairn dev that was killed leaves its servers running; stop them by
        # their pid files (only servers this test started, on its data dir).
        _stop_leftover_servers(data, ports)


def _stop_leftover_servers(data: Path, ports: dict[str, int]) -> None:
    """Kills what a killed `cairn dev` of this test may have left running: its
    PostgreSQL and NATS (found by their pid files on this test's data dir) and its
    services (found by their --listen address on this test's ports)."""
    pids = []
    listens = [f"127.0.0.1:{ports[k]}".encode() for k in ("frontend", "history", "matching")]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cairn_cli" in argv and any(a in argv for a in listens):
            pids.append(int(entry.name))
    pg_pid = data / "postgres" / "postmaster.pid"
    if pg_pid.exists():
        try:
            pids.append(int(pg_pid.read_text().splitlines()[0]))
        except (OSError, ValueError, IndexError):
            pass
    nats_pid = data / "logs" / "nats.pid"
    if nats_pid.exists():
        try:
            pids.append(int(nats_pid.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(data).encode() in cmd or b"cairn_cli" in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
