from cairn.v1 import key_service_pb2 as _key_service_pb2
from cairn.v1 import queue_service_pb2 as _queue_service_pb2
from cairn.v1 import worker_service_pb2 as _worker_service_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateKeyRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: str
    def __init__(self, secret: _Optional[str] = ...) -> None: ...

class AuthenticateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _key_service_pb2.ApiKey
    def __init__(self, key: _Optional[_Union[_key_service_pb2.ApiKey, _Mapping]] = ...) -> None: ...
