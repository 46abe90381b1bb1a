"""Metrics shared by every process of an agency (``node run`` and ``node subscribe``), serving them,
and the safe reads that collectors of state gauges make at scrape time."""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Info, start_http_server

from exchange.contracts.envelope import header

log = logging.getLogger(__name__)
T = TypeVar("T")

ERRORS = Counter("exchange_node_errors_total", "Errors by kind", ["kind"])

# Seconds one store transaction of a batch takes, node and hub alike.
BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

HUB_FAILOVERS = Counter("exchange_node_hub_failovers_total",
                        "Moves to another hub of [hub] addresses after the one in use stopped answering", ["client"])
HUB_IN_USE = Info("exchange_node_hub", "The hub address a client uses now", ["client"])


def errors_counter(registry: CollectorRegistry) -> Counter:
    """``exchange_node_errors_total`` in ``registry``: the process-wide one for the global registry."""
    if registry is REGISTRY:
        return ERRORS
    return Counter("exchange_node_errors_total", "Errors by kind", ["kind"], registry=registry)


def serve(address: str, port: int) -> None:
    """Serve /metrics on ``address:port`` (nothing when port is 0)."""
    if port:
        start_http_server(port, addr=address)


class ScrapeReads:
    """Reads the figures of a scrape so that one failing read never fails the scrape.

    A read that raises gives None (its sample is skipped); the failure is
    logged once, and again only after that figure was read successfully."""

    def __init__(self, owner: str):
        self.owner = owner
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def read(self, what: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None when it raises."""
        try:
            value = read()
        except Exception as e:
            with self._lock:
                first = what not in self._failing
                self._failing.add(what)
            if first:
                log.warning("%s: cannot read %s for /metrics (%s: %s); its samples are left out until it can",
                            self.owner, what, type(e).__name__, e)
            return None
        with self._lock:
            self._failing.discard(what)
        return value


def commit_timestamp(state: bytes) -> float | None:
    """The source commit time (Unix) in an event's serialised state, or None.

    The state is the JSON of a record event, whose ``commit_time`` is
    ``{"_type_": "datetime_iso", "_data_": ISO}`` or null.  States that are
    not such JSON (compressed, encrypted, other event kinds) give None.
    """
    return header(state).commit_time
