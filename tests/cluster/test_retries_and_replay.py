"""Execution semantics with real processes: in-place step retries, task retries
after a recorded backoff, backoff growth, non-retryable errors, non-determinism
on a changed task, and replay of recorded step results and failures.

The tasks are in tests/apps/semantic_tasks.py (and semantic_tasks_v2.py). Each
appends lines to files in a per-test directory (SEMANTICS_DIR), which is how a
test counts the times a step or task body really ran.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, wait_for

from worker_sdk import Client, ErrorInfo, NotFoundError, Run

APP = "tests.apps.semantic_tasks"
APP_V2 = "tests.apps.semantic_tasks_v2"
RUN_TIMEOUT = 15.0
NON_RETRYABLE_TYPE = "worker_sdk.errors.NonRetryableError"


# ---- helpers ---------------------------------------------------------------------------


@pytest.fixture
def side_dir(tmp_path: Path) -> Path:
    d = tmp_path / "side-effects"
    d.mkdir()
    return d


def start_worker(cluster: Cluster, side_dir: Path, module: str = APP, **kwargs: Any):
    return cluster.start_worker(module, env={"SEMANTICS_DIR": str(side_dir)}, **kwargs)


def lines(side_dir: Path, name: str) -> list[str]:
    """The lines task code appended to <side_dir>/<name>.log ([] when none)."""
    path = side_dir / f"{name}.log"
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()


def trigger(client: Client, task_id: str, payload: Any = None) -> Run:
    """Triggers a run once the worker has registered the task (until then the
    frontend answers NOT_FOUND)."""
    return wait_for(
        lambda: client.trigger(task_id, payload or {}),
        timeout=20,
        ignore=(NotFoundError,),
        message=f"task {task_id!r} was never registered by a worker",
    )


def finish(client: Client, run_id: str, timeout: float = RUN_TIMEOUT) -> Run:
    return client.wait(run_id, timeout=timeout)


def attempt_rows(cluster: Cluster, run_id: str) -> list[Any]:
    return cluster.sql(
        "SELECT number, status, started_at, finished_at, retry_delay_ms "
        "FROM attempts WHERE run_id = $1 ORDER BY number",
        uuid.UUID(run_id),
    )


def events_of(run: Run, type_: str) -> list[dict[str, Any]]:
    out = []
    for e in run.events:
        if e.type == type_:
            out.append(
                {"id": e.id, "type": e.type, "attempt": e.attempt, "details": json.loads(e.details or "{}")}
            )
    return out


def assert_error(error: ErrorInfo | None, type_: str, message_part: str, trace_part: str) -> None:
    """An ErrorInfo as recorded: exact type, message containing message_part, and a
    stack trace that is a real Python traceback naming trace_part."""
    assert error is not None, "no error recorded"
    assert error.type == type_, error
    assert message_part in error.message, error
    trace = error.stack_trace
    assert trace.strip(), f"empty stack trace: {error}"
    assert "Traceback (most recent call last)" in trace, trace
    assert trace_part in trace, trace


# ---- 1. a step is retried in place -------------------------------------------------------


def test_step_retried_in_place_within_one_attempt(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    run = finish(client, trigger(client, "sem-step-retry").id)

    assert run.status == "completed", run
    assert run.output == "ok after 3 tries"
    assert run.attempt_count == 1
    assert [a.status for a in run.attempts] == ["completed"]
    assert run.attempts[0].error is None
    assert len(run.steps) == 1, run.steps
    s = run.steps[0]
    assert (s.position, s.name, s.status) == (0, "flaky", "completed"), s
    assert s.tries == 3, s
    assert s.attempt == 1, s
    assert s.output == "ok after 3 tries"
    assert len(lines(side_dir, "flaky")) == 3  # the body ran three times
    assert len(lines(side_dir, "step_retry_body")) == 1  # in one attempt
    assert not events_of(run, "attempt_failed")


# ---- 2. a task is retried as a new attempt after its backoff -----------------------------


def test_task_retried_after_recorded_backoff(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    run = finish(client, trigger(client, "sem-task-retry").id)

    assert run.status == "completed", run
    assert run.output == {"first": "recorded before the failure", "body_runs": 2}
    assert run.attempt_count == 2
    first, second = run.attempts
    assert (first.number, first.status) == (1, "failed"), first
    assert (second.number, second.status) == (2, "completed"), second
    assert_error(
        first.error, "RuntimeError", "task body fails in its first attempt", "task_retry_body_fails_once"
    )
    assert first.error.non_retryable is False
    assert first.retry_delay is not None and first.retry_delay.total_seconds() == pytest.approx(1.0), first
    assert second.error is None

    rows = attempt_rows(cluster, run.id)
    assert [r["number"] for r in rows] == [1, 2]
    assert rows[0]["retry_delay_ms"] == 1000
    gap = (rows[1]["started_at"] - rows[0]["finished_at"]).total_seconds()
    assert gap >= 0.95, f"attempt 2 started {gap:.3f}s after attempt 1 failed; backoff is 1 s"

    failed = events_of(run, "attempt_failed")
    assert len(failed) == 1, run.events
    assert failed[0]["attempt"] == 1
    assert failed[0]["details"].get("retry_delay") == pytest.approx(1.0), failed[0]

    # The step recorded in attempt 1 is replayed, not re-run, in attempt 2.
    assert len(lines(side_dir, "before_failure")) == 1
    assert len(lines(side_dir, "task_retry_body")) == 2
    assert len(run.steps) == 1, run.steps
    s = run.steps[0]
    assert (s.name, s.status, s.attempt, s.tries) == ("before-failure", "completed", 1, 1), s


# ---- 3. backoff grows by the factor ---------------------------------------------------------


def test_backoff_grows_and_run_fails_after_max_attempts(
    cluster: Cluster, client: Client, side_dir: Path
) -> None:
    start_worker(cluster, side_dir)
    run = finish(client, trigger(client, "sem-backoff").id)

    assert run.status == "failed", run
    assert run.attempt_count == 3
    assert [a.status for a in run.attempts] == ["failed", "failed", "failed"]
    assert [a.number for a in run.attempts] == [1, 2, 3]
    delays = [a.retry_delay.total_seconds() if a.retry_delay is not None else None for a in run.attempts]
    assert delays[0] == pytest.approx(0.2), delays
    assert delays[1] == pytest.approx(0.6), delays
    assert delays[2] is None, delays  # no retry after the last attempt
    for n, a in enumerate(run.attempts, 1):
        assert_error(a.error, "ValueError", f"always fails (run {n})", "always_fails")

    rows = attempt_rows(cluster, run.id)
    assert [r["retry_delay_ms"] for r in rows] == [200, 600, None]
    for before, after, delay in ((rows[0], rows[1], 0.2), (rows[1], rows[2], 0.6)):
        gap = (after["started_at"] - before["finished_at"]).total_seconds()
        assert gap >= delay - 0.05, (
            f"attempt {after['number']} started {gap:.3f}s after "
            f"attempt {before['number']}; backoff is {delay} s"
        )

    # The final error is on the run.
    assert_error(run.error, "ValueError", "always fails (run 3)", "always_fails")
    assert run.finished_at is not None
    assert len(lines(side_dir, "always_fails")) == 3
    assert [e["details"].get("retry_delay") for e in events_of(run, "attempt_failed")] == [
        pytest.approx(0.2),
        pytest.approx(0.6),
    ]
    assert len(events_of(run, "failed")) == 1


# ---- 4. non-retryable errors end the run at once ------------------------------------------


def test_non_retryable_errors_fail_the_run_at_once(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    ids = {
        t: trigger(client, t).id
        for t in (
            "sem-nonretryable",
            "sem-nonretryable-type",
            "sem-nonretryable-step",
            "sem-nonretryable-step-type",
        )
    }
    runs = {t: finish(client, rid) for t, rid in ids.items()}

    for t, run in runs.items():
        assert run.status == "failed", (t, run)
        assert run.attempt_count == 1, (t, run.attempts)  # max_attempts=5 not used
        assert [a.status for a in run.attempts] == ["failed"], (t, run.attempts)
        assert run.attempts[0].retry_delay is None, (t, run.attempts)
        assert run.error is not None and run.error.non_retryable is True, (t, run.error)
        assert run.attempts[0].error == run.error, t
        assert not events_of(run, "attempt_failed"), t

    # (a) NonRetryableError raised by the task.
    assert_error(
        runs["sem-nonretryable"].error, NON_RETRYABLE_TYPE, "retrying cannot help", "raises_non_retryable"
    )
    assert len(lines(side_dir, "nonretryable")) == 1
    # (b) a type listed in Retry(non_retryable=(KeyError,)).
    assert_error(runs["sem-nonretryable-type"].error, "KeyError", "no-such-key", "raises_listed_type")
    assert len(lines(side_dir, "nonretryable_type")) == 1

    # (c) inside a step: not retried in place (its Retry allows 5 tries), and the run fails.
    for task_id, step_name, log, err_type, msg, fn in (
        (
            "sem-nonretryable-step",
            "step-non-retryable",
            "step_nonretryable",
            NON_RETRYABLE_TYPE,
            "step says stop",
            "step_non_retryable",
        ),
        (
            "sem-nonretryable-step-type",
            "step-listed-type",
            "step_listed_type",
            "KeyError",
            "step-missing-key",
            "step_listed_type",
        ),
    ):
        run = runs[task_id]
        assert len(lines(side_dir, log)) == 1, f"{step_name} body ran more than once"
        assert len(run.steps) == 1, run.steps
        s = run.steps[0]
        assert (s.name, s.status, s.attempt, s.tries) == (step_name, "failed", 1, 1), s
        assert_error(s.error, err_type, msg, fn)
        assert s.error.non_retryable is True, s
        assert_error(run.error, err_type, msg, fn)
    assert len(lines(side_dir, "nonretryable_step_body")) == 1
    assert len(lines(side_dir, "listed_type_step_body")) == 1


# ---- 5. a changed task fails its run with a non-determinism error -------------------------


def test_changed_step_order_fails_run_with_non_determinism(
    cluster: Cluster, client: Client, side_dir: Path
) -> None:
    v1 = start_worker(cluster, side_dir, version="v1")
    run_id = trigger(client, "sem-nondet").id

    def a_recorded_and_b_running() -> bool:
        steps = client.get(run_id).steps
        return any(s.name == "a" for s in steps) and len(lines(side_dir, "nondet_b")) == 1

    wait_for(
        a_recorded_and_b_running,
        timeout=RUN_TIMEOUT,
        message="step 'a' was not recorded / step 'b' did not start",
    )
    v1.kill()  # SIGKILL while step "b" runs: attempt 1's lease will expire

    start_worker(cluster, side_dir, APP_V2, version="v2")
    run = finish(client, run_id, timeout=20)

    assert run.status == "failed", run
    err = run.error
    assert err is not None
    assert "NonDeterminism" in err.type, err
    assert "'a'" in err.message and "'x'" in err.message, err
    assert err.non_retryable is True, err
    assert err.stack_trace.strip(), err
    # No retry after it: attempt 1 crashed (killed), attempt 2 (v2) failed, and that was all
    # although the policy allows 3 attempts.
    assert run.attempt_count == 2, run.attempts
    assert [a.status for a in run.attempts] == ["crashed", "failed"], run.attempts
    assert [a.worker_version for a in run.attempts] == ["v1", "v2"], run.attempts
    assert run.attempts[1].retry_delay is None
    assert run.attempts[1].error.type == err.type
    # The journal still holds only "a"; neither "x" nor v2's "b" ran.
    assert [(s.position, s.name) for s in run.steps] == [(0, "a")]
    assert len(lines(side_dir, "nondet_a")) == 1
    assert lines(side_dir, "nondet_x") == []
    assert lines(side_dir, "nondet_b_v2") == []


# ---- 6. replay returns the recorded value -------------------------------------------------


def test_replay_returns_recorded_step_value(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    run = finish(client, trigger(client, "sem-replay-value").id)

    assert run.status == "completed", run
    assert run.attempt_count == 2
    assert [a.status for a in run.attempts] == ["failed", "completed"]
    minted = lines(side_dir, "mint")
    assert len(minted) == 1, "the step body ran again on replay"
    value = minted[0]
    assert str(uuid.UUID(value)) == value
    assert len(run.steps) == 1
    s = run.steps[0]
    assert (s.name, s.status, s.attempt) == ("mint", "completed", 1), s
    assert s.output == value
    assert run.output == value
    # Both attempts saw the same value: live in attempt 1, replayed in attempt 2.
    assert lines(side_dir, "replay_value_seen") == [value, value]


# ---- 7. a failed step is replayed as a failure ---------------------------------------------


def test_failed_step_replayed_as_step_failed_error(cluster: Cluster, client: Client, side_dir: Path) -> None:
    start_worker(cluster, side_dir)
    run = finish(client, trigger(client, "sem-failed-step-replay").id)

    assert run.status == "completed", run
    assert run.output == "handled"
    assert run.attempt_count == 2
    assert [a.status for a in run.attempts] == ["failed", "completed"]
    assert len(lines(side_dir, "doomed")) == 1, "the failed step ran again on replay"
    # Attempt 1 caught the live failure, attempt 2 the replayed one, with the same details.
    assert lines(side_dir, "doomed_handled") == ["doomed|ValueError|doomed for good"] * 2
    assert len(run.steps) == 1
    s = run.steps[0]
    assert (s.name, s.status, s.attempt, s.tries) == ("doomed", "failed", 1, 1), s
    assert_error(s.error, "ValueError", "doomed for good", "doomed")
