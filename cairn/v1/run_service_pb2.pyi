import datetime

from cairn.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListRunLogsRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "after_id", "page_size")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    after_id: int
    page_size: int
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., after_id: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListRunLogsResponse(_message.Message):
    __slots__ = ("lines", "last_id", "more")
    LINES_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogLine]
    last_id: int
    more: bool
    def __init__(self, lines: _Optional[_Iterable[_Union[_common_pb2.LogLine, _Mapping]]] = ..., last_id: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "after_event_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    after_event_id: int
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class WatchRunsRequest(_message.Message):
    __slots__ = ("namespace", "task_id", "tags", "after_event_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    task_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    after_event_id: int
    def __init__(self, namespace: _Optional[str] = ..., task_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class RunUpdate(_message.Message):
    __slots__ = ("event", "run", "done")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    event: _common_pb2.RunEvent
    run: _common_pb2.Run
    done: bool
    def __init__(self, event: _Optional[_Union[_common_pb2.RunEvent, _Mapping]] = ..., run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ..., done: _Optional[bool] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[RunUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[RunUpdate, _Mapping]]] = ...) -> None: ...

class WatchRunsResponse(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[RunUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[RunUpdate, _Mapping]]] = ...) -> None: ...

class ReplayRunRequest(_message.Message):
    __slots__ = ("namespace", "run_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class ReplayRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.Run
    def __init__(self, run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ...) -> None: ...

class TriggerRunRequest(_message.Message):
    __slots__ = ("namespace", "task_id", "payload", "idempotency_key", "options", "parent_run_id", "request_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    task_id: str
    payload: _common_pb2.Payload
    idempotency_key: str
    options: _common_pb2.TriggerOptions
    parent_run_id: str
    request_id: str
    def __init__(self, namespace: _Optional[str] = ..., task_id: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.TriggerOptions, _Mapping]] = ..., parent_run_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class TriggerRunResponse(_message.Message):
    __slots__ = ("run", "existing")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.Run
    existing: bool
    def __init__(self, run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ..., existing: _Optional[bool] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("namespace", "run_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.Run
    def __init__(self, run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("namespace", "task_id", "statuses", "page_size", "page_token", "tag", "parent_run_id", "queue", "created_after", "created_before")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    task_id: str
    statuses: _containers.RepeatedScalarFieldContainer[_common_pb2.RunStatus]
    page_size: int
    page_token: str
    tag: str
    parent_run_id: str
    queue: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    def __init__(self, namespace: _Optional[str] = ..., task_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.RunStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tag: _Optional[str] = ..., parent_run_id: _Optional[str] = ..., queue: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[_common_pb2.Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "reason")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    reason: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.Run
    def __init__(self, run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ...) -> None: ...

class WaitRunRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "timeout")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    timeout: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WaitRunResponse(_message.Message):
    __slots__ = ("run", "done")
    RUN_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    run: _common_pb2.Run
    done: bool
    def __init__(self, run: _Optional[_Union[_common_pb2.Run, _Mapping]] = ..., done: _Optional[bool] = ...) -> None: ...

class BatchTriggerRunsRequest(_message.Message):
    __slots__ = ("namespace", "runs")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    runs: _containers.RepeatedCompositeFieldContainer[TriggerRunRequest]
    def __init__(self, namespace: _Optional[str] = ..., runs: _Optional[_Iterable[_Union[TriggerRunRequest, _Mapping]]] = ...) -> None: ...

class BatchTriggerRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[TriggerRunResponse]
    def __init__(self, runs: _Optional[_Iterable[_Union[TriggerRunResponse, _Mapping]]] = ...) -> None: ...
