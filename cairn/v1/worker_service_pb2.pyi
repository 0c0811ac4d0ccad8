import datetime

from cairn.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_COMPLETED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FAILED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SUSPENDED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_RELEASED: _ClassVar[AttemptOutcome]

class AttemptGone(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_GONE_UNSPECIFIED: _ClassVar[AttemptGone]
    ATTEMPT_GONE_CANCELED: _ClassVar[AttemptGone]
    ATTEMPT_GONE_TIMED_OUT: _ClassVar[AttemptGone]
    ATTEMPT_GONE_SUPERSEDED: _ClassVar[AttemptGone]
    ATTEMPT_GONE_ENDED: _ClassVar[AttemptGone]
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_COMPLETED: AttemptOutcome
ATTEMPT_OUTCOME_FAILED: AttemptOutcome
ATTEMPT_OUTCOME_SUSPENDED: AttemptOutcome
ATTEMPT_OUTCOME_RELEASED: AttemptOutcome
ATTEMPT_GONE_UNSPECIFIED: AttemptGone
ATTEMPT_GONE_CANCELED: AttemptGone
ATTEMPT_GONE_TIMED_OUT: AttemptGone
ATTEMPT_GONE_SUPERSEDED: AttemptGone
ATTEMPT_GONE_ENDED: AttemptGone

class AppendRunOutputRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "attempt", "outputs", "attempt_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    attempt: int
    outputs: _containers.RepeatedCompositeFieldContainer[RunOutput]
    attempt_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[RunOutput, _Mapping]]] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class RunOutput(_message.Message):
    __slots__ = ("log", "chunk")
    LOG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    log: _common_pb2.LogLine
    chunk: _common_pb2.StreamChunk
    def __init__(self, log: _Optional[_Union[_common_pb2.LogLine, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.StreamChunk, _Mapping]] = ...) -> None: ...

class AppendRunOutputResponse(_message.Message):
    __slots__ = ("logs_dropped", "chunks_dropped")
    LOGS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    logs_dropped: int
    chunks_dropped: int
    def __init__(self, logs_dropped: _Optional[int] = ..., chunks_dropped: _Optional[int] = ...) -> None: ...

class TaskDefinition(_message.Message):
    __slots__ = ("task_id", "queue", "retry", "schedule", "timezone", "max_duration", "concurrency_limit")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    queue: str
    retry: _common_pb2.RetryPolicy
    schedule: str
    timezone: str
    max_duration: _duration_pb2.Duration
    concurrency_limit: int
    def __init__(self, task_id: _Optional[str] = ..., queue: _Optional[str] = ..., retry: _Optional[_Union[_common_pb2.RetryPolicy, _Mapping]] = ..., schedule: _Optional[str] = ..., timezone: _Optional[str] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., concurrency_limit: _Optional[int] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("namespace", "worker_id", "version", "tasks", "slots")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    worker_id: str
    version: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskDefinition]
    slots: int
    def __init__(self, namespace: _Optional[str] = ..., worker_id: _Optional[str] = ..., version: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskDefinition, _Mapping]]] = ..., slots: _Optional[int] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PollAttemptRequest(_message.Message):
    __slots__ = ("namespace", "worker_id", "task_ids", "wait", "max_attempts")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    worker_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    wait: _duration_pb2.Duration
    max_attempts: int
    def __init__(self, namespace: _Optional[str] = ..., worker_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class AttemptAssignment(_message.Message):
    __slots__ = ("run_id", "attempt", "task_id", "payload", "steps", "lease_duration", "run_created_at", "metadata", "parent_run_id", "traceparent", "attempt_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    RUN_CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    attempt: int
    task_id: str
    payload: _common_pb2.Payload
    steps: _containers.RepeatedCompositeFieldContainer[_common_pb2.Step]
    lease_duration: _duration_pb2.Duration
    run_created_at: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    parent_run_id: str
    traceparent: str
    attempt_token: str
    def __init__(self, run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., task_id: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[_common_pb2.Step, _Mapping]]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., run_created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., parent_run_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class PollAttemptResponse(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[AttemptAssignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[AttemptAssignment, _Mapping]]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "attempt", "attempt_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    attempt: int
    attempt_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("lease_expires_at",)
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordStepRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "attempt", "position", "name", "status", "output", "error", "tries", "try_errors", "attempt_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRIES_FIELD_NUMBER: _ClassVar[int]
    TRY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    attempt: int
    position: int
    name: str
    status: _common_pb2.StepStatus
    output: _common_pb2.Payload
    error: _common_pb2.ErrorInfo
    tries: int
    try_errors: _containers.RepeatedCompositeFieldContainer[_common_pb2.ErrorInfo]
    attempt_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., position: _Optional[int] = ..., name: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.StepStatus, str]] = ..., output: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., tries: _Optional[int] = ..., try_errors: _Optional[_Iterable[_Union[_common_pb2.ErrorInfo, _Mapping]]] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class RecordStepResponse(_message.Message):
    __slots__ = ("step",)
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: _common_pb2.Step
    def __init__(self, step: _Optional[_Union[_common_pb2.Step, _Mapping]] = ...) -> None: ...

class FinishAttemptRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "attempt", "outcome", "output", "error", "wait", "attempt_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    attempt: int
    outcome: AttemptOutcome
    output: _common_pb2.Payload
    error: _common_pb2.ErrorInfo
    wait: WaitSpec
    attempt_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., output: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ..., wait: _Optional[_Union[WaitSpec, _Mapping]] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class WaitSpec(_message.Message):
    __slots__ = ("position", "name", "timeout_at", "event", "token", "children", "sleep")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    position: int
    name: str
    timeout_at: _timestamp_pb2.Timestamp
    event: EventWait
    token: TokenWait
    children: ChildrenWait
    sleep: SleepWait
    def __init__(self, position: _Optional[int] = ..., name: _Optional[str] = ..., timeout_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event: _Optional[_Union[EventWait, _Mapping]] = ..., token: _Optional[_Union[TokenWait, _Mapping]] = ..., children: _Optional[_Union[ChildrenWait, _Mapping]] = ..., sleep: _Optional[_Union[SleepWait, _Mapping]] = ...) -> None: ...

class SleepWait(_message.Message):
    __slots__ = ("until",)
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    until: _timestamp_pb2.Timestamp
    def __init__(self, until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EventWait(_message.Message):
    __slots__ = ("name", "key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class TokenWait(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class ChildrenWait(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[ChildRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[ChildRun, _Mapping]]] = ...) -> None: ...

class ChildResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ChildResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ChildResult, _Mapping]]] = ...) -> None: ...

