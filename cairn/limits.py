"""Limits and names of the protocol, defined once: the SDK checks them before a
call leaves the worker or client, the frontend enforces them at the door, and
matching bounds its long poll with them."""

from __future__ import annotations

import re

DEFAULT_NAMESPACE = "default"
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # a namespace name
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # task, queue, schedule, worker ids
NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
ID_RE = re.compile(ID_PATTERN)

MIN_PRIORITY = -1000  # a run's priority: higher is claimed first
MAX_PRIORITY = 1000
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # one payload, output or event body
MAX_KEY_CHARS = 256  # idempotency keys
# A trigger's request id (TriggerRunRequest.request_id): 1-64 of these characters
# (a UUID is 36). History answers the run a request id made in its namespace for
# REQUEST_ID_WINDOW_SECONDS, so a trigger sent again never makes a second run.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
MAX_REQUEST_ID_CHARS = 64
REQUEST_ID_WINDOW_SECONDS = 24 * 3600
MAX_NAME_CHARS = 256  # step, wait and event names, event keys
MAX_CONCURRENCY_KEY_CHARS = 128
MAX_METADATA_BYTES = 4096  # a run's metadata as JSON
MAX_TAGS = 10
MAX_STACK_TRACE_CHARS = 256 * 1024
MAX_BATCH = 1000  # runs of one batch trigger, writes of one BatchWrite, children of one wait
MAX_PAGE_SIZE = 1000  # runs of one ListRuns page
MAX_DELAY_SECONDS = 366 * 86400  # a trigger's delay, ttl, max_duration

MAX_POLL_ATTEMPTS = 100  # attempts handed over by one PollAttempt
DEFAULT_POLL_WAIT = 20.0  # seconds a PollAttempt waits for work when it names no wait
MAX_WAIT = 60.0  # seconds any long poll (PollAttempt, WaitRun) may wait
# A worker counts as connected (ListWorkers, the CLI's hint on a queued run) when
# matching saw it (a registration or a poll) this recently: 3 x DEFAULT_POLL_WAIT,
# so a worker that polls with the default wait misses two polls before it is
# gone. A poll refreshes last_seen_at at most once per WORKER_SEEN_REFRESH per
# matching replica (when matching re-reads the worker's row). A worker whose
# slots are all busy does not poll: it counts as connected while it executes
# attempts (their leases are kept by its heartbeats).
WORKER_CONNECTED_SECONDS = 3 * DEFAULT_POLL_WAIT
# A registration not seen this long and executing nothing is deleted by
# matching's sweep: each worker process registers its own id, so without this
# the list of workers only grows.
WORKER_FORGOTTEN_SECONDS = 7 * 86400.0
WORKER_SEEN_REFRESH = 5.0  # seconds matching caches a worker's row between polls
COALESCED_BATCH = 256  # items of one coalesced batch call (cairn.coalesce)

MAX_TAG_CHARS = 64  # one tag of a run
MAX_REASON_CHARS = 1000  # a cancel reason
MAX_WORKER_ID_CHARS = 200
MAX_VERSION_CHARS = 100  # a worker's version
MAX_TOKEN_ID_CHARS = 100  # a wait token id
MAX_ATTEMPT_TOKEN_CHARS = 64  # an attempt's token (AttemptAssignment.attempt_token; history makes 32)
MAX_ERROR_TYPE_CHARS = 500  # an error's type name
MAX_ERROR_MESSAGE_CHARS = 64 * 1024
MAX_QUEUE_CONCURRENCY = 100_000  # a queue's concurrency limit
MAX_QUEUE_DEPTH = 100_000_000  # a queue's max_depth
MAX_RATE_LIMIT = 1_000_000  # runs a queue starts per rate period
MAX_RATE_PERIOD_SECONDS = 86400

MAX_TRY_ERRORS = 10  # errors of failed in-place tries kept with a step (the latest ones)
MAX_STEPS_IN_FLIGHT = 1000  # a step may be recorded at most this far above the highest recorded position

# Run output (WorkerService.AppendRunOutput): log lines and stream chunks kept per
# run in its event log. What is over a run's bound is dropped (and counted), not refused.
MAX_LOG_LINES_PER_RUN = 5000
MAX_LOG_MESSAGE_CHARS = 8192  # one line's message (the SDK cuts a longer one)
MAX_LOG_FIELDS_BYTES = 4096  # one line's extra fields as JSON
MAX_STREAM_CHUNKS_PER_RUN = 10_000
MAX_STREAM_BYTES_PER_RUN = 4 * 1024 * 1024
MAX_STREAM_CHUNK_BYTES = 64 * 1024
MAX_OUTPUTS_PER_APPEND = 500  # entries of one AppendRunOutput
STREAM_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
STREAM_NAME_RE = re.compile(STREAM_NAME_PATTERN)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_PAGE_SIZE = 100  # lines of one ListRunLogs page

# Limits per API key, kept by each frontend replica (services/frontend/caller_limits.py;
# the frontend's --key-rate, --key-burst and --key-streams, CAIRN_KEY_*): a token bucket of
# requests (KEY_RATE a second, up to KEY_BURST_SECONDS of it at once), and the long polls
# and streams (PollAttempt, WaitRun, WatchRun, WatchRuns) a key may hold open at once. A
# call over either is refused RESOURCE_EXHAUSTED (HTTP 429) with the delay to wait in the
# trailing metadata RETRY_AFTER_KEY (whole milliseconds), which the SDK honours.
DEFAULT_KEY_RATE = 1000.0  # requests a second per key; 0 is no limit
KEY_BURST_SECONDS = 2.0  # the default burst: this many seconds of the rate
DEFAULT_KEY_STREAMS = 1000  # long polls and streams open at once per key; 0 is no limit
RETRY_AFTER_KEY = "cairn-retry-after-ms"
