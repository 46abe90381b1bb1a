"""The node's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from adapters.files.metrics import DROP_FILES_REFUSED, DROP_FILES_TAKEN  # noqa: F401 - the node's metrics in one place
from exchange.common.metrics import ERRORS, serve  # noqa: F401

CHANGES_CAPTURED = Counter(
    "exchange_node_changes_captured_total", "Source changes read from the change stream", ["op"]
)
EVENTS_STORED = Counter("exchange_node_events_stored_total", "Record events written to the node's event store")
EVENTS_SHIPPED = Counter("exchange_node_events_shipped_total", "Events sent to the hub (re-sends included)")
EVENTS_ACKNOWLEDGED = Counter(
    "exchange_node_events_acknowledged_total", "Events the hub has confirmed as durably stored"
)
BACKLOG_EVENTS = Gauge("exchange_node_backlog_events", "Events stored at the node and not yet acknowledged by the hub")
BACKLOG_SECONDS = Gauge(
    "exchange_node_backlog_seconds", "Age of the oldest unacknowledged event's source commit (0 when caught up)"
)
SOURCE_PENDING = Gauge("exchange_node_source_pending_changes", "Source changes not yet stored at the node")
HUB_CONNECTED = Gauge("exchange_node_hub_connected", "1 while the publish stream to the hub is open")
STORE_BATCH_SECONDS = Histogram(
    "exchange_node_store_batch_duration_seconds",
    "Time to store one batch of captured changes (one event-store transaction)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SOURCE_POSITION = Gauge("exchange_node_source_position", "Source position durably stored at the node")
SLOT_RETAINED_WAL = Gauge(
    "exchange_node_slot_retained_wal_bytes",
    "WAL the source PostgreSQL keeps for the node's logical replication slot (0 for other sources)",
)
INVALID_IDENTIFIERS = Counter(
    "exchange_node_invalid_identifiers_total",
    "Captured values of declared identifier columns with an invalid check character (still captured)",
    ["resource", "kind"],
)
HUB_POSITION = Gauge("exchange_node_hub_position", "Node notification id acknowledged by the hub")

OFFLINE_FALLBACK_ACTIVE = Gauge(
    "exchange_node_offline_fallback_active", "1 while the node ships by offline bundles because the hub is unreachable"
)
BUNDLES_UPLOADED = Counter("exchange_node_bundles_uploaded_total", "Offline bundles uploaded to the SFTP server")
BUNDLE_BYTES_UPLOADED = Counter(
    "exchange_node_bundle_bytes_uploaded_total", "Bytes of offline bundles sent to the SFTP server (resumed parts once)"
)
