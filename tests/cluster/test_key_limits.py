"""Limits per API key against a real cluster (issue 14), its frontend started
with small ones (CAIRN_KEY_RATE=2, CAIRN_KEY_BURST=10, CAIRN_KEY_STREAMS=2):
a key that floods is refused RESOURCE_EXHAUSTED naming the limit and the key,
with a retry delay in the trailing metadata (HTTP 429 with Retry-After), while
another key of the same namespace keeps being served; the refused calls wrote
nothing; the SDK sends a read again after the delay and raises RateLimitedError
for a plain trigger; the third concurrent watch of a key is refused, another
key's are not, and a slot freed is usable again. No sleeps: conditions with
deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from harness import Cluster, auth, cairn_cli, expect_rpc_error, json_payload
from harness.database import table_counts
from harness.waiting import wait_for

from cairn.limits import RETRY_AFTER_KEY
from cairn.v1 import key_service_pb2 as kpb
from cairn.v1 import key_service_pb2_grpc as kgrpc
from cairn.v1 import run_service_pb2 as rpb
from cairn.v1 import run_service_pb2_grpc as rgrpc
from cairn.v1 import worker_service_pb2 as wpb
from cairn.v1 import worker_service_pb2_grpc as wgrpc
from cairn_cli.embedded import free_port
from worker_sdk import Client, RateLimitedError

RATE, BURST, STREAMS = 2, 10, 2
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
# What one trigger of a run nobody serves writes: the run, its event, its queue entry.
TRIGGER_TABLES = ("runs", "run_events", "queue_entries")


class Key:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        made = kgrpc.KeyServiceStub(cluster.channel()).CreateKey(
            kpb.CreateKeyRequest(namespace=namespace, role=kpb.KEY_ROLE_CLIENT), timeout=10
        )
        self.id = made.key.id
        self.secret = made.secret
        self.runs = rgrpc.RunServiceStub(cluster.channel(key=made.secret))


@pytest.fixture
def limited(cluster_factory: Any) -> tuple[Cluster, str, Key, Key]:
    """A cluster with small limits per key, task "t" declared in namespace "a"
    (no worker polls it), its HTTP API's URL, and two client keys of "a"."""
    http = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(
        env={
            "CAIRN_HTTP_ADDRESS": http,
            "CAIRN_KEY_RATE": str(RATE),
            "CAIRN_KEY_BURST": str(BURST),
            "CAIRN_KEY_STREAMS": str(STREAMS),
        }
    )
    register = wpb.RegisterWorkerRequest(
        namespace="a", worker_id="w-a", version="1", tasks=[wpb.TaskDefinition(task_id="t")], slots=1
    )
    wgrpc.WorkerServiceStub(cluster.channel()).RegisterWorker(register, timeout=10)
    return cluster, f"http://{http}", Key(cluster, "a"), Key(cluster, "a")


def trigger() -> rpb.TriggerRunRequest:
    return rpb.TriggerRunRequest(namespace="a", task_id="t", payload=json_payload(1))


def retry_ms(exc: grpc.RpcError) -> int:
    values = [v for k, v in exc.trailing_metadata() or () if k == RETRY_AFTER_KEY]  # type: ignore[attr-defined]
    assert len(values) == 1, exc.trailing_metadata()  # type: ignore[attr-defined]
    return int(values[0])


def exhaust(key: Key, call: Callable[[], Any] | None = None) -> grpc.RpcError:
    """Calls as key until the frontend refuses it by its rate; the refusal."""

    def refused() -> grpc.RpcError | None:
        try:
            (call or (lambda: key.runs.ListRuns(rpb.ListRunsRequest(namespace="a"), timeout=10)))()
        except grpc.RpcError as exc:
            assert exc.code() == EXHAUSTED, exc
            return exc
        return None

    return wait_for(refused, timeout=30, interval=0.001, message=f"key {key.id} was never refused")


def test_a_flooding_key_is_refused_with_a_retry_delay_while_another_key_goes_on_and_nothing_refused_is_written(
    limited: tuple[Cluster, str, Key, Key],
) -> None:
    cluster, _, a, b = limited
    before = table_counts(cluster)
    started = time.monotonic()
    accepted = {"a": 0, "b": 0}
    refusals: list[grpc.RpcError] = []
    for _ in range(4):  # a sends 25 triggers at a time, b one trigger and one read in between
        for _ in range(25):
            try:
                a.runs.TriggerRun(trigger(), timeout=10)
                accepted["a"] += 1
            except grpc.RpcError as exc:
                assert exc.code() == EXHAUSTED, exc
                refusals.append(exc)
        run = b.runs.TriggerRun(trigger(), timeout=10).run  # b's calls all pass
        accepted["b"] += 1
        assert b.runs.GetRun(rpb.GetRunRequest(namespace="a", run_id=run.id), timeout=10).run.id == run.id
    elapsed = time.monotonic() - started
    # a's bucket: BURST at once, then RATE a second (plus the one that came back as it ran)
    assert accepted["a"] <= BURST + RATE * elapsed + 1, (accepted, elapsed)
    assert len(refusals) == 100 - accepted["a"] and refusals
    for exc in refusals[:5]:
        message = exc.details() or ""
        assert "request rate limit" in message and f"API key {a.id}" in message, message
        assert f"{RATE} requests/s (burst {BURST})" in message and "retry after" in message, message
        assert 1 <= retry_ms(exc) <= 1000 // RATE  # one token comes back within 1/RATE s
    after = table_counts(cluster)
    written = accepted["a"] + accepted["b"]
    assert after == {t: n + (written if t in TRIGGER_TABLES else 0) for t, n in before.items()}


