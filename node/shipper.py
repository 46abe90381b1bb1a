"""Shipper: streams the node's unacknowledged events to the hub.

It reads the node's notification log after the position the hub reports,
keeps at most ``window`` batches of ``batch_size`` events in flight (so
memory stays bounded whatever the backlog), and on any failure reconnects
with exponential backoff and resumes from the hub's durable position.  With
several hubs (``[hub] addresses``), a hub that stops answering is left for
the next one that is SERVING, at once (exchange.transport.rpc.hubs).
Delivery is at-least-once on the wire; the hub makes it exactly-once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from typing import Sequence

import grpc
from eventsourcing.persistence import IntegrityError, Notification, Tracking

from exchange.common.config import Config
from exchange.common.stall import Watchdog
from exchange.contracts.errors import OperationFailed
from exchange.store import NodeRecorder
from exchange.transport.rpc import hubs
from exchange.transport.rpc.channel import open_channel
from exchange.transport.rpc.hubs import HubList
from exchange.transport.rpc.tls import TLSError
from exchange.transport.wire import to_wire
from node.metrics import METRICS, NodeMetrics
from node.positions import HUB_TRACKING
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

NODE_VERSION = "0.1.0"
_END = object()


class HubRefused(OperationFailed):
    """The hub refused a batch; the message is the hub's reason."""


