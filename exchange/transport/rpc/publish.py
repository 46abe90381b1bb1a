"""Publishing a notification log to a hub: the Publish stream, acknowledgements, resume and failover.

A publisher sends a Hello naming the agency, learns the hub's durable
position from the answer, and streams the log after it, keeping at most
``window`` batches of ``batch_size`` events (``batch_bytes`` at most) in
flight, so memory stays bounded whatever the backlog.  On any failure it
reconnects with exponential backoff and resumes from the position the hub
reports; with several hubs (a HubList), a hub that stops answering is left
for the next one that is SERVING, at once.  Delivery is at-least-once on the
wire; the hub makes it exactly-once.  A node's shipper (node/shipper.py) and
a district hub's forwarder (hub/upstream.py) say where the log comes from.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import grpc
from eventsourcing.persistence import Notification

from exchange.common.stall import Watchdog
from exchange.transport.rpc import hubs
from exchange.transport.rpc.channel import open_channel
from exchange.transport.rpc.hubs import HubList
from exchange.transport.rpc.tls import TLSError
from exchange.transport.wire import to_wire
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class PublishMetrics:
    """Where a publisher counts: gauge ``connected`` (set 1/0), counters ``shipped`` and
    ``acknowledged`` (inc by events), and ``error(kind)`` for each failed session."""

    connected: Any
    shipped: Any
    acknowledged: Any
    error: Callable[[str], None]


class LogPublisher:
    """Publishes one agency's notification log to a hub until stopped.

    Subclasses supply ``read`` and ``head`` and may refine what is sent
    (``outgoing``), how an idle publisher waits (``wait_for_events``) and what
    happens when the hub acknowledges (``held``) or is caught up (``settle``)."""

    who = "publisher"  # in log messages: "hub refused this <who>'s identity"
    failure_kind = "publisher"  # the error kind counted for an unexpected failure
    batch_setting = "batch_size"  # the setting that bounds a batch, named when a message is too large

    def __init__(self, agency: str, hub_list: HubList, cfg: Any, metrics: PublishMetrics, *, batch_size: int = 500,
                 window: int = 4, reconnect_max: float = 10.0, batch_bytes: int = 4 * 1024 * 1024,
                 watchdog: Watchdog | None = None, version: str = "0.1.0", acknowledged: int = 0):
        self.agency = agency
        self.hubs = hub_list
        self.cfg = cfg
        self.publish_metrics = metrics
        self.batch_size = batch_size
        self.window = max(1, window)
        self.reconnect_max = reconnect_max
        self.batch_bytes = batch_bytes
        self.watchdog = watchdog
        self.version = version
        self.stopping = threading.Event()
        self.acknowledged = acknowledged  # the position the hub last reported
        # time.monotonic() since when the hub has not answered (None while connected).
        self.unreachable_since: float | None = time.monotonic()

    @property
    def address(self) -> str:
        """The hub in use."""
        return self.hubs.current

    # What subclasses say.

    def read(self, after: int, limit: int) -> Sequence[Notification]:
        """Up to ``limit`` notifications of the log after id ``after``."""
        raise NotImplementedError

    def head(self) -> int:
        """The latest notification id of the log (0 when empty)."""
        raise NotImplementedError

    def outgoing(self, notifications: Sequence[Notification]) -> Sequence[Notification]:
        """The part of ``notifications`` that leaves (all of them by default)."""
        return notifications

    def wait_for_events(self, sent: int) -> None:
        """Wait a little for the log to grow beyond ``sent`` (returns early when stopping)."""
        self.stopping.wait(0.5)

    def held(self, position: int) -> None:
        """The hub acknowledged everything up to ``position`` (beyond what it had before)."""

    def kept_below(self, position: int) -> bool:
        """True when the events after ``position`` up to the last acknowledgement were never to be sent."""
        return False

    def settle(self, sent: int) -> None:
        """Everything sent is acknowledged and the log was read up to ``sent``."""

    # The loop.

    def run(self) -> None:
        """Publish until ``stop()``; never raises."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                self._session()
                delay = 0.2
            except grpc.RpcError as e:
                delay = self._after_refusal(e, delay)
            except TLSError as e:
                self.publish_metrics.error("tls")
                log.error("cannot connect to the hub: %s", e, extra={"hub": self.address, "agency": self.agency})
                delay = self.reconnect_max
            except Exception:
                self.publish_metrics.error(self.failure_kind)
                log.exception("%s of agency %s failed; retrying in %.1fs", self.who, self.agency, delay)
            finally:
                self.publish_metrics.connected.set(0)
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
            self.stopping.wait(delay)
            delay = min(max(delay, 0.1) * 2, self.reconnect_max)

    def stop(self) -> None:
        self.stopping.set()

    def _after_refusal(self, e: grpc.RpcError, delay: float) -> float:
        """Log and count a failed session; the delay before the next one."""
        code = e.code() if hasattr(e, "code") else None
        kind = code.name.lower() if code else "rpc"
        self.publish_metrics.error(kind)
        failed = self.address
        extra = {"hub": self.address, "agency": self.agency}
        if hubs.unreachable(e) and self.hubs.fail_over(failed) not in (None, failed):
            log.warning("hub %s unavailable (%s); shipping to hub %s now, from the position it reports",
                        failed, kind, self.address, extra={**extra, "failed": failed})
            return 0.0
        if code == grpc.StatusCode.ABORTED:  # another publisher of the agency stored events first
            log.warning("hub %s: %s", self.address, e.details(), extra=extra)
            return 0.2
        if code == grpc.StatusCode.FAILED_PRECONDITION or code == grpc.StatusCode.INVALID_ARGUMENT:
            log.error("hub refused events: %s", e.details(), extra=extra)
            return self.reconnect_max
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            log.error("hub refused this %s's identity: %s", self.who, e.details(), extra=extra)
            return self.reconnect_max
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            log.error("hub refused a message: %s; lower %s", e.details(), self.batch_setting, extra=extra)
            return self.reconnect_max
        log.warning("hub %s unavailable (%s: %s); retrying in %.1fs", self.address, kind,
                    e.details() if hasattr(e, "details") else e, delay, extra=extra)
        return delay

    def _session(self) -> None:
        """One connection: hello, then batches while the stream lasts."""
        requests: queue.Queue = queue.Queue(maxsize=self.window + 2)
        with open_channel(self.address, self.cfg) as channel:
            stub = pb_grpc.ExchangeStub(channel)
            requests.put(pb.PublishRequest(hello=pb.Hello(agency=self.agency, node_version=self.version)))
            responses = stub.Publish(iter(requests.get, _END))
            try:
                self._stream(requests, responses)
            finally:
                requests.put(_END)
                responses.cancel()

    def _stream(self, requests: queue.Queue, responses) -> None:
        hub_position = next(responses).position
        self.publish_metrics.connected.set(1)
        self.unreachable_since = None
        log.info("connected to hub %s; hub holds events of agency %s up to %d", self.address, self.agency,
                 hub_position, extra={"hub": self.address, "agency": self.agency})
        self._acknowledge(hub_position)
        sent = shipped = hub_position  # read up to / last event sent: they differ by events never sent
        in_flight: deque[int] = deque()
        while not self.stopping.is_set():
            while len(in_flight) < self.window:
                notifications = within_bytes(self.read(sent, self.batch_size), self.batch_bytes)
                if not notifications:
                    break
                sent = notifications[-1].id
                notifications = self.outgoing(notifications)
                if not notifications:
                    continue
                head = self.head()
                if head == sent:  # the events after this batch are never sent: the hub is caught up with it
                    head = notifications[-1].id
                requests.put(pb.PublishRequest(batch=to_wire(notifications, after=shipped, head=head)))
                self.publish_metrics.shipped.inc(len(notifications))
                shipped = notifications[-1].id
                in_flight.append(shipped)
            if not in_flight:
                self.settle(sent)
                if responses.done():  # the stream ended while idle (the hub died): its error, raised now
                    next(responses, None)
                    return
                self.wait_for_events(sent)
                continue
            waiting = f"the hub {self.address} to store events up to notification id {in_flight[0]}"
            with self.watchdog.step("ship", waiting) if self.watchdog else nullcontext():
                answer = next(responses)
            while in_flight and in_flight[0] <= answer.position:
                in_flight.popleft()
            self._acknowledge(answer.position)

    def _acknowledge(self, position: int) -> None:
        if position < self.acknowledged and self.kept_below(position):
            pass  # the events after it were never to be sent; the hub holds everything before them
        elif position < self.acknowledged:
            log.warning("hub reports position %d of agency %s, below the %d it acknowledged before; "
                        "re-sending from %d", position, self.agency, self.acknowledged, position,
                        extra={"hub": self.address, "agency": self.agency})
            self.acknowledged = position
        elif position > self.acknowledged:
            self.publish_metrics.acknowledged.inc(position - self.acknowledged)
            self.acknowledged = position
            self.held(position)


def within_bytes(notifications: Sequence[Notification], limit: int) -> Sequence[Notification]:
    """The first of ``notifications`` whose states hold ``limit`` bytes at most (at least one)."""
    size = 0
    for i, n in enumerate(notifications):
        size += len(n.state)
        if i and size > limit:
            return notifications[:i]
    return notifications
