"""A run's metadata from inside the run: read from the attempt's assignment and
replaced through WorkerService.UpdateRunMetadata (a fenced write)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from cairn.v1 import worker_service_pb2
from worker_sdk._attempt import AttemptContext
from worker_sdk._calls import attempt_call
from worker_sdk._convert import struct_to_dict
from worker_sdk._requests import to_struct
from worker_sdk._suspension import check_live
from worker_sdk._validate import json_object


async def set_metadata(ctx: AttemptContext, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Replaces the run's metadata; returns it as stored. The server refuses more
    than 4 KiB (InvalidArgumentError); a write from a superseded attempt abandons it."""
    check_live(ctx)
    value = json_object("metadata", metadata)
    request = worker_service_pb2.UpdateRunMetadataRequest(
        namespace=ctx.namespace,
        run_id=ctx.run_id,
        attempt=ctx.attempt,
        attempt_token=ctx.attempt_token,
        metadata=to_struct("metadata", value),
    )
    response = await attempt_call(ctx, ctx.stub.UpdateRunMetadata, request, "updating the run's metadata")
    if response is not None and response.HasField("metadata"):
        value = struct_to_dict(response.metadata)
    ctx.metadata = value
    return copy.deepcopy(value)


async def update_metadata(ctx: AttemptContext, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merges values into the run's metadata (top-level keys) and stores the result."""
    merged = dict(ctx.metadata)
    merged.update(values)
    return await set_metadata(ctx, merged)
