"""The frontend's own health follows its backends': NOT_SERVING while history
or matching cannot be reached or does not say SERVING, SERVING again once both
do. Checked every CHECK_SECONDS (RECHECK_SECONDS while one is down, so the
frontend serves again soon after it is back), so `cairn dev`, a load balancer
or a Kubernetes readiness probe sees a frontend that could not serve a call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.frontend.backend import HISTORY, MATCHING, Backend

log = logging.getLogger("cairn.frontend")
CHECK_SECONDS = 1.0
RECHECK_SECONDS = 0.2
# Checks of one backend per round before it counts as down: a list of replicas
# answers from one of them at a time, and one may be stopping.
TRIES = 3
# Rounds in a row a serving frontend must find a backend down before it says
# NOT_SERVING: one slow round on a busy host is not an outage.
DOWN_ROUNDS = 2


async def follow(
    backend: Backend,
    set_serving: Callable[[bool], Awaitable[None]],
    interval: float = CHECK_SECONDS,
    recheck: float = RECHECK_SECONDS,
) -> None:
    """Sets the frontend's health from its backends', for as long as it runs
    (grpc_server.serve runs it until the frontend stops)."""
    serving: bool | None = None
    rounds_down = 0
    while True:
        up = await asyncio.gather(_up(backend, HISTORY), _up(backend, MATCHING))
        down = [name for name, ok in zip((HISTORY, MATCHING), up, strict=True) if not ok]
        rounds_down = rounds_down + 1 if down else 0
        if serving and 0 < rounds_down < DOWN_ROUNDS:
            await asyncio.sleep(recheck)
            continue
        if (not down) != serving:
            names = " and ".join(backend.name(name) for name in down)
            if down and serving is None:  # starting: the services may be starting too
                log.info("waiting for %s to serve (NOT_SERVING until then)", names)
            elif down:
                log.warning("%s not serving: this frontend reports NOT_SERVING until it is", names)
            elif serving is not None:
                log.info("history and matching serve again: this frontend reports SERVING")
            serving = not down
            await set_serving(serving)
        await asyncio.sleep(interval if serving else recheck)


async def _up(backend: Backend, name: str) -> bool:
    for _ in range(TRIES):
        if await backend.healthy(name):
            return True
    return False
