"""An unexpected failure answers INTERNAL with an error id and nothing of the
failure; the log holds the failure under that id."""

from __future__ import annotations

import logging
import re

import grpc
import pytest

from services.common.errors import status_of


def test_an_internal_error_names_an_id_that_finds_its_log_entry(caplog: pytest.LogCaptureFixture) -> None:
    secret = "SELECT * FROM runs /srv/app.py KeyError"
    with caplog.at_level(logging.ERROR, logger="cairn.rpc"):
        status = status_of(KeyError(secret), "GetRun")
    assert status.code == grpc.StatusCode.INTERNAL
    match = re.search(r"error id ([0-9a-f]{12})", status.message)
    assert match, status.message
    assert secret not in status.message and "KeyError" not in status.message
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    again = status_of(KeyError(secret), "GetRun")
    assert again.message != status.message  # one id per failure