class ChildResult(_message.Message):
    __slots__ = ("run_id", "status", "output", "error")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: _common_pb2.RunStatus
    output: _common_pb2.Payload
    error: _common_pb2.ErrorInfo
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.RunStatus, str]] = ..., output: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ErrorInfo, _Mapping]] = ...) -> None: ...

class ChildRun(_message.Message):
    __slots__ = ("task_id", "payload", "options")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    payload: _common_pb2.Payload
    options: _common_pb2.TriggerOptions
    def __init__(self, task_id: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.TriggerOptions, _Mapping]] = ...) -> None: ...

class UpdateRunMetadataRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "attempt", "metadata", "attempt_token")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    attempt: int
    metadata: _struct_pb2.Struct
    attempt_token: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., attempt: _Optional[int] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attempt_token: _Optional[str] = ...) -> None: ...

class UpdateRunMetadataResponse(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _struct_pb2.Struct
    def __init__(self, metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FinishAttemptResponse(_message.Message):
    __slots__ = ("run_status", "retry_delay")
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    run_status: _common_pb2.RunStatus
    retry_delay: _duration_pb2.Duration
    def __init__(self, run_status: _Optional[_Union[_common_pb2.RunStatus, str]] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AttemptWrite(_message.Message):
    __slots__ = ("record_step", "finish_attempt", "append_run_output")
    RECORD_STEP_FIELD_NUMBER: _ClassVar[int]
    FINISH_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    APPEND_RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    record_step: RecordStepRequest
    finish_attempt: FinishAttemptRequest
    append_run_output: AppendRunOutputRequest
    def __init__(self, record_step: _Optional[_Union[RecordStepRequest, _Mapping]] = ..., finish_attempt: _Optional[_Union[FinishAttemptRequest, _Mapping]] = ..., append_run_output: _Optional[_Union[AppendRunOutputRequest, _Mapping]] = ...) -> None: ...

class BatchWriteRequest(_message.Message):
    __slots__ = ("namespace", "writes")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    writes: _containers.RepeatedCompositeFieldContainer[AttemptWrite]
    def __init__(self, namespace: _Optional[str] = ..., writes: _Optional[_Iterable[_Union[AttemptWrite, _Mapping]]] = ...) -> None: ...

class WriteError(_message.Message):
    __slots__ = ("code", "message", "attempt_gone")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_GONE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    attempt_gone: AttemptGone
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., attempt_gone: _Optional[_Union[AttemptGone, str]] = ...) -> None: ...

class AttemptWriteResult(_message.Message):
    __slots__ = ("record_step", "finish_attempt", "error", "append_run_output")
    RECORD_STEP_FIELD_NUMBER: _ClassVar[int]
    FINISH_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    APPEND_RUN_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    record_step: RecordStepResponse
    finish_attempt: FinishAttemptResponse
    error: WriteError
    append_run_output: AppendRunOutputResponse
    def __init__(self, record_step: _Optional[_Union[RecordStepResponse, _Mapping]] = ..., finish_attempt: _Optional[_Union[FinishAttemptResponse, _Mapping]] = ..., error: _Optional[_Union[WriteError, _Mapping]] = ..., append_run_output: _Optional[_Union[AppendRunOutputResponse, _Mapping]] = ...) -> None: ...

class BatchWriteResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AttemptWriteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AttemptWriteResult, _Mapping]]] = ...) -> None: ...
