"""schemathesis against the frontend's /openapi.json, over every operation of
the HTTP API on a real cluster: schema-valid requests (positive) and requests
that break the schema (negative). No answer may be a 5xx or break the
document's response schemas, and every request that breaks the schema must be
refused with a 4xx. Prints how many cases ran.

The event streams (GET /v1/runs/watch, /v1/runs/{run_id}/watch: the routes
routes.py marks stream=True) are left out: schemathesis reads a whole answer
before checking it, and /v1/runs/watch never ends, so it would hang; they are
tested by tests/cluster/test_http_watch.py."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from cairn_cli.embedded import free_port
from services.frontend.http.routes import HTTP_ROUTES

STREAMS = {(r.verb, r.path) for r in HTTP_ROUTES if r.stream}

EXAMPLES = 50  # per operation and mode: 21 operations x 2 modes, 2100 cases in about 25 s
COMMON_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _property(operation: Any, mode: GenerationMode, base: str, ran: dict[str, int], key: str) -> Any:
    """The hypothesis test of one operation in one mode, counting its cases in ran[key]."""
    checks = COMMON_CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        ran[key] += 1
        case.call_and_validate(base_url=base, checks=checks)

    return check


def test_schemathesis_over_every_route(cluster_factory: Any) -> None:
    address = f"127.0.0.1:{free_port()}"
    cluster_factory(env={"CAIRN_HTTP_ADDRESS": address})
    base = f"http://{address}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in STREAMS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            key = f"{operation.label} {mode.value}"
            ran[key] = 0
            _property(operation, mode, base, ran, key)()
    operations = {k.rsplit(" ", 1)[0] for k in ran}
    print(f"\nschemathesis: {sum(ran.values())} cases over {len(operations)} operations")
    for key, n in sorted(ran.items()):
        print(f"  {n:4d}  {key}")
    assert {f"{r.verb} {r.path}" for r in HTTP_ROUTES if not r.stream} == operations
    assert all(n > 0 for n in ran.values()), ran
