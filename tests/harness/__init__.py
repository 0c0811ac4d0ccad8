"""The test harness: real service processes against real PostgreSQL and NATS,
and the helpers the test files share. One job per module:

- ``processes``: child processes (``ManagedProcess``, ``ServiceProcess``,
  ``WorkerProcess``): start, stop, kill, pause, resume, logs; ``worker_alive``.
- ``health``: ``wait_serving`` (every service answers its health check).
- ``cluster``: ``Cluster`` (history + matching + frontend on a fresh database
  and NATS subject prefix, plus workers), ``make_cluster``, ``wait_registered``.
- ``database``: per-test databases (``new_database_name``, template clones for
  the service tier), ``table_counts`` (to show a refused request wrote nothing).
- ``external``: ``ExternalPostgres`` / ``ExternalNats`` (servers named by
  CAIRN_DATABASE_URL / CAIRN_NATS_URL, which a test may not stop).
- ``grpcurl``: grpcurl as a client (``grpcurl``, ``grpcurl_call``,
  ``grpcurl_error``, ``json_field``, ``b64_json``).
- ``cli``: the `cairn` command line as a child process (``cli_env``,
  ``cairn_cli(cluster, *args)``).
- ``stubs``: ``run_stub``, ``worker_stub``, ``schedule_stub`` on a cluster's
  channel.
- ``messages``: ``json_payload``, ``seconds`` (a Duration), ``assert_clean`` (no
  stack trace in an error), ``expect_rpc_error`` (an RPC fails with a status and
  a message naming given words).
- ``waiting``: ``wait_for`` (a condition with a deadline, never a bare sleep),
  ``wait_for_async``, and ``hold`` (a condition that must stay true for a while).

Fixtures (tests/conftest.py): ``postgres_server`` and ``nats`` (one per
session, embedded unless CAIRN_DATABASE_URL / CAIRN_NATS_URL name existing
servers); per test ``cluster_factory(**options) -> Cluster`` (lease_seconds=3,
sweep_seconds=1, nats, postgres, env, start, timeout), ``cluster`` (options from
``@pytest.mark.cluster_options(...)`` or an indirect parameter),
``private_nats``, ``private_postgres`` (a server of the test's own, to kill).
At teardown every process a cluster started is killed; when a test fails, the
last lines of each process log are attached to its report. The service tier
(tests/service/) runs history and matching in process instead: see its conftest.
"""

from cairn_cli.embedded import database_url_for

from . import auth  # noqa: F401 (harness.auth)
from .cli import cairn_cli, cli_env
from .cluster import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_SWEEP_SECONDS,
    SERVICES,
    WORKER_VERSION_FLAG,
    Cluster,
    make_cluster,
    wait_registered,
)
from .database import (
    ALL_TABLES,
    clone_database,
    create_template,
    drop_database,
    new_database_name,
    run_coro,
    table_counts,
    table_counts_query,
)
from .external import ExternalNats, ExternalPostgres
from .grpcurl import GRPCURL, b64_json, grpcurl, grpcurl_call, grpcurl_error, json_field
from .health import READY_TIMEOUT, health_check, wait_serving
from .messages import assert_clean, expect_rpc_error, json_payload, seconds
from .processes import (
    LOG_TAIL_LINES,
    PYTHON,
    REPO_ROOT,
    TESTS_DIR,
    ManagedProcess,
    ServiceProcess,
    WorkerProcess,
    base_env,
    worker_alive,
)
from .stubs import run_stub, schedule_stub, worker_stub
from .waiting import hold, wait_for, wait_for_async

__all__ = [
    "ALL_TABLES",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_SWEEP_SECONDS",
    "GRPCURL",
    "LOG_TAIL_LINES",
    "PYTHON",
    "READY_TIMEOUT",
    "REPO_ROOT",
    "SERVICES",
    "TESTS_DIR",
    "WORKER_VERSION_FLAG",
    "Cluster",
    "ExternalNats",
    "ExternalPostgres",
    "ManagedProcess",
    "ServiceProcess",
    "WorkerProcess",
    "assert_clean",
    "b64_json",
    "base_env",
    "cairn_cli",
    "cli_env",
    "clone_database",
    "create_template",
    "database_url_for",
    "drop_database",
    "expect_rpc_error",
    "grpcurl",
    "grpcurl_call",
    "grpcurl_error",
    "health_check",
    "hold",
    "json_field",
    "json_payload",
    "make_cluster",
    "new_database_name",
    "run_coro",
    "run_stub",
    "schedule_stub",
    "seconds",
    "table_counts",
    "table_counts_query",
    "wait_for",
    "wait_for_async",
    "wait_registered",
    "wait_serving",
    "worker_alive",
    "worker_stub",
]
