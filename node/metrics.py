"""The node's Prometheus metrics.

Counters, histograms and the gauges that follow events (hub connected,
offline fallback active) live in ``NodeMetrics`` and are updated where the
events happen.  Gauges that describe state (backlog, its age, source
pending changes, retained WAL, positions) are read when Prometheus scrapes,
by ``NodeState``, so they are right whatever the capture and ship loops are
doing, including while the hub is down.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters.files.metrics import DROP_FILES_REFUSED, DROP_FILES_TAKEN  # noqa: F401 - the node's metrics in one place
from exchange.common.metrics import BATCH_SECONDS_BUCKETS, ERRORS, ScrapeReads, commit_timestamp, errors_counter, serve  # noqa: F401 - ERRORS and serve: the node's metrics in one place
from exchange.contracts.changes import CaptureSource
from exchange.store import NodeRecorder
from node.positions import HUB_TRACKING, SOURCE_TRACKING

log = logging.getLogger(__name__)


class NodeMetrics:
    """The node's metrics that events update, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.errors = errors_counter(registry)
        self.changes_captured = Counter(
            "exchange_node_changes_captured_total", "Source changes read from the change stream", ["op"],
            registry=registry)
        self.events_stored = Counter("exchange_node_events_stored_total",
                                     "Record events written to the node's event store", registry=registry)
        self.events_shipped = Counter("exchange_node_events_shipped_total",
                                      "Events sent to the hub (re-sends included)", registry=registry)
        self.events_acknowledged = Counter(
            "exchange_node_events_acknowledged_total", "Events the hub has confirmed as durably stored",
            registry=registry)
        self.hub_connected = Gauge("exchange_node_hub_connected", "1 while the publish stream to the hub is open",
                                   registry=registry)
        self.store_batch_seconds = Histogram(
            "exchange_node_store_batch_duration_seconds",
            "Time to store one batch of captured changes (one event-store transaction)",
            buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.invalid_identifiers = Counter(
            "exchange_node_invalid_identifiers_total",
            "Captured values of declared identifier columns with an invalid check character (still captured)",
            ["resource", "kind"], registry=registry)
        self.offline_fallback_active = Gauge(
            "exchange_node_offline_fallback_active",
            "1 while the node ships by offline bundles because the hub is unreachable", registry=registry)
        self.stalls = Counter("exchange_node_stalls_total",
                              "Capture, store and ship steps that made no progress for [watchdog] stall_seconds",
                              ["step"], registry=registry)
        self.capture_up = Gauge("exchange_node_capture_up",
                                "1 while capture runs (reading and storing, or waiting for changes), 0 while it "
                                "is stopped by an error", registry=registry)
        self.capture_down_since = Gauge(
            "exchange_node_capture_down_since_timestamp_seconds",
            "Unix time capture stopped at (0 while it runs)", registry=registry)
        self.capture_stopped = Gauge(
            "exchange_node_capture_stopped_info", "1 for the reason capture is stopped (no sample while it runs)",
            ["reason"], registry=registry)
        self.bundles_uploaded = Counter("exchange_node_bundles_uploaded_total",
                                        "Offline bundles uploaded to the SFTP server", registry=registry)
        self.bundle_bytes_uploaded = Counter(
            "exchange_node_bundle_bytes_uploaded_total",
            "Bytes of offline bundles sent to the SFTP server (resumed parts once)", registry=registry)


METRICS = NodeMetrics()  # the process's metrics, in the global registry

STATE = {  # the gauges NodeState exports: name -> help
    "exchange_node_source_position": "Source position durably stored at the node",
    "exchange_node_hub_position": "Node notification id acknowledged by the hub",
    "exchange_node_backlog_events": "Events stored at the node and not yet acknowledged by the hub",
    "exchange_node_backlog_seconds": "Age of the oldest unacknowledged event's source commit (0 when caught up)",
    "exchange_node_source_pending_changes": "Source changes not yet stored at the node",
    "exchange_node_slot_retained_wal_bytes":
        "WAL the source PostgreSQL keeps for the node's logical replication slot (0 for other sources)",
    "exchange_node_binlog_lag_bytes": "MariaDB/MySQL sources: binlog bytes written that capture has not read yet",
    "exchange_node_binlog_lag_seconds": "MariaDB/MySQL sources: seconds since capture last caught up with the "
                                        "binlog's end (0 when caught up)",
}
BINLOG_GAUGES = ("exchange_node_binlog_lag_bytes", "exchange_node_binlog_lag_seconds")


class NodeState(Collector):
    """The node's state gauges, read from its store and its source at scrape time.

    ``acknowledged()`` gives the node notification id the hub holds (as the
    shipper and the offline fallback know it); ``open_source()`` opens a
    short-lived source for the pending changes and the slot's WAL (the
    capture thread's own connection is not shared).  A figure that cannot be
    read is left out of the scrape (logged once), never failing it."""

    def __init__(self, recorder: NodeRecorder, acknowledged: Callable[[], int] | None = None,
                 open_source: Callable[[], CaptureSource] | None = None,
                 clock: Callable[[], float] = time.time):
        self.recorder = recorder
        self.acknowledged = acknowledged or (lambda: recorder.position(HUB_TRACKING))
        self.open_source = open_source
        self.clock = clock
        self.reads = ScrapeReads("node metrics")

    def describe(self) -> list[GaugeMetricFamily]:
        """The families (without samples), so registering reads nothing."""
        return [GaugeMetricFamily(name, documentation) for name, documentation in STATE.items()
                if name not in BINLOG_GAUGES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        source_position = self.reads.read("the stored source position", lambda: self.recorder.position(SOURCE_TRACKING))
        if source_position is not None:
            yield _gauge("exchange_node_source_position", source_position)
        acknowledged = self.reads.read("the hub's position", self.acknowledged)
        if acknowledged is not None:
            yield _gauge("exchange_node_hub_position", acknowledged)
            backlog = self.reads.read("the backlog", lambda: self._backlog(acknowledged))
            if backlog is not None:
                yield _gauge("exchange_node_backlog_events", backlog[0])
                yield _gauge("exchange_node_backlog_seconds", backlog[1])
        open_source = self.open_source
        if open_source is not None and source_position is not None:
            source = self.reads.read("the source", lambda: _source_figures(open_source, source_position))
            if source is not None:
                yield _gauge("exchange_node_source_pending_changes", source[0])
                yield _gauge("exchange_node_slot_retained_wal_bytes", source[1])
                for name, value in zip(BINLOG_GAUGES, source[2]):
                    yield _gauge(name, value)

    def _backlog(self, acknowledged: int) -> tuple[int, float]:
        """Events after ``acknowledged`` and the age of the oldest one's source commit (0 when none)."""
        events = max(0, (self.recorder.max_notification_id() or 0) - acknowledged)
        oldest = self.recorder.read(acknowledged, 1) if events else []
        commit = commit_timestamp(oldest[0].state) if oldest else None
        return events, max(0.0, self.clock() - commit) if commit is not None else 0.0


def _source_figures(open_source: Callable[[], CaptureSource], position: int) -> tuple[int, int, tuple]:
    """Changes pending after ``position``, the WAL a replication slot retains (0 without one) and, for
    binlog sources, how far capture is behind the binlog (bytes, seconds; empty for other sources)."""
    source = open_source()
    try:
        pending = source.pending(position)
        retained = getattr(source, "slot_retained_wal_bytes", lambda: 0)()
        lag = source.binlog_lag(position) if hasattr(source, "binlog_lag") else ()
    finally:
        source.close()
    return pending, retained, lag


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, STATE[name], value=value)
