"""History's page of a run's events (api/watch.py of_run, one statement): every
event as the run_events row itself converts, byte for byte (details as stored,
the time to the microsecond, the year 9999 included) in any session time zone;
the cursor checked; no events an empty page."""

from __future__ import annotations

import json
import uuid

import pytest

from services.common import db
from services.common.errors import ServiceError
from services.history import convert
from services.history.api import watch

DETAILS = [
    {"b": 1, "a": [1.0, 2.5e-10, 1e300, 12345678901234567890], "s": 'é\u2028"\\', "n": None, "t": True},
    {"big": 123456789012345678901234567890, "f": 0.1, "neg": -0.0, "nested": {"z": {}, "y": []}},
    {},
]
TIMES = [
    "1970-01-01T00:00:00.000001+00",
    "2026-12-05T04:12:04.123456+00",
    "9999-12-31T23:59:59.999999+00",
]


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/St_Johns"])
async def test_a_page_holds_each_event_as_its_row_converts(services, zone: str) -> None:
    pool = await db.connect_pool(services.database_url, server_settings={"TimeZone": zone})
    try:
        run_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO runs (id, namespace, task_id, queue, status, input, input_encoding, retry) "
            "VALUES ($1, $2, 't', 'q', 'executing', ''::bytea, 'json', '{}'::jsonb)",
            run_id,
            services.namespace,
        )
        assert (await watch.of_run(pool, services.namespace, run_id, 0, 10)).events == []
        for details, at in zip(DETAILS, TIMES, strict=True):
            await pool.execute(
                "INSERT INTO run_events (run_id, type, attempt, details, at) "
                "VALUES ($1, 'log', 1, $2::text::jsonb, $3::text::timestamptz)",
                run_id,
                json.dumps(details),
                at,
            )
        rows = await pool.fetch("SELECT * FROM run_events WHERE run_id = $1 ORDER BY id", run_id)
        page = await watch.of_run(pool, services.namespace, run_id, 0, 10)
        assert [convert.event(e) for e in page.events] == [convert.event(r) for r in rows]
        assert (page.last_id, page.more) == (rows[-1]["id"], False)
        after = await watch.of_run(pool, services.namespace, run_id, rows[0]["id"], 1)
        assert ([e["id"] for e in after.events], after.more) == ([rows[1]["id"]], True)
        with pytest.raises(ServiceError, match="is not an event of run"):
            await watch.of_run(pool, services.namespace, run_id, rows[-1]["id"] + 1000, 10)
        with pytest.raises(ServiceError, match="not found"):
            await watch.of_run(pool, "another", run_id, 0, 10)
    finally:
        await pool.close()
