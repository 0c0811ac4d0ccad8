"""The client side of API keys: where the SDK, the CLI and `cairn worker` find
their key (the argument or --api-key, else CAIRN_API_KEY, else `cairn dev`'s
admin.key in $CAIRN_DEV_DIR or ./.cairn), a malformed key refused before
anything is sent and named by where it came from, the key sent as
`authorization: Bearer <key>` on unary calls and streams alike (against a small
in-process server), and a refused key as UnauthenticatedError /
PermissionDeniedError in the SDK and one line without a traceback in the CLI.
No cluster."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import worker_sdk
from cairn import credentials, keys
from cairn.v1 import common_pb2, run_service_pb2_grpc
from cairn.v1 import run_service_pb2 as rpb
from cairn_cli import frontend as cli_frontend
from cairn_cli import main as cli
from worker_sdk import (
    AsyncClient,
    CairnError,
    Client,
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
    Worker,
    task,
)

KEY_ARG = keys.new_key()[1]
KEY_ENV = keys.new_key()[1]
KEY_FILE = keys.new_key()[1]


@task(id="key_test_task")
async def key_test_task(payload: Any) -> Any:
    return payload


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key in the environment, and a current directory without .cairn."""
    monkeypatch.delenv("CAIRN_API_KEY", raising=False)
    monkeypatch.delenv("CAIRN_DEV_DIR", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_key(folder: Path, key: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "admin.key"
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


# ---- where the key comes from --------------------------------------------------------------


def test_no_key_anywhere_is_none() -> None:
    assert credentials.resolve_api_key(None) is None
    assert AsyncClient().api_key is None


def test_the_argument_comes_first(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    monkeypatch.setenv("CAIRN_API_KEY", KEY_ENV)
    write_key(clean / ".cairn", KEY_FILE)
    found = credentials.resolve_api_key(KEY_ARG, "--api-key")
    assert found == credentials.ApiKey(KEY_ARG, "--api-key")
    assert AsyncClient(api_key=KEY_ARG).api_key == credentials.ApiKey(KEY_ARG, "api_key=")


def test_then_the_environment(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    monkeypatch.setenv("CAIRN_API_KEY", KEY_ENV)
    write_key(clean / ".cairn", KEY_FILE)
    assert credentials.resolve_api_key(None) == credentials.ApiKey(KEY_ENV, "CAIRN_API_KEY")
    assert credentials.resolve_api_key("") == credentials.ApiKey(KEY_ENV, "CAIRN_API_KEY")


def test_then_cairn_dev_s_admin_key_in_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, clean: Path
) -> None:
    path = write_key(clean / ".cairn", KEY_FILE)
    monkeypatch.setenv("CAIRN_API_KEY", "")  # empty counts as unset
    found = credentials.resolve_api_key(None)
    assert found is not None and found.key == KEY_FILE  # the line's newline dropped
    assert Path(found.source).resolve() == path.resolve()


def test_cairn_dev_dir_names_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, clean: Path, tmp_path: Path
) -> None:
    write_key(clean / ".cairn", KEY_FILE)
    elsewhere = write_key(tmp_path / "dev-data", KEY_ARG)
    monkeypatch.setenv("CAIRN_DEV_DIR", str(tmp_path / "dev-data"))
    assert credentials.resolve_api_key(None) == credentials.ApiKey(KEY_ARG, str(elsewhere))
    monkeypatch.setenv("CAIRN_DEV_DIR", str(tmp_path / "empty"))
    assert credentials.resolve_api_key(None) is None  # not ./.cairn then


def test_the_sdk_and_the_cli_resolve_alike(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    write_key(clean / ".cairn", KEY_FILE)
    assert AsyncClient().api_key.key == KEY_FILE  # type: ignore[union-attr]
    with Client() as client:
        assert client.api_key.key == KEY_FILE  # type: ignore[union-attr]
    assert Worker([key_test_task]).api_key.key == KEY_FILE  # type: ignore[union-attr]
    assert cli_frontend.Frontend().api_key.key == KEY_FILE  # type: ignore[union-attr]
    monkeypatch.setenv("CAIRN_API_KEY", KEY_ENV)
    assert Worker([key_test_task], api_key=KEY_ARG).api_key.key == KEY_ARG  # type: ignore[union-attr]
    assert cli_frontend.Frontend(api_key=KEY_ARG).api_key.key == KEY_ARG  # type: ignore[union-attr]
    assert cli_frontend.Frontend().api_key.key == KEY_ENV  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad", ["nope", "cairn_0123456789abcdef_short", KEY_ARG + "x", KEY_ARG.replace("cairn_", "cairn-")]
)
def test_a_malformed_key_is_refused_naming_its_source_not_quoting_it(
    monkeypatch: pytest.MonkeyPatch, clean: Path, bad: str
) -> None:
    with pytest.raises(ValueError, match="the API key from --api-key is malformed") as info:
        credentials.resolve_api_key(bad, "--api-key")
    assert bad not in str(info.value)
    with pytest.raises(InvalidArgumentError, match="the API key from api_key= is malformed"):
        AsyncClient(api_key=bad)
    with pytest.raises(InvalidArgumentError, match="api_key="):
        Worker([key_test_task], api_key=bad)
    monkeypatch.setenv("CAIRN_API_KEY", bad)
    with pytest.raises(InvalidArgumentError, match="the API key from CAIRN_API_KEY is malformed"):
        AsyncClient()
    monkeypatch.delenv("CAIRN_API_KEY")
    path = write_key(clean / ".cairn", bad)
    with pytest.raises(ValueError, match=f"the API key from {path.relative_to(clean)} is malformed"):
        cli_frontend.Frontend()


def test_an_unreadable_key_file_is_an_error(clean: Path) -> None:
    (clean / ".cairn" / "admin.key").mkdir(parents=True)
    with pytest.raises(ValueError, match="cannot read the API key file"):
        credentials.resolve_api_key(None)


def test_the_key_is_not_in_its_repr() -> None:
    found = credentials.checked(KEY_ARG, "--api-key")
    assert KEY_ARG not in repr(found)
    assert found.metadata == (("authorization", f"Bearer {KEY_ARG}"),)


# ---- the key on the wire ------------------------------------------------------------------


class Recorder(run_service_pb2_grpc.RunServiceServicer):
    """Records the authorization metadata of each call; refuses with `code`
    when it is set."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.code: grpc.StatusCode | None = None

    def _record(self, method: str, context: Any) -> None:
        auth = dict(context.invocation_metadata()).get("authorization")
        with self.lock:
            self.seen.append((method, auth))
        if self.code is not None:
            context.abort(self.code, f"{self.code.name.lower()} says the server")

    def GetRun(self, request: Any, context: Any) -> Any:
        self._record("GetRun", context)
        return rpb.GetRunResponse(run=common_pb2.Run(id=request.run_id, task_id="t"))

    def WatchRun(self, request: Any, context: Any) -> Iterator[Any]:
        self._record("WatchRun", context)
        event = common_pb2.RunEvent(id=1, type="completed")
        run = common_pb2.Run(id=request.run_id, task_id="t", status=common_pb2.RUN_STATUS_COMPLETED)
        yield rpb.WatchRunResponse(updates=[rpb.RunUpdate(event=event, run=run, done=True)])


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    fe = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(fe, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fe, f"127.0.0.1:{port}"
    server.stop(0)


def test_the_sdk_sends_the_key_on_calls_and_streams(recorder: tuple[Recorder, str]) -> None:
    fe, address = recorder

    async def calls() -> None:
        async with AsyncClient(address, api_key=KEY_ARG) as client:
            await client.get("r1")
            assert [u async for u in client.watch("r1")][-1].done
        async with AsyncClient(address) as client:
            await client.get("r2")

    asyncio.run(calls())
    with Client(address, api_key=KEY_ENV) as sync_client:
        sync_client.get("r3")
    assert fe.seen == [
        ("GetRun", f"Bearer {KEY_ARG}"),
        ("WatchRun", f"Bearer {KEY_ARG}"),
        ("GetRun", None),
        ("GetRun", f"Bearer {KEY_ENV}"),
    ]


def test_the_cli_sends_the_key_on_calls_and_streams(recorder: tuple[Recorder, str]) -> None:
    fe, address = recorder
    with cli_frontend.Frontend(address, api_key=KEY_ARG) as client:
        client.get_run("r1")
        assert list(client.watch_run("r1"))[-1]["done"]
    with cli_frontend.Frontend(address) as client:
        client.get_run("r2")
    assert fe.seen == [("GetRun", f"Bearer {KEY_ARG}"), ("WatchRun", f"Bearer {KEY_ARG}"), ("GetRun", None)]


@pytest.mark.parametrize(
    "code, error",
    [
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
    ],
)
def test_a_refused_key_is_its_own_sdk_error(
    recorder: tuple[Recorder, str], code: grpc.StatusCode, error: type[CairnError]
) -> None:
    fe, address = recorder
    fe.code = code
    with Client(address, api_key=KEY_ARG) as client:
        with pytest.raises(error, match="says the server") as info:
            client.get("r1")
    assert info.value.code == code and isinstance(info.value, CairnError)
    assert getattr(worker_sdk, error.__name__) is error and error.__name__ in worker_sdk.__all__


def test_the_cli_says_a_refused_key_in_one_line(
    recorder: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fe, address = recorder
    fe.code = grpc.StatusCode.UNAUTHENTICATED
    monkeypatch.setenv("CAIRN_API_KEY", KEY_ENV)
    with pytest.raises(SystemExit) as info:
        cli.main(["runs", "get", "r1", "--address", address])
    message = str(info.value.code)
    assert message == (
        "error: the API key was refused (UNAUTHENTICATED): unauthenticated says the server; "
        "the key came from CAIRN_API_KEY; pass --api-key or set CAIRN_API_KEY to use another"
    )
    assert KEY_ENV not in message
    fe.code = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(SystemExit) as info:
        cli.main(["runs", "watch", "r1", "--address", address, "--api-key", KEY_ARG])
    assert str(info.value.code).startswith(
        "error: the API key may not do this (PERMISSION_DENIED): permission_denied says the server; "
        "the key came from --api-key"
    )
    monkeypatch.delenv("CAIRN_API_KEY")
    fe.code = grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(SystemExit) as info:
        cli.main(["runs", "get", "r1", "--address", address])
    assert "the frontend wants an API key (UNAUTHENTICATED)" in str(info.value.code)
    assert "no key was sent: pass --api-key, set CAIRN_API_KEY" in str(info.value.code)
    assert "Traceback" not in capsys.readouterr().err


def test_the_cli_refuses_a_malformed_key_before_sending(
    recorder: tuple[Recorder, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fe, address = recorder
    with pytest.raises(SystemExit) as info:
        cli.main(["runs", "get", "r1", "--address", address, "--api-key", "oops"])
    assert info.value.code == 2
    assert "the API key from --api-key is malformed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["worker", "tests.unit.test_api_key_client", "--address", address, "--api-key", "oops"])
    assert "the API key from --api-key is malformed" in str(info.value.code)
    assert fe.seen == []


def test_cairn_worker_says_a_refused_key_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cairn.v1 import worker_service_pb2_grpc

    class Refusing(worker_service_pb2_grpc.WorkerServiceServicer):
        def __init__(self) -> None:
            self.auth: list[str | None] = []

        def RegisterWorker(self, request: Any, context: Any) -> Any:
            self.auth.append(dict(context.invocation_metadata()).get("authorization"))
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown key")

    fe = Refusing()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(fe, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("CAIRN_API_KEY", KEY_ENV)
    try:
        with pytest.raises(SystemExit) as info:
            cli.main(["worker", "tests.unit.test_api_key_client", "--address", f"127.0.0.1:{port}"])
    finally:
        server.stop(0)
    assert str(info.value.code) == (
        "error: the API key was refused (UNAUTHENTICATED): unknown key; "
        "the key came from CAIRN_API_KEY; pass --api-key or set CAIRN_API_KEY to use another"
    )
    assert fe.auth == [f"Bearer {KEY_ENV}"]
