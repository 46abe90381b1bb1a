"""Metrics shared by every process of an agency (``node run`` and ``node subscribe``) and serving them."""

from __future__ import annotations

from prometheus_client import Counter, start_http_server

ERRORS = Counter("exchange_node_errors_total", "Errors by kind", ["kind"])


def serve(address: str, port: int) -> None:
    """Serve /metrics on ``address:port`` (nothing when port is 0)."""
    if port:
        start_http_server(port, addr=address)
