"""Readiness checks: standard gRPC health checking and HTTP endpoints."""

from __future__ import annotations

import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchange.common.config import Config
from exchange.transport.rpc.channel import open_channel


def is_serving(address: str, service: str = "", timeout: float = 1.0, cfg: Config | None = None) -> bool:
    """True when the server at ``address`` reports SERVING for ``service``;
    over mutual TLS when ``cfg`` holds ``[tls]`` settings (exchange.transport.rpc.channel)."""
    try:
        with (open_channel(address, cfg) if cfg is not None else grpc.insecure_channel(address)) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return answer.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def wait_serving(address: str, timeout: float = 30.0, service: str = "", cfg: Config | None = None) -> None:
    """Wait until the server at ``address`` is SERVING; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not is_serving(address, service, cfg=cfg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no gRPC server SERVING at {address} after {timeout:.0f}s")
        time.sleep(0.1)


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True when an HTTP GET of ``url`` succeeds (e.g. a /metrics endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False
