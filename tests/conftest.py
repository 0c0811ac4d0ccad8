"""Fixtures of the cluster tests; the harness itself is tests/harness/ (see its
package docstring for the whole API).

Session: ``postgres_server`` and ``nats`` (one of each per session, embedded
unless CAIRN_DATABASE_URL / CAIRN_NATS_URL name existing servers).
Per test: ``cluster``, ``cluster_factory``, ``private_nats``, ``private_postgres``.
Per module: ``module_cluster_factory`` (clusters shared by a module's tests).

    def test_x(cluster):                        # defaults: lease 3 s, sweep 1 s
        cluster.start_worker("tests.apps.basic")

    @pytest.mark.cluster_options(lease_seconds=10)
    def test_y(cluster): ...

    def test_nats_outage(cluster_factory, private_nats):
        c = cluster_factory(nats=private_nats)
        private_nats.kill(); ...; private_nats.start()
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:  # so every test module can `from harness import ...`
    sys.path.insert(0, _TESTS_DIR)

from harness import (  # noqa: E402
    DEFAULT_LEASE_SECONDS,
    DEFAULT_SWEEP_SECONDS,
    READY_TIMEOUT,
    Cluster,
    ExternalNats,
    ExternalPostgres,
    auth,
    make_cluster,
)

from cairn_cli.embedded import EmbeddedNats, EmbeddedPostgres  # noqa: E402
from worker_sdk import Client  # noqa: E402

# The SDK clients a test makes in this process carry the session's admin key,
# as the harness gives it to every CLI and worker process (harness/auth.py).
os.environ["CAIRN_API_KEY"] = auth.ADMIN_KEY
CLUSTERS_KEY = pytest.StashKey[list]()
# module node id -> the clusters module_cluster_factory made for that module
MODULE_CLUSTERS_KEY = pytest.StashKey[dict]()
KEEP_DATA = bool(os.environ.get("CAIRN_TEST_KEEP_DATA"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster_options(**options): options for the `cluster` fixture, as for "
        "cluster_factory (lease_seconds, sweep_seconds, env, timeout)",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the item (item.rep_setup / rep_call /
    rep_teardown), and when the test fails attaches the last lines of every
    process log of its clusters to the report, where the failure is shown (a
    print at fixture teardown would land in the teardown section, which pytest
    does not show for a passing teardown)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    module = item.getparent(pytest.Module)
    shared = item.config.stash.get(MODULE_CLUSTERS_KEY, {}).get(module.nodeid if module else "", [])
    clusters: list[Cluster] = [*item.stash.get(CLUSTERS_KEY, []), *shared]
    if report.failed and report.when in ("setup", "call"):
        for i, c in enumerate(clusters, 1):
            tails = c.log_tails()
            if tails:
                title = "cluster logs" if len(clusters) == 1 else f"cluster {i} logs"
                report.sections.append((f"{title} (last lines of each process)", tails))
    return report


def _mkdtemp_outside_pytest(prefix: str) -> Path:
    # pytest keeps its tmp tree at 0700 (and resets it to 0700 when any other
    # session starts), which the postgres OS user could not traverse; /tmp can be.
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's PostgreSQL: EmbeddedPostgres (superuser `postgres`, trust on
    loopback), or ExternalPostgres(CAIRN_DATABASE_URL). Tests get their own
    database on it through the cluster fixtures."""
    url = os.environ.get("CAIRN_DATABASE_URL")
    if url:
        yield ExternalPostgres(url)
        return
    root = _mkdtemp_outside_pytest("cairn-test-pg-")
    server = EmbeddedPostgres(root / "data", log_path=tmp_path_factory.mktemp("postgres") / "postgres.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not KEEP_DATA:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's NATS: EmbeddedNats (kill() / start() restart it on the same
    port, which disturbs every other test; prefer private_nats), or
    ExternalNats(CAIRN_NATS_URL), whose kill() skips the test."""
    url = os.environ.get("CAIRN_NATS_URL")
    if url:
        yield ExternalNats(url)
        return
    d = tmp_path_factory.mktemp("nats")
    server = EmbeddedNats(d / "store", log_path=d / "nats.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of this test only (started), to kill and restart at will:
    ``cluster_factory(nats=private_nats)``."""
    d = tmp_path / "private-nats"
    server = EmbeddedNats(d / "store", log_path=d / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test only (started; costs an initdb):
    ``cluster_factory(postgres=private_postgres)``."""
    root = _mkdtemp_outside_pytest("cairn-test-pg-private-")
    server = EmbeddedPostgres(root / "data", log_path=tmp_path / "private-postgres.log")
    try:
        server.start()
        yield server
    finally:
        server.kill()
        if not KEEP_DATA:
            shutil.rmtree(root, ignore_errors=True)


def _ensure_running(server: Any) -> None:
    # An earlier test may have killed a session server and not restarted it.
    if not isinstance(server, str) and not server.running:
        server.start()


def _cluster_maker(
    made: list[Cluster], log_root: Path, name: str, postgres_server: Any, session_nats: Any
) -> Any:
    """The factory of cluster_factory and module_cluster_factory: makes clusters
    named after `name`, logs under log_root, each appended to `made`."""

    def factory(
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
        nats: Any = None,
        postgres: Any = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        timeout: float = READY_TIMEOUT,
        frontend_args: tuple[str, ...] = (),
        frontend_credentials: Any = None,
    ) -> Cluster:
        pg = postgres if postgres is not None else postgres_server
        bus = nats if nats is not None else session_nats
        if pg is postgres_server:
            _ensure_running(pg)
        if bus is session_nats:
            _ensure_running(bus)
        extra_logs = []
        for server in (pg, bus):
            if (
                server is not postgres_server
                and server is not session_nats
                and isinstance(getattr(server, "log_path", None), Path)
            ):
                extra_logs.append(server.log_path)
        log_dir = log_root / ("logs" if not made else f"logs-{len(made) + 1}")
        c = make_cluster(
            log_dir=log_dir,
            postgres=pg,
            nats=bus,
            test_name=name,
            lease_seconds=lease_seconds,
            sweep_seconds=sweep_seconds,
            env=env,
            start=False,
            extra_logs=extra_logs,
            frontend_args=frontend_args,
            frontend_credentials=frontend_credentials,
        )
        made.append(c)  # registered before launch, so a failed start still shows logs
        if start:
            c.launch(timeout)
        return c

    return factory


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: Any, nats: Any
) -> Iterator[Any]:
    """``cluster_factory(**options) -> Cluster``: each call makes a new database
    and NATS subject prefix and starts history, matching and frontend.

    Options: lease_seconds (3), sweep_seconds (1), nats (an EmbeddedNats such as
    private_nats, or a URL; default the session NATS), postgres (private_postgres,
    or a server URL; default the session server), env (extra variables for every
    child process), start (True; else call .launch()), timeout (30 s to SERVING),
    frontend_args (extra flags of the frontends, e.g. --tls-cert) and
    frontend_credentials (the grpc.ChannelCredentials the harness reaches them with).
    Every cluster made is killed at teardown; its logs are in tmp_path/logs[-N]."""
    made: list[Cluster] = []
    request.node.stash[CLUSTERS_KEY] = made
    try:
        yield _cluster_maker(made, tmp_path, request.node.name, postgres_server, nats)
    finally:
        for c in made:
            c.close()


@pytest.fixture(scope="module")
def module_cluster_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_server: Any, nats: Any
) -> Iterator[Any]:
    """cluster_factory for a module-scoped fixture: the clusters it makes last
    until the module's last test is done, and a failing test of the module
    shows their log tails as its own."""
    made: list[Cluster] = []
    request.config.stash.setdefault(MODULE_CLUSTERS_KEY, {})[request.node.nodeid] = made
    log_root = tmp_path_factory.mktemp(Path(request.node.name).stem)
    try:
        yield _cluster_maker(made, log_root, Path(request.node.name).stem, postgres_server, nats)
    finally:
        request.config.stash[MODULE_CLUSTERS_KEY].pop(request.node.nodeid, None)
        for c in made:
            c.close()


@pytest.fixture
def cluster(request: pytest.FixtureRequest, cluster_factory: Any) -> Cluster:
    """A started cluster with default options, overridden by
    ``@pytest.mark.cluster_options(...)`` or an indirect parameter dict."""
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("cluster_options")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    return cluster_factory(**options)


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(address=cluster.address) as c:
        yield c
