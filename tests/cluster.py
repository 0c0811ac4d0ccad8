"""Re-export of tests/harness/ while the test files still import `cluster`."""

from harness import *  # noqa: F403