def test_http_answers_429_with_retry_after_and_the_other_key_200(
    limited: tuple[Cluster, str, Key, Key],
) -> None:
    cluster, base, a, b = limited
    run = b.runs.TriggerRun(trigger(), timeout=10).run
    with (
        httpx.Client(base_url=base, headers=auth.headers(a.secret), timeout=10) as as_a,
        httpx.Client(base_url=base, headers=auth.headers(b.secret), timeout=10) as as_b,
    ):

        def limited_answer() -> httpx.Response | None:
            answer = as_a.get(f"/v1/runs/{run.id}", params={"namespace": "a"})
            return answer if answer.status_code == 429 else None

        answer = wait_for(limited_answer, timeout=30, interval=0.001, message="a was never answered 429")
        assert answer.json()["code"] == "RESOURCE_EXHAUSTED" and a.id in answer.json()["message"]
        assert int(answer.headers["retry-after"]) == 1  # whole seconds, rounded up from <= 500 ms
        assert as_b.get(f"/v1/runs/{run.id}", params={"namespace": "a"}).status_code == 200

        def watch_refused() -> httpx.Response | None:  # a stream, refused before anything is streamed
            exhaust(a)
            with as_a.stream("GET", f"/v1/runs/{run.id}/watch", params={"namespace": "a"}) as watch:
                return watch if watch.status_code == 429 else None  # else a token came back meanwhile

        watch = wait_for(watch_refused, timeout=30, message="a's watch was never answered 429")
        assert watch.headers["retry-after"] == "1" and watch.headers["content-type"] == "application/json"


def test_the_sdk_sends_a_read_again_after_the_delay_and_raises_for_a_plain_trigger(
    limited: tuple[Cluster, str, Key, Key],
) -> None:
    cluster, _, a, b = limited
    run = b.runs.TriggerRun(trigger(), timeout=10).run
    with Client(address=cluster.address, namespace="a", api_key=a.secret, rpc_timeout=10) as client:
        exhaust(a)
        assert client.get(run.id).id == run.id  # refused first, then served after the delay

        def trigger_refused() -> RateLimitedError | None:
            exhaust(a)
            try:
                client.trigger("t", 1)  # no idempotency key: not sent again
            except RateLimitedError as exc:
                return exc
            return None

        error = wait_for(trigger_refused, timeout=30, message="a plain trigger was never refused")
        assert f"API key {a.id}" in str(error) and 0 < error.retry_after <= 1 / RATE
        exhaust(a)
        keyed = client.trigger("t", 1, idempotency_key="order-1")  # sent again after the delay
        assert client.trigger("t", 1, idempotency_key="order-1").id == keyed.id


def test_the_third_open_watch_of_a_key_is_refused_and_another_keys_are_not(
    limited: tuple[Cluster, str, Key, Key],
) -> None:
    cluster, _, a, b = limited
    run = b.runs.TriggerRun(trigger(), timeout=10).run
    watch = rpb.WatchRunsRequest(namespace="a")
    open_a = [a.runs.WatchRuns(watch, timeout=120) for _ in range(STREAMS)]
    for stream in open_a:
        stream.initial_metadata()  # the frontend took it: it sent the headers
    third = a.runs.WatchRuns(watch, timeout=120)
    message = expect_rpc_error(lambda: next(iter(third)), EXHAUSTED, "stream limit", f"API key {a.id}")
    assert f"{STREAMS} long polls and streams open" in message
    # every long poll of the key counts: a WaitRun too
    wait = rpb.WaitRunRequest(namespace="a", run_id=run.id)
    expect_rpc_error(lambda: a.runs.WaitRun(wait, timeout=10), EXHAUSTED, "stream limit")
    open_b = [b.runs.WatchRuns(watch, timeout=120) for _ in range(STREAMS)]
    for stream in open_b:
        stream.initial_metadata()  # another key's streams are its own
    # the CLI says it in one line
    cli = cairn_cli(cluster, "runs", "watch", run.id, "--namespace", "a", "--api-key", a.secret)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith("error: stream limit of API key") and "retry after" in cli.stderr
    open_a[0].cancel()  # a slot freed is a slot again

    def admitted() -> bool:
        again = a.runs.WatchRuns(watch, timeout=120)
        try:
            again.initial_metadata()
            if again.done() and again.code() == EXHAUSTED:
                return False
            open_a.append(again)
            return True
        finally:
            if again not in open_a:
                again.cancel()

    wait_for(admitted, timeout=10, interval=0.1, message="the freed slot was never given back")
    for stream in open_a + open_b:
        stream.cancel()
