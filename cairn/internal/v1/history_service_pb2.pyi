from cairn.v1 import run_service_pb2 as _run_service_pb2
from cairn.v1 import schedule_service_pb2 as _schedule_service_pb2
from cairn.v1 import wait_service_pb2 as _wait_service_pb2
from cairn.v1 import worker_service_pb2 as _worker_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClaimAttemptsRequest(_message.Message):
    __slots__ = ("namespace", "task_ids", "max_attempts", "worker_id", "worker_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    max_attempts: int
    worker_id: str
    worker_version: str
    def __init__(self, namespace: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ..., max_attempts: _Optional[int] = ..., worker_id: _Optional[str] = ..., worker_version: _Optional[str] = ...) -> None: ...

class SyncDeclaredSchedulesRequest(_message.Message):
    __slots__ = ("namespace", "tasks")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    tasks: _containers.RepeatedCompositeFieldContainer[_worker_service_pb2.TaskDefinition]
    def __init__(self, namespace: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[_worker_service_pb2.TaskDefinition, _Mapping]]] = ...) -> None: ...

class SyncDeclaredSchedulesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartAttemptRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "worker_id", "worker_version", "claim_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLAIM_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    worker_id: str
    worker_version: str
    claim_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., worker_version: _Optional[str] = ..., claim_token: _Optional[str] = ...) -> None: ...

class TriggerRunsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TriggerRunResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TriggerRunResult, _Mapping]]] = ...) -> None: ...

class TriggerRunResult(_message.Message):
    __slots__ = ("triggered", "error")
    TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    triggered: _run_service_pb2.TriggerRunResponse
    error: _worker_service_pb2.WriteError
    def __init__(self, triggered: _Optional[_Union[_run_service_pb2.TriggerRunResponse, _Mapping]] = ..., error: _Optional[_Union[_worker_service_pb2.WriteError, _Mapping]] = ...) -> None: ...

class StartAttemptsRequest(_message.Message):
    __slots__ = ("starts",)
    STARTS_FIELD_NUMBER: _ClassVar[int]
    starts: _containers.RepeatedCompositeFieldContainer[StartAttemptRequest]
    def __init__(self, starts: _Optional[_Iterable[_Union[StartAttemptRequest, _Mapping]]] = ...) -> None: ...

class StartAttemptsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StartAttemptResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[StartAttemptResponse, _Mapping]]] = ...) -> None: ...

class StartAttemptResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: _worker_service_pb2.AttemptAssignment
    def __init__(self, assignment: _Optional[_Union[_worker_service_pb2.AttemptAssignment, _Mapping]] = ...) -> None: ...

class ListRunEventsRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "after_id", "limit", "task_id", "tags")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    after_id: int
    limit: int
    task_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., after_id: _Optional[int] = ..., limit: _Optional[int] = ..., task_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRunEventsResponse(_message.Message):
    __slots__ = ("updates", "last_id", "more", "ended")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[_run_service_pb2.RunUpdate]
    last_id: int
    more: bool
    ended: bool
    def __init__(self, updates: _Optional[_Iterable[_Union[_run_service_pb2.RunUpdate, _Mapping]]] = ..., last_id: _Optional[int] = ..., more: _Optional[bool] = ..., ended: _Optional[bool] = ...) -> None: ...
