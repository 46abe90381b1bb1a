"""Metrics of sharing: overdue share requests and events delivered to consumers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS_OVERDUE = Gauge(
    "exchange_hub_share_requests_overdue", "Share requests without an answer after 10 working days, by provider",
    ["agency"],
)
EVENTS_SHARED = Counter(
    "exchange_hub_shared_events_total",
    "Projected events delivered to consumers, by provider, consumer and mode (stream or bundle)",
    ["agency", "consumer", "mode"],
)
SHARE_REFUSED = Counter(
    "exchange_hub_share_refusals_total",
    "Consumer subscriptions and exports refused or ended for lack of entitlement, by provider",
    ["agency"],
)
