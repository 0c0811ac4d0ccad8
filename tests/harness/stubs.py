"""gRPC stubs of the public services on a cluster's channel (the frontend)."""

from __future__ import annotations

from typing import Any

from cairn.v1 import run_service_pb2_grpc, schedule_service_pb2_grpc, worker_service_pb2_grpc


def run_stub(cluster: Any) -> run_service_pb2_grpc.RunServiceStub:
    return run_service_pb2_grpc.RunServiceStub(cluster.channel())


def worker_stub(cluster: Any) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(cluster.channel())


def schedule_stub(cluster: Any) -> schedule_service_pb2_grpc.ScheduleServiceStub:
    return schedule_service_pb2_grpc.ScheduleServiceStub(cluster.channel())
