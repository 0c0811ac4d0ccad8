"""Running the peers: each peer script (bench/peers/) as a subprocess of the Python
in bench/.venv-peers, made on first use, its result read from its stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import log, parse_result
from bench.processes import Proc, die_with_parent
from bench.settings import (
    BATCH_SIZE,
    BENCH,
    LIMITED_SLEEP,
    PEERS_REQUIREMENTS,
    PEERS_VENV,
    REPO,
    TRIGGER_INFLIGHT,
)


def peers_python() -> Path:
    """bench/.venv-peers/bin/python, made and filled from requirements.txt on first
    use (again when requirements.txt changes)."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not py.exists():
        base = shutil.which("python3.11") or getattr(sys, "_base_executable", sys.executable)
        log(f"creating {PEERS_VENV} with {base}")
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    if not stamp.exists() or PEERS_REQUIREMENTS.stat().st_mtime > stamp.stat().st_mtime:
        log(f"installing the peers into {PEERS_VENV} (pip install -r {PEERS_REQUIREMENTS})")
        out = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pip install of the peers failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        stamp.touch()
    return py


def run_peer(name: str, script: Path, config: dict[str, Any], logs: Path, timeout: float) -> dict[str, Any]:
    py = peers_python()
    log(f"{name}: starting {script.name}")
    with open(logs / f"{name}.log", "ab") as err:
        popen = subprocess.Popen(
            [str(py), str(script), "--config", json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(REPO),
            start_new_session=True,
            preexec_fn=die_with_parent,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBOS"))},
                "PYTHONUNBUFFERED": "1",
            },
        )
        holder = _PeerProc(popen, name)
        try:
            out, _ = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            holder.stop()
            return {"error": f"{name} did not finish within {timeout:g} s; see {logs / (name + '.log')}"}
        finally:
            holder.stop()
    result = parse_result(out.decode(errors="replace"))
    if result is None:
        tail = "\n".join((logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:])
        return {"error": f"{name} exited {popen.returncode} without a result; last lines of its log:\n{tail}"}
    return result


class _PeerProc(Proc):
    """Registers an already started peer process so cleanup() stops it too."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str) -> None:  # noqa: D107
        self.name = name
        self.popen = popen
        self.log_path = Path(os.devnull)
        Proc.registry.append(self)


def run_peers(
    workloads: list[str],
    sizes: dict[str, int],
    quick: bool,
    postgres_pid: int | None,
    urls: dict[str, str],
    logs: Path,
    results: dict[str, Any],
) -> None:
    """DBOS (a to g) then pgqueuer (a and c), each result (or error) into results."""
    common = {
        "sizes": sizes,
        "workloads": workloads,
        "postgres_pid": postgres_pid,
        "admin_url": urls["postgres"],
        "limited_sleep": LIMITED_SLEEP,
        "trigger_inflight": TRIGGER_INFLIGHT,
        "batch_size": BATCH_SIZE,
    }
    timeout = 600 if quick else 3600
    try:
        results["dbos"] = run_peer(
            "dbos",
            BENCH / "peers" / "dbos_bench.py",
            {**common, "database_url": urls["dbos_bench"]},
            logs,
            timeout,
        )
    except Exception as exc:
        results["dbos"] = {"error": f"{type(exc).__name__}: {exc}"}
    pgq_workloads = [w for w in workloads if w in ("a", "c")]
    if pgq_workloads:
        try:
            results["pgqueuer"] = run_peer(
                "pgqueuer",
                BENCH / "peers" / "pgqueuer_bench.py",
                {**common, "workloads": pgq_workloads, "database_url": urls["pgq_bench"]},
                logs,
                timeout,
            )
        except Exception as exc:
            results["pgqueuer"] = {"error": f"{type(exc).__name__}: {exc}"}
