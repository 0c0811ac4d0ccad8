"""@task, @step, Retry, Queue, the context object and Worker task discovery:
validation and the values they produce (no server)."""

from __future__ import annotations

import types

import pytest
from google.protobuf.duration_pb2 import Duration

from cairn.backoff import RetrySettings
from worker_sdk import NonRetryableError, Queue, Retry, Task, Worker, context, step, task
from worker_sdk._worker import discover_tasks


async def _handler(payload: dict) -> dict:
    return payload


def test_task_defaults() -> None:
    t = task(id="process-video")(_handler)
    assert isinstance(t, Task)
    assert t.id == "process-video" and t.queue_name == "process-video"
    assert t.fn is _handler
    assert t.retry == Retry()
    d = t._definition()
    assert (d.task_id, d.queue) == ("process-video", "process-video")
    assert d.retry.max_attempts == 3 and d.retry.factor == 2.0
    assert d.retry.min_timeout == Duration(seconds=1)
    assert d.retry.max_timeout == Duration(seconds=60)


def test_task_with_queue_and_retry() -> None:
    videos = Queue("video", concurrency_limit=5)
    retry = Retry(
        max_attempts=4, factor=3, min_timeout=0.25, max_timeout=10.0, jitter=True, non_retryable=(KeyError,)
    )
    t = task(id="v1:encode.x_y", queue=videos, retry=retry)(_handler)
    assert t.queue is videos and t.queue_name == "video"
    d = t._definition()
    assert d.queue == "video"
    assert d.retry.max_attempts == 4 and d.retry.factor == 3.0 and d.retry.jitter
    assert d.retry.min_timeout == Duration(nanos=250_000_000)
    assert d.retry.max_timeout == Duration(seconds=10)
    assert task(id="t2", queue="q-by-name")(_handler).queue_name == "q-by-name"


@pytest.mark.parametrize(
    "bad_id, message",
    [
        ("", "task id must not be empty"),
        ("-starts-with-dash", "task id '-starts-with-dash' is invalid"),
        ("has space", "task id 'has space' is invalid"),
        ("x" * 129, "at most 128"),
    ],
)
def test_bad_task_id(bad_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task(id=bad_id)


def test_task_id_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="task id must be a string"):
        task(id=3)  # type: ignore[arg-type]


def test_sync_task_function_is_refused_naming_the_task() -> None:
    def sync(payload: dict) -> dict:
        return payload

    with pytest.raises(TypeError, match=r"task 'sync-task': .*sync must be an 'async def'"):
        task(id="sync-task")(sync)


@pytest.mark.parametrize(
    "fn_src", ["async def f(): pass", "async def f(a, b): pass", "async def f(*, payload): pass"]
)
def test_task_function_must_take_one_argument(fn_src: str) -> None:
    namespace: dict = {}
    exec(fn_src, namespace)
    with pytest.raises(TypeError, match="task 'one-arg': f must take exactly one argument"):
        task(id="one-arg")(namespace["f"])


def test_task_function_with_optional_extras_is_fine() -> None:
    async def f(payload, extra=None): ...

    task(id="ok")(f)


