"""Worker: registers a set of tasks with the cluster and runs their attempts,
`slots` at a time, by long-polling the frontend."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from cairn.limits import DEFAULT_POLL_WAIT, MAX_POLL_ATTEMPTS
from cairn.v1 import run_service_pb2_grpc, wait_service_pb2_grpc, worker_service_pb2, worker_service_pb2_grpc
from worker_sdk import _validate
from worker_sdk._attempt import Draining
from worker_sdk._batching import BatchingStub
from worker_sdk._execution import execute_attempt
from worker_sdk._grpc import (
    TRANSIENT_CODES,
    TLSConfig,
    code_of,
    details_of,
    frontend_address,
    make_stub,
    open_channel,
    resolve_api_key,
    resolve_namespace,
    resolve_tls,
    retry_delay_of,
    to_cairn_error,
)
from worker_sdk._release import RELEASE_SECONDS
from worker_sdk._task import Task
from worker_sdk.errors import ArgumentTypeError, InvalidArgumentError, UnavailableError

AnyTask = Task[Any, Any]

log = logging.getLogger("cairn.worker")
REGISTER_TIMEOUT = 10.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
LIMITED_LOG_SECONDS = 60.0  # a worker whose polls are rate limited says so this often at most


def discover_tasks(tasks_or_module: ModuleType | str | Iterable[AnyTask] | AnyTask) -> list[AnyTask]:
    """The tasks of a module (object or dotted name, imported with the current
    directory on sys.path) or of an explicit list. InvalidArgumentError when there are none
    or two different tasks share an id."""
    if isinstance(tasks_or_module, Task):
        found, where = [tasks_or_module], "the given task"
    elif isinstance(tasks_or_module, (str, ModuleType)):
        module = tasks_or_module
        if isinstance(module, str):
            cwd = os.getcwd()
            if "" not in sys.path and cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(module)
        where = f"module '{module.__name__}'"
        found = [v for v in vars(module).values() if isinstance(v, Task)]
    else:
        found = list(tasks_or_module)
        where = "the given list"
        for t in found:
            if not isinstance(t, Task):
                raise ArgumentTypeError(f"Worker: expected Task objects (from @task), got {t!r}")
    by_id: dict[str, AnyTask] = {}
    for t in found:
        other = by_id.setdefault(t.id, t)
        if other is not t:
            raise InvalidArgumentError(
                f"{where} declares task id '{t.id}' twice ({other.fn.__qualname__} and {t.fn.__qualname__})"
            )
    if not by_id:
        raise InvalidArgumentError(f"no tasks found in {where}: declare them with @task(id=...)")
    return list(by_id.values())


def select_queues(tasks: list[AnyTask], queues: Iterable[str] | str | None) -> list[AnyTask]:
    """The tasks whose queue is one of `queues` (a queue name or a list of them;
    None: all tasks). InvalidArgumentError naming the queues when none is left."""
    if queues is None:
        return tasks
    names = [queues] if isinstance(queues, str) else list(queues)
    if not names:
        raise InvalidArgumentError(
            "Worker: queues must name at least one queue (or be None to serve every task)"
        )
    wanted = {_validate.name("Worker: queue name", q) for q in names}
    selected = [t for t in tasks if t.queue_name in wanted]
    if not selected:
        have = sorted({t.queue_name for t in tasks})
        raise InvalidArgumentError(
            f"Worker: no task is on queue(s) {', '.join(sorted(wanted))}; "
            f"the tasks' queues are {', '.join(have)}"
        )
    unused = wanted - {t.queue_name for t in selected}
    if unused:
        log.warning(
            "Worker: no task is on queue(s) %s; serving queue(s) %s",
            ", ".join(sorted(unused)),
            ", ".join(sorted(wanted - unused)),
        )
    return selected


DEFAULT_GRACE = 10.0


def _grace(grace: float | None) -> float:
    """The grace period of a stop: the argument, else $CAIRN_WORKER_GRACE, else
    DEFAULT_GRACE; InvalidArgumentError unless a number >= 0."""
    value: Any = grace
    where = "grace"
    if value is None:
        value, where = os.environ.get("CAIRN_WORKER_GRACE") or DEFAULT_GRACE, "CAIRN_WORKER_GRACE"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"Worker: {where} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not seconds >= 0 or seconds == float("inf"):
        raise InvalidArgumentError(f"Worker: {where} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


# Attempts a worker runs at once unless told: 100, as Temporal's Python worker
# (max_concurrent_activities) and Hatchet's worker (slots) for async tasks. At most
# MAX_POLL_ATTEMPTS (also 100) are handed over by one poll.
DEFAULT_SLOTS = 100


def dev_version(tasks: Iterable[AnyTask]) -> str:
    """The version of a worker that names none: "dev-" and a digest of its task
    declarations, so changing a task's queue, retries, schedule or limits in
    development is a new version (matching refuses a changed declaration under
    the same version) while restarting unchanged code keeps the version."""
    digest = hashlib.sha256()
    for definition in sorted((t._definition() for t in tasks), key=lambda d: d.task_id):
        digest.update(definition.SerializeToString(deterministic=True))
    return f"dev-{digest.hexdigest()[:12]}"


class Worker:
    """Serves tasks: `await worker.run()` (until `stop()`), or `worker.run_sync()`
    which also stops gracefully on SIGINT/SIGTERM. On stop, polling ends at once
    and each running attempt goes on until it finishes or reaches its next
    checkpoint: a step that has not started yet is not started, the steps
    running are let finish and record, and the attempt is handed back
    (FinishAttempt RELEASED), so another worker takes the run at once and
    replays what was recorded, without waiting for a lease and without using
    up a retry. `grace` (seconds; else $CAIRN_WORKER_GRACE, else 10) bounds
    all of this: what still runs then is cancelled and handed back (its
    running step runs again on the next attempt); a second stop() ends the
    grace at once. An attempt handed over as the worker began to stop is handed
    back unstarted. Then run() returns (`cairn worker` exits 0).
    With `queues` (a list of queue names) it registers and serves only the tasks
    on those queues. address is as for Client: host:port, a list of frontends
    "a:7373,b:7373" or a gRPC target such as "dns:///cairn.internal:7373".
    slots (default DEFAULT_SLOTS, 100) is how many attempts run at once, each an
    asyncio task on this worker's event loop: as many as Temporal's Python worker
    runs activities by default, for I/O-bound async tasks; lower it for CPU-bound
    or memory-heavy ones. api_key: argument, else $CAIRN_API_KEY, else the
    admin.key of `cairn dev` ($CAIRN_DEV_DIR, else ./.cairn), else none; sent on
    every call. A refused key (UnauthenticatedError, PermissionDeniedError) ends
    run() at registration. tls: a TLSConfig (the CA to trust, this worker's
    certificate for mutual TLS), else the CAIRN_TLS_* variables, else plaintext."""

    def __init__(
        self,
        tasks_or_module: ModuleType | str | Iterable[AnyTask] | AnyTask,
        address: str | None = None,
        namespace: str | None = None,
        slots: int = DEFAULT_SLOTS,
        version: str | None = None,
        worker_id: str | None = None,
        grace: float | None = None,
        queues: Iterable[str] | str | None = None,
        *,
        api_key: str | None = None,
        tls: TLSConfig | None = None,
    ) -> None:
        tasks = select_queues(discover_tasks(tasks_or_module), queues)
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidArgumentError(f"Worker: slots must be an int of at least 1, got {slots!r}")
        grace = _grace(grace)
        self.tasks: dict[str, AnyTask] = {t.id: t for t in tasks}
        self.queues: list[str] | None = None if queues is None else sorted({t.queue_name for t in tasks})
        self.address = frontend_address(address)
        self.namespace = resolve_namespace(namespace)
        self.api_key = resolve_api_key(api_key)
        self.tls = resolve_tls(tls)
        self.slots = slots
        self.version = version or os.environ.get("CAIRN_WORKER_VERSION") or dev_version(self.tasks.values())
        self.worker_id = worker_id or default_worker_id()
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._draining: Draining | None = None
        self._stop_requested = False
        self._stub: Any = None
        self._run_stub: Any = None
        self._wait_stub: Any = None
        self._handed: asyncio.Queue[worker_service_pb2.AttemptAssignment | None] | None = None
        self._slot_free: asyncio.Event | None = None
        self._idle = 0
        self._registered = False
        self._register_lock: asyncio.Lock | None = None

    def stop(self) -> None:
        """Asks the worker to stop; safe from any thread or a signal handler. A second
        call skips the rest of the grace period."""
        loop = self._loop
        if loop is None:
            self._stop_requested = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._request_stop()
        else:
            loop.call_soon_threadsafe(self._request_stop)

    def _request_stop(self) -> None:
        assert self._stop is not None and self._force is not None
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    async def run(self) -> None:
        """Registers, then polls and runs attempts until stop()."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._register_lock = asyncio.Lock()
        self._registered = False
        self._draining = Draining()
        if self._stop_requested:
            self._stop.set()
        channel = await self._open_channel()
        if channel is None:
            return
        self._stub = BatchingStub(make_stub(worker_service_pb2_grpc.WorkerServiceStub, channel))
        self._run_stub = make_stub(run_service_pb2_grpc.RunServiceStub, channel)
        self._wait_stub = make_stub(wait_service_pb2_grpc.WaitServiceStub, channel)
        self._handed = asyncio.Queue()
        self._slot_free = asyncio.Event()
        self._idle = 0
        slots: list[asyncio.Task[None]] = []
        poller: asyncio.Task[None] | None = None
        stopped = asyncio.create_task(self._stop.wait())
        try:
            if not await self._ensure_registered():
                return
            slots = [
                asyncio.create_task(self._slot(i), name=f"cairn-worker-slot-{i}") for i in range(self.slots)
            ]
            poller = asyncio.create_task(self._poller(), name="cairn-worker-poller")
            await stopped
            log.info(
                "worker stopping: id=%s; polling ended; running attempts go on to their next checkpoint "
                "and are handed back, for %.1fs at most",
                self.worker_id,
                self.grace,
            )
            poller.cancel()
            self._draining.started = True  # no live step starts from now on
            for _ in slots:
                self._handed.put_nowait(None)
            pending = await self._wait_slots(slots)
            if pending:
                log.warning(
                    "worker stop: the grace period is over; handing back %d attempt(s) still running",
                    len(pending),
                )
                self._draining.now.set()
                await asyncio.wait(pending, timeout=RELEASE_SECONDS + 1.0)
        finally:
            stopped.cancel()
            for t in [*slots, *([poller] if poller else [])]:
                t.cancel()
            await asyncio.gather(*slots, *([poller] if poller else []), return_exceptions=True)
            await channel.close()
            self._stub = self._run_stub = self._wait_stub = None
            log.info("worker stopped: id=%s", self.worker_id)

    async def _open_channel(self) -> grpc.aio.Channel | None:
        """Opens the channel; a list of frontends whose host names cannot be resolved
        yet is retried with a capped backoff. None when the worker stopped first."""
        assert self._stop is not None
        delay = BACKOFF_FIRST
        failing = False
        while not self._stop.is_set():
            try:
                return open_channel(self.address, self.api_key, self.tls)
            except UnavailableError as exc:
                if not failing:
                    log.warning("cannot open a channel to %s (%s); retrying", self.address, exc)
                    failing = True
            await self._sleep_unless_stopped(delay)
            delay = min(BACKOFF_MAX, delay * 2)
        return None

    async def _wait_slots(self, slots: list[asyncio.Task[None]]) -> set[asyncio.Task[Any]]:
        """Waits for the slots to finish (or hand back) their attempts, up to the
        grace period or a second stop request; returns the slots still busy."""
        assert self._force is not None
        forced = asyncio.create_task(self._force.wait())
        pending: set[asyncio.Task[Any]] = set(slots)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        try:
            while pending and not forced.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                _, pending = await asyncio.wait(
                    {*pending, forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(forced)
        finally:
            forced.cancel()
        return pending

    def run_sync(self) -> None:
        """Runs the worker in a new event loop until stop(), SIGINT or SIGTERM."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            installed = []
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    try:
                        loop.add_signal_handler(sig, self.stop)
                        installed.append(sig)
                    except (NotImplementedError, RuntimeError):
                        pass
            try:
                await self.run()
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)

        asyncio.run(main())

    async def _ensure_registered(self) -> bool:
        """Registers unless registered, retrying UNAVAILABLE forever with a capped
        backoff, and a refusal by a limit of the API key after the delay it names,
        with one log line per failure streak; other errors are raised as their
        CairnError (to_cairn_error).
        False when the worker stopped first."""
        assert self._register_lock is not None and self._stop is not None
        async with self._register_lock:
            if self._registered:
                return True
            request = worker_service_pb2.RegisterWorkerRequest(
                namespace=self.namespace,
                worker_id=self.worker_id,
                version=self.version,
                tasks=[t._definition() for t in self.tasks.values()],
                slots=self.slots,
            )
            delay = BACKOFF_FIRST
            failing = False
            while True:
                try:
                    if not await self._register_unless_stopped(request):
                        return False
                    break
                except grpc.RpcError as exc:
                    code = code_of(exc)
                    limited = retry_delay_of(exc)
                    if code not in TRANSIENT_CODES and limited is None:  # e.g. a refused key
                        raise to_cairn_error(exc) from None
                    if not failing:
                        log.warning(
                            "cannot register with %s (%s: %s); retrying until it answers",
                            self.address,
                            code.name if code else "?",
                            details_of(exc),
                        )
                        failing = True
                await self._sleep_unless_stopped(limited if limited is not None else delay)
                if self._stop.is_set():
                    return False
                if limited is None:
                    delay = min(BACKOFF_MAX, delay * 2)
            self._registered = True
            log.info(
                "worker registered: id=%s address=%s namespace=%s version=%s slots=%d tasks=%s%s",
                self.worker_id,
                self.address,
                self.namespace,
                self.version,
                self.slots,
                ",".join(self.tasks),
                f" queues={','.join(self.queues)}" if self.queues is not None else "",
            )
            return True

    async def _register_unless_stopped(self, request: worker_service_pb2.RegisterWorkerRequest) -> bool:
        """One RegisterWorker call (the channel retries UNAVAILABLE within it), given
        up when the worker is asked to stop first: then False."""
        assert self._stop is not None
        call = asyncio.ensure_future(self._stub.RegisterWorker(request, timeout=REGISTER_TIMEOUT))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        if call.cancelled():
            return False
        call.result()
        return True

    async def _slot(self, index: int) -> None:
        """One slot: runs the attempts the poller hands it, one at a time, until
        it is handed None. Never raises: an SDK error is logged."""
        assert self._handed is not None and self._slot_free is not None
        while True:
            self._idle += 1
            self._slot_free.set()
            try:
                assignment = await self._handed.get()
            finally:
                self._idle -= 1
            if assignment is None:
                return
            try:
                await execute_attempt(
                    self._stub,
                    self.namespace,
                    self.tasks.get(assignment.task_id),
                    assignment,
                    run_stub=self._run_stub,
                    wait_stub=self._wait_stub,
                    draining=self._draining,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "attempt crashed in the SDK: run=%s attempt=%d task=%s",
                    assignment.run_id,
                    assignment.attempt,
                    assignment.task_id,
                )

    async def _poller(self) -> None:
        """Long-polls for as many attempts as there are free slots (one poll at a
        time, so a busy worker gets its work in batches) and hands them to the
        slots. Never raises: errors are logged and followed by a capped backoff; a
        poll refused by a limit of the API key waits the delay the refusal names
        (logged once per LIMITED_LOG_SECONDS: the limit is working as meant)."""
        assert self._stop is not None and self._handed is not None and self._slot_free is not None
        delay = BACKOFF_FIRST
        failing = False
        limited_logged = -LIMITED_LOG_SECONDS
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            want = self._idle - self._handed.qsize()
            if want <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            request = worker_service_pb2.PollAttemptRequest(
                namespace=self.namespace,
                worker_id=self.worker_id,
                task_ids=list(self.tasks),
                wait=Duration(seconds=int(DEFAULT_POLL_WAIT)),
                max_attempts=min(want, MAX_POLL_ATTEMPTS),
            )
            try:
                if not await self._ensure_registered() or self._stop.is_set():
                    return
                response = await self._stub.PollAttempt(request, timeout=DEFAULT_POLL_WAIT + 10)
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return
                raise
            except grpc.RpcError as exc:
                code = code_of(exc)
                if code == grpc.StatusCode.UNAVAILABLE or code in (
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    self._registered = False  # a restarted cluster may have forgotten us
                limited = retry_delay_of(exc)  # a limit of the API key: wait as long as it says
                if limited is not None:
                    if loop.time() - limited_logged >= LIMITED_LOG_SECONDS:
                        limited_logged = loop.time()
                        log.warning(
                            "polls are limited by the frontend (%s); each waits the delay it names "
                            "(said once a minute)",
                            details_of(exc),
                        )
                    await self._sleep_unless_stopped(limited)
                    continue
                if not failing:
                    level = logging.WARNING if code in TRANSIENT_CODES else logging.ERROR
                    log.log(
                        level,
                        "poll failed (%s: %s); backing off",
                        code.name if code else type(exc).__name__,
                        details_of(exc),
                    )
                    failing = True
                await self._sleep_unless_stopped(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            except Exception:
                if not failing:  # once per failure streak, like the gRPC errors above
                    log.exception("poll failed; backing off")
                    failing = True
                await self._sleep_unless_stopped(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if failing:
                log.info("poll recovered")
                failing = False
            delay = BACKOFF_FIRST
            for assignment in response.assignments:
                self._handed.put_nowait(assignment)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass
