"""context.stream: chunks a running task sends to whoever watches its run
(tokens of a model, progress), through the attempt's OutputBuffer. A chunk is
stored in the run's event log, bounded per run, and is not replayed."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from cairn import payloads
from cairn.limits import MAX_STREAM_CHUNK_BYTES, STREAM_NAME_RE
from worker_sdk._attempt import AttemptContext
from worker_sdk._calls import abandoned, gone_reason, is_gone
from worker_sdk._grpc import TRANSIENT_CODES, code_of, details_of, retry_delay_of, to_cairn_error
from worker_sdk._requests import encode_payload
from worker_sdk._suspension import check_live
from worker_sdk.errors import InvalidArgumentError

log = logging.getLogger("cairn.worker")


def encode_chunk(stream: str, value: Any) -> tuple[bytes, str]:
    """A chunk's bytes and encoding: bytes as binary/plain, anything else as
    JSON; InvalidArgumentError naming the stream when it cannot be sent."""
    if not isinstance(stream, str) or not STREAM_NAME_RE.match(stream):
        raise InvalidArgumentError(f"stream: {stream!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if isinstance(value, bytes | bytearray):
        data, encoding = bytes(value), payloads.BINARY
    else:
        payload = encode_payload(f"stream {stream!r} chunk", value)
        data, encoding = payload.data, payload.encoding
    if len(data) > MAX_STREAM_CHUNK_BYTES:
        raise InvalidArgumentError(
            f"stream {stream!r}: a chunk of {len(data)} bytes exceeds the limit of {MAX_STREAM_CHUNK_BYTES}"
        )
    return data, encoding


async def send_chunk(ctx: AttemptContext, stream: str, value: Any) -> None:
    """Sends one chunk and returns once it is stored; while the attempt replays
    its journal, sends nothing (the attempt that first ran the code sent it). A refusal saying the
    attempt is gone abandons it; a server unreachable, or a refusal by a limit
    of the API key, drops the chunk with a warning (chunks are not durable
    state, so the task goes on)."""
    check_live(ctx)
    data, encoding = encode_chunk(stream, value)
    if ctx.replaying:
        return  # sent when this code first ran
    try:
        await ctx.output.add_chunk(stream, data, encoding)
    except grpc.RpcError as exc:
        if is_gone(exc):
            raise abandoned(ctx, "streaming", gone_reason(ctx, exc)) from None
        if code_of(exc) in TRANSIENT_CODES or retry_delay_of(exc) is not None:
            log.warning(
                "run %s: a chunk of stream %r was not stored: %s", ctx.run_id, stream, details_of(exc)
            )
            return
        raise to_cairn_error(exc) from None