def test_task_bad_queue_and_retry_types() -> None:
    with pytest.raises(TypeError, match="task 'q': queue must be a Queue or a string"):
        task(id="q", queue=5)(_handler)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task 'q': queue name 'bad name' is invalid"):
        task(id="q", queue="bad name")(_handler)
    with pytest.raises(TypeError, match="task 'r': retry must be a Retry"):
        task(id="r", retry={"max_attempts": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"max_attempts": 0}, ValueError, "retry.max_attempts must be at least 1"),
        ({"factor": 0.5}, ValueError, "retry.factor must be at least 1"),
        ({"min_timeout": -1}, ValueError, "retry.min_timeout must not be negative"),
        ({"min_timeout": 5, "max_timeout": 1}, ValueError, "retry.max_timeout"),
        ({"max_timeout": float("inf")}, ValueError, "retry.max_timeout must be finite"),
        ({"max_attempts": 2.5}, TypeError, "retry.max_attempts must be an int"),
        ({"factor": "2"}, TypeError, "retry.factor must be a number"),
        ({"jitter": 1}, TypeError, "retry.jitter must be a bool"),
        ({"non_retryable": ("KeyError",)}, TypeError, "retry.non_retryable must contain exception"),
    ],
)
def test_bad_retry(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Retry(**kwargs)


def test_retry_settings_and_non_retryable() -> None:
    r = Retry(max_attempts=5, factor=2, min_timeout=0.1, non_retryable=KeyError)
    assert r.settings == RetrySettings(
        max_attempts=5, factor=2.0, min_timeout=0.1, max_timeout=60.0, jitter=False
    )
    assert r.non_retryable == (KeyError,)
    assert r.is_non_retryable(KeyError("x")) and r.is_non_retryable(NonRetryableError())
    assert not r.is_non_retryable(ValueError())
    assert r.non_retryable_names() == {"KeyError"}


def test_bad_queue() -> None:
    with pytest.raises(ValueError, match="queue name must not be empty"):
        Queue("")
    with pytest.raises(ValueError, match="queue 'q': concurrency_limit must be at least 1"):
        Queue("q", concurrency_limit=0)
    assert Queue("q", concurrency_limit=2).concurrency_limit == 2


def test_step_validation() -> None:
    def sync() -> None: ...

    with pytest.raises(TypeError, match="step 'named' must be an 'async def'"):
        step(name="named")(sync)
    with pytest.raises(TypeError, match="must be an 'async def'"):
        step(sync)
    with pytest.raises(TypeError, match="@step: retry must be a Retry"):
        step(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="@step: name must be a non-empty string"):
        step(name="")


def test_step_name_defaults_to_qualname() -> None:
    @step
    async def download(url: str) -> str:
        return url

    assert download.step_name == "test_step_name_defaults_to_qualname.<locals>.download"
    assert download.retry == Retry(max_attempts=1)
    assert step(name="dl")(download.fn).step_name == "dl"


@pytest.mark.parametrize("attr", ["run_id", "attempt", "task_id", "logger", "idempotency_key"])
def test_context_outside_a_task_raises(attr: str) -> None:
    with pytest.raises(RuntimeError, match=f"context.{attr} is only available while a task runs"):
        getattr(context, attr)


def test_worker_discovers_tasks_in_a_module() -> None:
    mod = types.ModuleType("myapp.tasks")
    mod.a = task(id="a")(_handler)
    mod.b = task(id="b")(_handler)
    mod.alias = mod.a
    mod.other = 42
    assert [t.id for t in discover_tasks(mod)] == ["a", "b"]

    w = Worker(mod, address="h:1", namespace="ns", slots=2, version="v7", worker_id="w1")
    assert set(w.tasks) == {"a", "b"}
    assert (w.address, w.namespace, w.slots, w.version, w.worker_id) == ("h:1", "ns", 2, "v7", "w1")


def test_worker_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_ADDRESS", "cluster:9")
    monkeypatch.setenv("CAIRN_NAMESPACE", "team")
    monkeypatch.setenv("CAIRN_WORKER_VERSION", "abc123")
    w = Worker([task(id="a")(_handler)])
    assert (w.address, w.namespace, w.version) == ("cluster:9", "team", "abc123")
    monkeypatch.delenv("CAIRN_ADDRESS")
    monkeypatch.delenv("CAIRN_NAMESPACE")
    monkeypatch.delenv("CAIRN_WORKER_VERSION")
    w = Worker([task(id="a")(_handler)])
    assert (w.address, w.namespace) == ("127.0.0.1:7373", "default")
    assert w.worker_id.count("-") >= 2
    # No version given: one from the task declarations, the same for the same tasks.
    assert w.version.startswith("dev-") and w.version == Worker([task(id="a")(_handler)]).version
    assert Worker([task(id="a", queue="elsewhere")(_handler)]).version != w.version


def test_worker_without_tasks_names_the_module() -> None:
    with pytest.raises(ValueError, match="no tasks found in module 'empty_mod'"):
        Worker(types.ModuleType("empty_mod"))


def test_worker_refuses_duplicate_ids_and_bad_slots() -> None:
    async def other(payload): ...

    with pytest.raises(ValueError, match="task id 'a' twice"):
        Worker([task(id="a")(_handler), task(id="a")(other)])
    with pytest.raises(ValueError, match="slots must be"):
        Worker([task(id="a")(_handler)], slots=0)
    with pytest.raises(TypeError, match="expected Task objects"):
        Worker([_handler])  # type: ignore[list-item]
