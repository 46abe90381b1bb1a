"""Shipper: streams the node's unacknowledged events to the hub.

It publishes the node's notification log with the Publish protocol
(exchange.transport.rpc.publish: a bounded window of batches in flight,
reconnects with backoff, resume from the hub's durable position, failover
across ``[hub] addresses``).  What is the node's own: the events of
``[source] not_shared`` tables stay here (Art. 8), the hub's acknowledgement
is recorded in the node's store (tracking ``hub``) so the source may forget
what the hub holds, and capture wakes it when it stored events.
"""

from __future__ import annotations

import threading
from typing import Sequence

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from exchange.common.config import Config
from exchange.common.stall import Watchdog
from exchange.contracts.envelope import header
from exchange.store import NodeRecorder
from exchange.transport.rpc import hubs
from exchange.transport.rpc.hubs import HubList
from exchange.transport.rpc.publish import LogPublisher, PublishMetrics, within_bytes
from node.metrics import METRICS, NodeMetrics
from node.positions import HUB_TRACKING

NODE_VERSION = "0.1.0"
__all__ = ["Shipper", "kept_at_node", "shareable", "within_bytes"]


class Shipper(LogPublisher):
    """Publishes the agency's events to the hub until stopped."""

    who = "node"
    failure_kind = "shipper"
    batch_setting = "[hub] batch_size"

    def __init__(self, agency: str, recorder: NodeRecorder, address: str | Sequence[str] | HubList, *, batch_size: int = 500,
                 window: int = 4, reconnect_max: float = 10.0, wake: threading.Event | None = None,
                 cfg: Config | None = None, metrics: NodeMetrics = METRICS, batch_bytes: int = 4 * 1024 * 1024,
                 watchdog: Watchdog | None = None):
        hub_list = address if isinstance(address, HubList) else hubs.with_metrics(
            [address] if isinstance(address, str) else list(address), cfg, "publish")
        counted = PublishMetrics(metrics.hub_connected, metrics.events_shipped, metrics.events_acknowledged,
                                 lambda kind: metrics.errors.labels(kind).inc())
        super().__init__(agency, hub_list, cfg, counted, batch_size=batch_size, window=window,
                         reconnect_max=reconnect_max, batch_bytes=batch_bytes,
                         watchdog=watchdog or Watchdog(float("inf"), metrics.stalls), version=NODE_VERSION,
                         acknowledged=recorder.position(HUB_TRACKING))
        self.metrics = metrics
        self.recorder = recorder
        self.wake = wake or threading.Event()
        self.not_shared = frozenset(cfg.source.not_shared if cfg is not None else ())  # tables whose events stay here

    def stop(self) -> None:
        super().stop()
        self.wake.set()

    def read(self, after: int, limit: int) -> Sequence[Notification]:
        return self.recorder.read(after, limit)

    def head(self) -> int:
        return self.recorder.max_notification_id() or 0

    def outgoing(self, notifications: Sequence[Notification]) -> Sequence[Notification]:
        return shareable(notifications, self.not_shared)

    def wait_for_events(self, sent: int) -> None:
        self.wake.wait(0.5)
        self.wake.clear()

    def kept_below(self, position: int) -> bool:
        return kept_at_node(self.recorder, position, self.acknowledged, self.not_shared)

    def held(self, position: int) -> None:
        self._track(position)

    def settle(self, sent: int) -> None:
        """Everything shipped is acknowledged and the events after it up to ``sent`` stay at the node
        (``[source] not_shared``): count them as settled, so the node is caught up and its source may
        forget them.  The hub's own position stays at the last event it holds."""
        if sent > self.acknowledged:
            self.acknowledged = sent
            self._track(sent)

    def _track(self, position: int) -> None:
        if position > self.recorder.position(HUB_TRACKING):
            try:
                self.recorder.insert_tracking(Tracking(HUB_TRACKING, position))
            except IntegrityError:
                pass  # the offline fallback recorded the same position first


def shareable(notifications: Sequence[Notification], not_shared: frozenset[str]) -> Sequence[Notification]:
    """The events that may leave the node: all but those of the ``[source] not_shared`` tables (Art. 8)."""
    if not not_shared:
        return notifications
    return [n for n in notifications if header(n.state).resource not in not_shared]


def kept_at_node(recorder: NodeRecorder, after: int, upto: int, not_shared: frozenset[str]) -> bool:
    """True when every event after ``after`` up to ``upto`` is one the node keeps (``[source] not_shared``)."""
    while after < upto and not_shared:
        events = [n for n in recorder.read(after, 500) if n.id <= upto]
        if not events or shareable(events, not_shared):
            return False
        after = events[-1].id
    return after >= upto
