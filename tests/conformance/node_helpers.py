"""The Node.js side of the conformance suite, driven from pytest: the worker
(tests/conformance/node/worker.js) as a child process of a cluster, whose JSON
lines tell what it did, and the client (client.js) called once per command.
Both are written from proto/cairn/v1 alone; nothing Python runs on their side.

Their packages (@grpc/grpc-js, @grpc/proto-loader, protobufjs) are installed by
scripts/venv.sh (`npm ci` into tests/conformance/node/node_modules)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from harness import Cluster, WorkerProcess, base_env, wait_for, worker_alive

NODE_DIR = Path(__file__).resolve().parent / "node"
WORKER_JS = NODE_DIR / "worker.js"
CLIENT_JS = NODE_DIR / "client.js"
NODE = shutil.which("node") or "node"
CLIENT_TIMEOUT = 60


def check_node_installed() -> None:
    """Fails with what to do when node or the suite's packages are missing."""
    assert shutil.which("node"), "node is not on PATH: the conformance suite needs Node.js 18 or newer"
    missing = [
        p
        for p in ("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs")
        if not (NODE_DIR / "node_modules" / p / "package.json").is_file()
    ]
    assert not missing, (
        f"{', '.join(missing)} not installed in {NODE_DIR / 'node_modules'}: "
        "run scripts/venv.sh (it runs `npm ci` there)"
    )


class NodeRpcError(AssertionError):
    """A call of the Node client that the server refused: .error has code,
    code_name, details and metadata (the trailing metadata)."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        super().__init__(f"node client {command}: {error}")
        self.error = error


def node_client(cluster: Cluster, command: str, **args: Any) -> dict[str, Any]:
    """Runs `node client.js COMMAND JSON(args)` against the cluster's frontend and
    returns its JSON answer (payloads as {encoding, value}). Raises NodeRpcError
    when the server refused the call."""
    env = {**base_env(), "CAIRN_ADDRESS": cluster.address, "CAIRN_API_KEY": cluster.env["CAIRN_API_KEY"]}
    proc = subprocess.run(
        [NODE, str(CLIENT_JS), command, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=NODE_DIR,
        timeout=CLIENT_TIMEOUT,
    )
    if proc.returncode == 3:
        raise NodeRpcError(command, json.loads(proc.stdout)["error"])
    assert proc.returncode == 0, f"node client {command} exited {proc.returncode}: {proc.stderr}{proc.stdout}"
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def trigger(cluster: Cluster, task_id: str, payload: Any = None, **args: Any) -> str:
    """Triggers a run through the Node client; returns its id."""
    answer = node_client(cluster, "trigger", task_id=task_id, payload=payload, **args)
    run_id: str = answer["run"]["id"]
    return run_id


def wait_run(cluster: Cluster, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """WaitRun through the Node client: the run once terminal (fails otherwise)."""
    answer = node_client(cluster, "wait", run_id=run_id, timeout_seconds=timeout)
    assert answer["done"] is True, f"run {run_id} not done within {timeout} s: {answer['run']['status']}"
    run: dict[str, Any] = answer["run"]
    return run


def get_run(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """GetRun through the Node client."""
    run: dict[str, Any] = node_client(cluster, "get", run_id=run_id)["run"]
    return run


def await_status(cluster: Cluster, run_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    """GetRun (in the Node client) until the run is in one of statuses; fails at the deadline."""
    answer = node_client(cluster, "await", run_id=run_id, statuses=list(statuses), timeout_seconds=timeout)
    assert not answer.get("timed_out"), f"run {run_id} not {statuses} within {timeout} s: {answer['run']}"
    run: dict[str, Any] = answer["run"]
    return run


class NodeWorker:
    """worker.js as a process of the cluster (killed at teardown, its log in the
    cluster's failure report), serving `tasks`, with `env` added to its
    environment (e.g. CONFORMANCE_HEARTBEAT=off)."""

    def __init__(
        self,
        cluster: Cluster,
        gate_dir: Path,
        tasks: tuple[str, ...],
        name: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.gate_dir = gate_dir
        env = {
            **base_env(),
            "CAIRN_ADDRESS": cluster.address,
            "CAIRN_API_KEY": cluster.env["CAIRN_API_KEY"],
            "CONFORMANCE_TASKS": ",".join(tasks),
            "CONFORMANCE_WORKER_ID": f"{name}-{uuid.uuid4().hex[:8]}",
            "CONFORMANCE_GATE_DIR": str(gate_dir),
            **(env or {}),
        }
        log = cluster.log_dir / f"{name}.log"
        self.process = WorkerProcess(name, "node:worker.js", [NODE, str(WORKER_JS)], env, log, NODE_DIR)
        cluster.workers.append(self.process)

    def start(self, timeout: float = 20) -> None:
        """Starts the process and waits until it registered its tasks."""
        before = len(self.events("registered"))
        self.process.start()
        wait_for(
            lambda: worker_alive(self.process) and len(self.events("registered")) > before,
            timeout,
            message=f"{self.process.name} did not register",
        )

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-attempt, as in a crash."""
        self.process.kill()

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Every JSON line the worker (all its runs) printed, optionally only
        those of one event whose fields equal `match`."""
        found = []
        for line in self.process.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if event is not None and item.get("event") != event:
                continue
            if all(item.get(k) == v for k, v in match.items()):
                found.append(item)
        return found

    def wait_event(self, event: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        """The first line of `event` matching `match`, once the worker printed it."""

        def seen() -> dict[str, Any] | None:
            items = self.events(event, **match)
            if items:
                return items[0]
            if not self.process.running:
                raise AssertionError(f"{self.process.name} exited:\n{self.process.log_tail(40)}")
            return None

        result: dict[str, Any] = wait_for(
            seen, timeout, message=f"{self.process.name} never printed {event} {match}"
        )
        return result

    def open_gate(self, run_id: str, name: str) -> None:
        """Lets a task waiting in ctx.gate(name) go on."""
        (self.gate_dir / f"{run_id}.{name}").touch()


def steps_of(run: dict[str, Any]) -> list[tuple[int, str, str, int]]:
    """(position, name, status, attempt) of each step of a run."""
    return [(s["position"], s["name"], s["status"], s["attempt"]) for s in run["steps"]]