class Shipper:
    """Publishes the agency's events to the hub until stopped."""

    def __init__(self, agency: str, recorder: NodeRecorder, address: str | Sequence[str] | HubList, *, batch_size: int = 500,
                 window: int = 4, reconnect_max: float = 10.0, wake: threading.Event | None = None,
                 cfg: Config | None = None, metrics: NodeMetrics = METRICS, batch_bytes: int = 4 * 1024 * 1024,
                 watchdog: Watchdog | None = None):
        self.agency = agency
        self.batch_bytes = batch_bytes
        self.watchdog = watchdog or Watchdog(float("inf"), metrics.stalls)
        self.metrics = metrics
        self.recorder = recorder
        self.hubs = address if isinstance(address, HubList) else hubs.with_metrics(
            [address] if isinstance(address, str) else list(address), cfg, "publish")
        self.cfg = cfg
        self.batch_size = batch_size
        self.window = max(1, window)
        self.reconnect_max = reconnect_max
        self.wake = wake or threading.Event()
        self.stopping = threading.Event()
        self.acknowledged = recorder.position(HUB_TRACKING)
        # time.monotonic() since when the hub has not answered (None while connected); the offline fallback reads it.
        self.unreachable_since: float | None = time.monotonic()
        self.not_shared = frozenset(cfg.source.not_shared if cfg is not None else ())  # tables whose events stay here

    @property
    def address(self) -> str:
        """The hub in use."""
        return self.hubs.current

    def run(self) -> None:
        """Ship until ``stop()``; never raises."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                self._session()
                delay = 0.2
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                kind = code.name.lower() if code else "rpc"
                self.metrics.errors.labels(kind).inc()
                failed = self.address
                if hubs.unreachable(e) and self.hubs.fail_over(failed) not in (None, failed):
                    log.warning("hub %s unavailable (%s); shipping to hub %s now, from the position it reports",
                                failed, kind, self.address, extra={"hub": self.address, "failed": failed})
                    delay = 0.0
                elif code == grpc.StatusCode.ABORTED:  # another publisher of the agency stored events first
                    log.warning("hub %s: %s", self.address, e.details(), extra={"hub": self.address})
                    delay = 0.2
                elif code == grpc.StatusCode.FAILED_PRECONDITION or code == grpc.StatusCode.INVALID_ARGUMENT:
                    log.error("hub refused events: %s", e.details(), extra={"hub": self.address})
                    delay = self.reconnect_max
                elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    log.error("hub refused this node's identity: %s", e.details(), extra={"hub": self.address})
                    delay = self.reconnect_max
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    log.error("hub refused a message: %s; lower [hub] batch_size", e.details(), extra={"hub": self.address})
                    delay = self.reconnect_max
                else:
                    log.warning("hub %s unavailable (%s: %s); retrying in %.1fs", self.address, kind,
                                e.details() if hasattr(e, "details") else e, delay)
            except TLSError as e:
                self.metrics.errors.labels("tls").inc()
                log.error("cannot connect to the hub: %s", e, extra={"hub": self.address})
                delay = self.reconnect_max
            except Exception:
                self.metrics.errors.labels("shipper").inc()
                log.exception("shipper failed; retrying in %.1fs", delay)
            finally:
                self.metrics.hub_connected.set(0)
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
            self.stopping.wait(delay)
            delay = min(max(delay, 0.1) * 2, self.reconnect_max)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _session(self) -> None:
        """One connection: hello, then batches while the stream lasts."""
        requests: queue.Queue = queue.Queue(maxsize=self.window + 2)
        with open_channel(self.address, self.cfg) as channel:
            stub = pb_grpc.ExchangeStub(channel)
            requests.put(pb.PublishRequest(hello=pb.Hello(agency=self.agency, node_version=NODE_VERSION)))
            responses = stub.Publish(iter(requests.get, _END))
            try:
                self._stream(requests, responses)
            finally:
                requests.put(_END)
                responses.cancel()

    def _stream(self, requests: queue.Queue, responses) -> None:
        hub_position = next(responses).position
        self.metrics.hub_connected.set(1)
        self.unreachable_since = None
        log.info("connected to hub %s; hub holds events up to %d", self.address, hub_position)
        self._acknowledge(hub_position)
        sent = shipped = hub_position  # read up to / last event sent: they differ by events kept at the node
        in_flight: deque[int] = deque()
        while not self.stopping.is_set():
            while len(in_flight) < self.window:
                notifications = within_bytes(self.recorder.read(sent, self.batch_size), self.batch_bytes)
                if not notifications:
                    break
                sent = notifications[-1].id
                notifications = shareable(notifications, self.not_shared)
                if not notifications:
                    continue
                head = self.recorder.max_notification_id() or 0
                if head == sent:  # the events after this batch stay at the node: the hub is caught up with it
                    head = notifications[-1].id
                requests.put(pb.PublishRequest(batch=to_wire(notifications, after=shipped, head=head)))
                self.metrics.events_shipped.inc(len(notifications))
                shipped = notifications[-1].id
                in_flight.append(shipped)
            if not in_flight:
                self._settle(sent)
                if responses.done():  # the stream ended while idle (the hub died): its error, raised now
                    next(responses, None)
                    return
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            with self.watchdog.step("ship", f"the hub {self.address} to store events up to node notification id "
                                            f"{in_flight[0]}"):
                answer = next(responses)
            while in_flight and in_flight[0] <= answer.position:
                in_flight.popleft()
            self._acknowledge(answer.position)

    def _settle(self, sent: int) -> None:
        """Everything shipped is acknowledged and the events after it up to ``sent`` stay at the node
        (``[source] not_shared``): count them as settled, so the node is caught up and its source may
        forget them.  The hub's own position stays at the last event it holds."""
        if sent > self.acknowledged:
            self.acknowledged = sent
            if sent > self.recorder.position(HUB_TRACKING):
                try:
                    self.recorder.insert_tracking(Tracking(HUB_TRACKING, sent))
                except IntegrityError:
                    pass  # the offline fallback settled the same events first

    def _acknowledge(self, position: int) -> None:
        if position < self.acknowledged and kept_at_node(self.recorder, position, self.acknowledged, self.not_shared):
            pass  # the node settled events it keeps; the hub holds everything before them
        elif position < self.acknowledged:
            log.warning("hub reports position %d, below the %d it acknowledged before; re-sending from %d",
                        position, self.acknowledged, position)
            self.acknowledged = position
        elif position > self.acknowledged:
            self.metrics.events_acknowledged.inc(position - self.acknowledged)
            self.acknowledged = position
            if position > self.recorder.position(HUB_TRACKING):
                try:
                    self.recorder.insert_tracking(Tracking(HUB_TRACKING, position))
                except IntegrityError:
                    pass  # the offline fallback recorded the same acknowledgement first


def within_bytes(notifications: Sequence[Notification], limit: int) -> Sequence[Notification]:
    """The first of ``notifications`` whose states hold ``limit`` bytes at most (at least one)."""
    size = 0
    for i, n in enumerate(notifications):
        size += len(n.state)
        if i and size > limit:
            return notifications[:i]
    return notifications


def shareable(notifications: Sequence[Notification], not_shared: frozenset[str]) -> Sequence[Notification]:
    """The events that may leave the node: all but those of the ``[source] not_shared`` tables (Art. 8)."""
    if not not_shared:
        return notifications
    return [n for n in notifications if json.loads(n.state).get("resource") not in not_shared]


def kept_at_node(recorder: NodeRecorder, after: int, upto: int, not_shared: frozenset[str]) -> bool:
    """True when every event after ``after`` up to ``upto`` is one the node keeps (``[source] not_shared``)."""
    while after < upto and not_shared:
        events = [n for n in recorder.read(after, 500) if n.id <= upto]
        if not events or shareable(events, not_shared):
            return False
        after = events[-1].id
    return after >= upto

