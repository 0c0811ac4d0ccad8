from cairn.v1 import queue_service_pb2 as _queue_service_pb2
from cairn.v1 import worker_service_pb2 as _worker_service_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
