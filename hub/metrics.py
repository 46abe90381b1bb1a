"""The hub's Prometheus metrics.

Counters, histograms and the gauges that follow events live in
``HubMetrics`` and are updated where the events happen.  Per-agency state
(positions, connected publishers, newest commit, the node's backlog, lag,
clock skew, overdue catalog entries and share requests) is read when
Prometheus scrapes, by ``HubState``.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exchange.common.metrics import BATCH_SECONDS_BUCKETS, ScrapeReads
from hub.ingest import Ingest
from hub.status import StatusBoard, lag_seconds, node_backlog


class HubMetrics:
    """The hub's metrics that events update, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.events_stored = Counter("exchange_hub_events_stored_total", "Events stored at the hub for the first time",
                                     ["agency"], registry=registry)
        self.events_duplicate = Counter("exchange_hub_events_duplicate_total",
                                        "Re-sent events the hub already held and dropped", ["agency"], registry=registry)
        self.batches = Counter("exchange_hub_batches_total",
                               "Published batches by outcome (stored, duplicate or refused)", ["agency", "result"],
                               registry=registry)
        self.errors = Counter("exchange_hub_errors_total", "Refused requests and failures by kind", ["kind"],
                              registry=registry)
        self.subscribers = Gauge("exchange_hub_subscribers_connected", "Open subscribe streams", ["agency"],
                                 registry=registry)
        self.events_delivered = Counter("exchange_hub_events_delivered_total", "Events sent to subscribers",
                                        ["agency"], registry=registry)
        self.bundles_imported = Counter(
            "exchange_hub_bundles_imported_total",
            "Offline bundles verified and imported (including ones already held)", ["agency"], registry=registry)
        self.bundles_quarantined = Counter(
            "exchange_hub_bundles_quarantined_total", "Offline bundles refused and moved to quarantine, by reason",
            ["reason"], registry=registry)
        self.audit_chain_valid = Gauge(
            "exchange_hub_audit_chain_valid", "1 while the audit log's hash chain verifies, 0 when it does not",
            registry=registry)
        self.stalls = Counter("exchange_hub_stalls_total",
                              "Ingest steps that made no progress for [watchdog] stall_seconds", ["step"],
                              registry=registry)
        self.store_batch_seconds = Histogram(
            "exchange_hub_store_batch_duration_seconds",
            "Time to check and store one published batch (one event-store transaction)",
            buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.events_shared = Counter(
            "exchange_hub_shared_events_total",
            "Projected events delivered to consumers, by provider, consumer and mode (stream or bundle)",
            ["agency", "consumer", "mode"], registry=registry)
        self.share_refused = Counter(
            "exchange_hub_share_refusals_total",
            "Consumer subscriptions and exports refused or ended for lack of entitlement, by provider",
            ["agency"], registry=registry)
        self.current_state_behind = Gauge(
            "exchange_hub_current_state_behind_events",
            "Events of the agency's hub log not yet folded into the current state that lookups answer from",
            ["agency"], registry=registry)
        self.upstream_connected = Gauge(
            "exchange_hub_upstream_connected", "1 while the agency's log has an open publish stream to the city hub",
            ["agency"], registry=registry)
        self.upstream_forwarded = Counter(
            "exchange_hub_upstream_events_forwarded_total", "Events sent to the city hub (re-sends included)",
            ["agency"], registry=registry)
        self.upstream_acknowledged = Counter(
            "exchange_hub_upstream_events_acknowledged_total", "Events the city hub acknowledged as held",
            ["agency"], registry=registry)
        self.upstream_errors = Counter(
            "exchange_hub_upstream_errors_total", "Failed or refused publish streams to the city hub, by kind",
            ["agency", "kind"], registry=registry)
        self.upstream_failovers = Counter(
            "exchange_hub_upstream_failovers_total", "Moves to another of the [upstream] addresses", registry=registry)


METRICS = HubMetrics()  # the process's metrics, in the global registry

STATE = {  # the per-agency gauges HubState exports: name -> help
    "exchange_hub_position": "Node notification id durably stored at the hub",
    "exchange_hub_publishers_connected": "Open publish streams",
    "exchange_hub_last_commit_timestamp_seconds": "Source commit time of the latest event stored at the hub (Unix time)",
    "exchange_hub_node_backlog_events": "Events the node held beyond the hub's position when it sent its latest batch",
    "exchange_hub_sync_lag_seconds":
        "Age of the oldest event the node holds and the hub does not, as the hub knows it (0 when caught up)",
    "exchange_hub_clock_skew_seconds":
        "How far the agency's source clock is ahead of the hub's, seen in its latest batch (0 when not)",
    "exchange_hub_catalog_entries_overdue":
        "Catalog entries past their 2-working-day update deadline after a schema change, or their yearly review",
    "exchange_hub_share_requests_overdue": "Share requests without an answer after 10 working days, by provider",
}


class HubState(Collector):
    """Per-agency state gauges, read at scrape time from the store, the status board and the workflows.

    ``catalog_overdue()`` and ``share_overdue()`` count overdue catalog
    entries and share requests per agency.  A figure that cannot be read is
    left out of the scrape (logged once), never failing it."""

    def __init__(self, ingest: Ingest, board: StatusBoard,
                 catalog_overdue: Callable[[], dict[str, int] | None] | None = None,
                 share_overdue: Callable[[], dict[str, int]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.ingest = ingest
        self.board = board
        self.catalog_overdue = catalog_overdue
        self.share_overdue = share_overdue
        self.clock = clock
        self.reads = ScrapeReads("hub metrics")

    def describe(self) -> list[GaugeMetricFamily]:
        """The families (without samples), so registering reads nothing."""
        return [_family(name) for name in STATE]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        live = self.board.snapshot()
        agencies = self.reads.read("the store's agencies", self.ingest.store.agencies)
        agencies = sorted(set(agencies or ()) | set(live))
        position = _family("exchange_hub_position")
        publishers = _family("exchange_hub_publishers_connected")
        commit = _family("exchange_hub_last_commit_timestamp_seconds")
        backlog = _family("exchange_hub_node_backlog_events")
        lag = _family("exchange_hub_sync_lag_seconds")
        skew = _family("exchange_hub_clock_skew_seconds")
        now = self.clock()
        for agency in agencies:
            known = live.get(agency)
            publishers.add_metric([agency], known.publishers if known else 0)
            stored = self.reads.read(f"the position of agency {agency}", lambda: self.ingest.position(agency))
            if stored is not None:
                position.add_metric([agency], stored)
            newest = self.reads.read(f"the newest event of agency {agency}", lambda: self.ingest.newest_commit(agency))
            if newest is not None:
                commit.add_metric([agency], newest)
            if known is None:
                continue
            behind = node_backlog(known, stored) if stored is not None else None
            if behind is not None:
                backlog.add_metric([agency], behind)
                age = lag_seconds(behind, newest, known.clock_ahead_seconds, now)
                if age is not None:
                    lag.add_metric([agency], age)
            if known.clock_ahead_seconds is not None:
                skew.add_metric([agency], known.clock_ahead_seconds)
        yield from (position, publishers, commit, backlog, lag, skew)
        yield from self._overdue("exchange_hub_catalog_entries_overdue", "overdue catalog entries",
                                 self.catalog_overdue)
        yield from self._overdue("exchange_hub_share_requests_overdue", "overdue share requests", self.share_overdue)

    def _overdue(self, name: str, what: str,
                 count: Callable[[], dict[str, int] | None] | None) -> Iterable[GaugeMetricFamily]:
        counts = self.reads.read(what, count) if count is not None else None
        if counts is not None:
            family = _family(name)
            for agency, value in sorted(counts.items()):
                family.add_metric([agency], value)
            yield family


def _family(name: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, STATE[name], labels=["agency"])
