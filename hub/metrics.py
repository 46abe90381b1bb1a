"""The hub's Prometheus metrics."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from prometheus_client import Counter, Gauge, Histogram

EVENTS_STORED = Counter("exchange_hub_events_stored_total", "Events stored at the hub for the first time", ["agency"])
EVENTS_DUPLICATE = Counter(
    "exchange_hub_events_duplicate_total", "Re-sent events the hub already held and dropped", ["agency"]
)
BATCHES = Counter(
    "exchange_hub_batches_total", "Published batches by outcome (stored, duplicate or refused)", ["agency", "result"]
)
ERRORS = Counter("exchange_hub_errors_total", "Refused requests and failures by kind", ["kind"])
PUBLISHERS = Gauge("exchange_hub_publishers_connected", "Open publish streams", ["agency"])
POSITION = Gauge("exchange_hub_position", "Node notification id durably stored at the hub", ["agency"])
LAST_COMMIT = Gauge(
    "exchange_hub_last_commit_timestamp_seconds",
    "Source commit time of the latest event stored at the hub (Unix time)",
    ["agency"],
)
NODE_BACKLOG = Gauge(
    "exchange_hub_node_backlog_events",
    "Events the node held beyond the hub's position when it sent its latest batch",
    ["agency"],
)
SUBSCRIBERS = Gauge("exchange_hub_subscribers_connected", "Open subscribe streams", ["agency"])
EVENTS_DELIVERED = Counter("exchange_hub_events_delivered_total", "Events sent to subscribers", ["agency"])
BUNDLES_IMPORTED = Counter(
    "exchange_hub_bundles_imported_total", "Offline bundles verified and imported (including ones already held)",
    ["agency"],
)
BUNDLES_QUARANTINED = Counter(
    "exchange_hub_bundles_quarantined_total", "Offline bundles refused and moved to quarantine, by reason", ["reason"]
)
CATALOG_OVERDUE = Gauge(
    "exchange_hub_catalog_entries_overdue",
    "Catalog entries past their 2-working-day update deadline after a schema change, or their yearly review",
    ["agency"],
)
STORE_BATCH_SECONDS = Histogram(
    "exchange_hub_store_batch_duration_seconds",
    "Time to check and store one published batch (one event-store transaction)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def record_commit_time(agency: str, state: bytes) -> None:
    """Set the agency's last commit time from an event's serialised state."""
    timestamp = commit_timestamp(state)
    if timestamp is not None:
        LAST_COMMIT.labels(agency).set(timestamp)


def commit_timestamp(state: bytes) -> float | None:
    """The source commit time (Unix) in an event's serialised state, or None.

    The state is the JSON of a record event, whose ``commit_time`` is
    ``{"_type_": "datetime_iso", "_data_": ISO}`` or null.  States that are
    not such JSON (compressed, encrypted, other event kinds) give None.
    """
    try:
        commit_time = json.loads(state).get("commit_time")
        moment = datetime.fromisoformat(commit_time["_data_"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
