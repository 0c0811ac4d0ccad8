"""The error types the server writes itself (ErrorInfo.type), one scheme:
"cairn.<Name>". History writes the first five; an SDK writes the last three for
failures of its own (any SDK may). The SDKs and tests read them from here.
The list is repeated in the comment of ErrorInfo.type (proto/cairn/v1/common.proto)."""

from __future__ import annotations

PREFIX = "cairn."

# An attempt's worker stopped heartbeating and its lease expired (the attempt crashed).
LEASE_EXPIRED = PREFIX + "LeaseExpired"
# The run was canceled (CancelRun, or its parent was canceled).
CANCELED = PREFIX + "Canceled"
# The run executed longer than its max_duration (TIMED_OUT).
MAX_DURATION_EXCEEDED = PREFIX + "MaxDurationExceeded"
# The run was not started within its ttl (EXPIRED).
EXPIRED = PREFIX + "Expired"
# A wait's timeout passed before its event, token or children (the wait's step failed).
WAIT_TIMEOUT = PREFIX + "WaitTimeout"

# A worker was handed a run of a task it does not serve.
UNKNOWN_TASK = PREFIX + "UnknownTask"
# A run's payload cannot be decoded by the worker (its encoding or bytes).
INVALID_PAYLOAD = PREFIX + "InvalidPayload"
# The server refused a task's output (e.g. not valid for its encoding).
OUTPUT_REFUSED = PREFIX + "OutputRefused"

ALL = (
    LEASE_EXPIRED,
    CANCELED,
    MAX_DURATION_EXCEEDED,
    EXPIRED,
    WAIT_TIMEOUT,
    UNKNOWN_TASK,
    INVALID_PAYLOAD,
    OUTPUT_REFUSED,
)
