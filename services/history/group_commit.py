"""Group commit: the writes of several callers in one transaction, so they
share one commit; each gets its own result or refusal, as if applied alone."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
import grpc

from services.common import metrics
from services.common.errors import ServiceError
from services.history.api.transition import Conn

log = logging.getLogger("cairn.history.group_commit")
T = TypeVar("T")


async def group_commit(
    pool: asyncpg.Pool, writes: Sequence[Callable[[Conn], Awaitable[T]]], operation: str = "write"
) -> list[T | ServiceError]:
    """Applies writes of different attempts in one transaction, so they share
    one commit; each gets its own result or refusal, as if applied alone (a
    refusal rolls back to a savepoint that the write's own transaction
    becomes). A database error, e.g. a deadlock between two batches, rolls the
    batch back and applies each write alone. A single write is applied
    alone at once: its own statement is its transaction. Each transaction's
    duration and the batch's size are metrics, labelled with `operation`."""
    seconds = metrics.DB_TRANSACTION_SECONDS.labels(operation)
    metrics.GROUP_COMMIT_BATCH_SIZE.labels(operation).observe(len(writes))
    if len(writes) > 1:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            try:
                results: list[T | ServiceError] = []
                async with conn.transaction():
                    for write in writes:
                        try:
                            results.append(await write(conn))
                        except ServiceError as exc:
                            results.append(exc)
                seconds.observe(time.perf_counter() - started)
                return results
            except asyncpg.PostgresError as exc:
                log.warning(
                    "group commit of %d writes rolled back (%s); applying each alone", len(writes), exc
                )
    results = []
    for write in writes:
        started = time.perf_counter()
        try:
            async with pool.acquire() as conn:
                results.append(await write(conn))
            seconds.observe(time.perf_counter() - started)
        except ServiceError as exc:
            results.append(exc)
        except asyncpg.PostgresError as exc:  # this write's own failure, not the others'
            log.exception("a write of a group commit failed")
            results.append(
                ServiceError(
                    grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see history's log"
                )
            )
    return results
