"""schemathesis against the frontend's /openapi.json, over every operation of
the HTTP API on a real cluster (issue 14, must-show 4, HTTP part):
schema-valid requests (positive) and requests that break the schema
(negative), each sent with the session's admin key (harness.auth.headers()),
so they reach the handlers rather than stop at a 401 (a negative case that
leaves the Authorization header out is sent without it, to see the 401 the
document promises). No answer may be a 5xx
or break the document's response schemas, every request that breaks the
schema must be refused with a 4xx, and a refused request (4xx) changes no row
count of the namespace it names (namespace_rows.py; "default" when it names
none, as the admin key's requests do), unless history has work of its own due
there (a timer or schedule an accepted request set): those are counted apart.
Prints how many cases ran, and how many refusals had their rows counted.

The event streams (GET /v1/runs/watch, /v1/runs/{run_id}/watch: the routes
routes.py marks stream=True) are left out: schemathesis reads a whole answer
before checking it, and /v1/runs/watch never ends, so it would hang; they are
tested by tests/cluster/test_http_watch.py and the generated isolation and
roles tests."""

from __future__ import annotations

import collections
import os
from typing import Any

import schemathesis
from harness import auth
from hypothesis import HealthCheck, Phase, given, settings
from namespace_rows import NamespaceRows
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from cairn.limits import DEFAULT_NAMESPACE
from cairn_cli.embedded import free_port
from services.frontend.http.routes import HTTP_ROUTES

STREAMS = {(r.verb, r.path) for r in HTTP_ROUTES if r.stream}

# Per operation and mode: 25 operations x 2 modes, 1500 cases in about 14 s;
# CAIRN_SCHEMATHESIS_EXAMPLES=N runs N each for a deeper look.
EXAMPLES = int(os.environ.get("CAIRN_SCHEMATHESIS_EXAMPLES") or 30)
COMMON_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
HEADERS = {"Authorization": auth.headers()["authorization"]}


def namespaces_of(case: Any) -> set[str]:
    """The namespaces a case names in its query or body ("default" for none)."""
    named = []
    for part in (case.query, case.body):
        if isinstance(part, dict) and "namespace" in part:
            value = part["namespace"]
            named += value if isinstance(value, list) else [value]
    texts = {v for v in named if isinstance(v, str) and v}
    return texts if texts else {DEFAULT_NAMESPACE}


class Counted:
    """The cases, by operation and mode, and the refusals whose rows were counted."""

    def __init__(self, rows: NamespaceRows) -> None:
        self.rows = rows
        self.ran: collections.Counter[str] = collections.Counter()
        self.refused_counted = 0
        self.refused_busy = 0
        self.statuses: collections.Counter[int] = collections.Counter()

    @staticmethod
    def headers(case: Any, negative: bool) -> dict[str, str]:
        """The admin key, except for a negative case that left the Authorization
        header out: that omission is its negation (schemathesis then expects the
        401), and adding the key back would make it a valid request that
        negative_data_rejection reports as accepted."""
        sent = {name.lower() for name in (case.headers or {})}
        return {} if negative and "authorization" not in sent else HEADERS

    def check(self, case: Any, base: str, checks: list[Any], key: str, negative: bool) -> None:
        self.ran[key] += 1
        namespaces = namespaces_of(case)
        before = None if self.rows.busy(namespaces) else self.rows.counts(namespaces)
        response = case.call(base_url=base, headers=self.headers(case, negative))
        self.statuses[response.status_code] += 1
        case.validate_response(response, checks=checks)
        if response.status_code < 400:
            return
        if before is None:
            self.refused_busy += 1
            return
        after = self.rows.counts(namespaces)
        changed = {t: (before[t], after[t]) for t in after if after[t] != before[t]}
        assert not changed, (
            f"{case.operation.label} refused with {response.status_code} ({response.text[:200]}) "
            f"but rows of {sorted(namespaces)} changed: {changed}\nReproduce with: {case.as_curl_command(headers=HEADERS)}"
        )
        self.refused_counted += 1


def _property(operation: Any, mode: GenerationMode, base: str, counted: Counted, key: str) -> Any:
    """The hypothesis test of one operation in one mode."""
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
        counted.check(case, base, checks, key, mode == GenerationMode.NEGATIVE)

    return check


def test_schemathesis_over_every_route(cluster_factory: Any) -> None:
    address = f"127.0.0.1:{free_port()}"
    cluster = cluster_factory(env={"CAIRN_HTTP_ADDRESS": address, "CAIRN_KEY_RATE": "0"})
    base = f"http://{address}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    counted = Counted(NamespaceRows(cluster))
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in STREAMS:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                key = f"{operation.label} {mode.value}"
                counted.ran[key] = 0
                _property(operation, mode, base, counted, key)()
    finally:
        counted.rows.close()
    ran = counted.ran
    operations = {k.rsplit(" ", 1)[0] for k in ran}
    print(
        f"\nschemathesis: {sum(ran.values())} cases over {len(operations)} operations; "
        f"{counted.refused_counted} refusals with their namespace's rows counted before and after, "
        f"{counted.refused_busy} more in a namespace where history had work due; answers: "
        + ", ".join(f"{status} {n}" for status, n in sorted(counted.statuses.items()))
    )
    for key, n in sorted(ran.items()):
        print(f"  {n:4d}  {key}")
    assert {f"{r.verb} {r.path}" for r in HTTP_ROUTES if not r.stream} == operations
    assert all(n > 0 for n in ran.values()), ran
    assert counted.refused_counted > sum(ran.values()) // 4, "too few refusals had their rows counted"
