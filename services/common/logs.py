"""One log format for every service process."""

from __future__ import annotations

import logging
import os


def setup(service: str) -> None:
    """Logs to stderr as `time level service logger: message` (CAIRN_LOG_LEVEL, default INFO)."""
    logging.basicConfig(
        level=os.environ.get("CAIRN_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )
