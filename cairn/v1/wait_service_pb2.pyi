import datetime

from cairn.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WaitTokenStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_TOKEN_STATUS_UNSPECIFIED: _ClassVar[WaitTokenStatus]
    WAIT_TOKEN_STATUS_PENDING: _ClassVar[WaitTokenStatus]
    WAIT_TOKEN_STATUS_COMPLETED: _ClassVar[WaitTokenStatus]
    WAIT_TOKEN_STATUS_TIMED_OUT: _ClassVar[WaitTokenStatus]
WAIT_TOKEN_STATUS_UNSPECIFIED: WaitTokenStatus
WAIT_TOKEN_STATUS_PENDING: WaitTokenStatus
WAIT_TOKEN_STATUS_COMPLETED: WaitTokenStatus
WAIT_TOKEN_STATUS_TIMED_OUT: WaitTokenStatus

class SendEventRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "name", "key", "payload")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    name: str
    key: str
    payload: _common_pb2.Payload
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., name: _Optional[str] = ..., key: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ...) -> None: ...

class SendEventResponse(_message.Message):
    __slots__ = ("delivered_run_ids", "buffered")
    DELIVERED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    delivered_run_ids: _containers.RepeatedScalarFieldContainer[str]
    buffered: bool
    def __init__(self, delivered_run_ids: _Optional[_Iterable[str]] = ..., buffered: _Optional[bool] = ...) -> None: ...

class WaitToken(_message.Message):
    __slots__ = ("id", "namespace", "run_id", "status", "payload", "created_at", "completed_at", "timeout_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    run_id: str
    status: WaitTokenStatus
    payload: _common_pb2.Payload
    created_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    timeout_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., status: _Optional[_Union[WaitTokenStatus, str]] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeout_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWaitTokenRequest(_message.Message):
    __slots__ = ("namespace", "run_id", "timeout", "idempotency_key")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    run_id: str
    timeout: _duration_pb2.Duration
    idempotency_key: str
    def __init__(self, namespace: _Optional[str] = ..., run_id: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateWaitTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: WaitToken
    def __init__(self, token: _Optional[_Union[WaitToken, _Mapping]] = ...) -> None: ...

class CompleteWaitTokenRequest(_message.Message):
    __slots__ = ("namespace", "token_id", "payload")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    token_id: str
    payload: _common_pb2.Payload
    def __init__(self, namespace: _Optional[str] = ..., token_id: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ...) -> None: ...

class CompleteWaitTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: WaitToken
    def __init__(self, token: _Optional[_Union[WaitToken, _Mapping]] = ...) -> None: ...

class GetWaitTokenRequest(_message.Message):
    __slots__ = ("namespace", "token_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    token_id: str
    def __init__(self, namespace: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class GetWaitTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: WaitToken
    def __init__(self, token: _Optional[_Union[WaitToken, _Mapping]] = ...) -> None: ...
