"""A frontend says SERVING only once its backends do: started while history
hangs (stopped with SIGSTOP, so its port accepts connections and never answers,
and each of the frontend's checks of it waits out its timeout), its first answer
to a health check is NOT_SERVING, and it says SERVING once history answers again.
Before, gRPC's health service said SERVING for the whole server until the
frontend's first round of checks ended, and a load balancer, a readiness probe or
the harness could send calls to it meanwhile."""

from __future__ import annotations

import os
import signal
import time

from harness import Cluster, health_check, wait_serving


def test_a_frontend_started_while_history_hangs_answers_not_serving_first(cluster: Cluster) -> None:
    history, frontend = cluster.services["history"], cluster.services["frontend"]
    assert history.pid is not None
    cluster.kill("frontend")
    os.kill(history.pid, signal.SIGSTOP)
    try:
        cluster._start_service(frontend)
        deadline = time.monotonic() + 30
        while True:  # until the frontend answers at all
            ok, status = health_check(frontend.address, timeout=1.0)
            if status in ("SERVING", "NOT_SERVING"):
                break
            assert time.monotonic() < deadline, f"the frontend never answered its health check: {status}"
        assert status == "NOT_SERVING"
    finally:
        os.kill(history.pid, signal.SIGCONT)
    wait_serving([frontend])
