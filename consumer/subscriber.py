"""``exchange node subscribe``: a consumer agency keeps a replica of the resources it is entitled to.

One thread per configured ``PROVIDER/RESOURCE`` subscribes at the hub from
the replica's checkpoint and applies each batch through the replay path
(consumer/replica.py), the hub position reached recorded in the same
transaction: a kill -9 at any point resumes without gap or duplicate.
Each applied batch is acknowledged with a signed receipt (consumer/receipts.py).

When the hub ends a subscription with PERMISSION_DENIED (the approval was
revoked or expired, the resource is no longer shared) the resource is
withdrawn from the replica and the thread asks again after
``hub.reconnect_max`` seconds; when the hub stops answering, the threads move
to the next SERVING hub of ``[hub] addresses`` and resume from the replica's
checkpoint (exchange.transport.rpc.hubs); when the entitled data items or the approved
row filter differ from those the replica holds, the resource is withdrawn
and copied anew.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

import grpc
from prometheus_client import Counter, Gauge

from consumer.receipts import Receipts, batch_parts
from consumer.replica import Projection, Replica, projection
from exchange.common import metrics
from exchange.common.config import Config
from exchange.contracts.agency import check_agency
from exchange.contracts.errors import InvalidInput, OperationFailed
from exchange.contracts.events import make_mapper
from exchange.transport.rpc import hubs
from exchange.transport.rpc.channel import open_channel
from exchange.transport.rpc.hubs import HubList
from exchange.transport.wire import from_wire
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

EVENTS_APPLIED = Counter("exchange_node_replica_events_applied_total",
                         "Events of other agencies applied to the consumer's replica", ["provider", "resource"])
REPLICA_POSITION = Gauge("exchange_node_replica_position",
                         "Hub notification id up to which a resource is applied to the replica", ["provider", "resource"])
ENTITLED = Gauge("exchange_node_replica_entitled",
                 "1 while the hub delivers the resource to this consumer, 0 while it refuses", ["provider", "resource"])


@dataclass(frozen=True)
class Wanted:
    provider: str
    resource: str


class Resubscribe(OperationFailed):
    """The replica was reset for new data items: subscribe again from the start."""


def wanted(cfg: Config) -> list[Wanted]:
    """The ``[consumer] resources`` setting as (provider, resource) pairs; refuses ambiguous ones."""
    found, tables = [], {}
    for text in cfg.consumer.resources:
        provider, slash, resource = str(text).partition("/")
        if not slash or not resource:
            raise InvalidInput(f"[consumer] resources: {text!r} is not PROVIDER/RESOURCE")
        check_agency(provider)
        if resource in tables and tables[resource] != provider:
            raise InvalidInput(f"[consumer] resources: {tables[resource]}/{resource} and {provider}/{resource} would "
                             "share one replica table; use a replica database per provider")
        tables[resource] = provider
        found.append(Wanted(provider, resource))
    if not found:
        raise InvalidInput("[consumer] resources lists nothing to receive")
    return found


class Subscription:
    """Keeps one resource of the replica current until stopped."""

    def __init__(self, cfg: Config, want: Wanted, stopping: threading.Event, hub_list: HubList | None = None):
        self.cfg = cfg
        self.hubs = hub_list or HubList(hubs.check_all(cfg), cfg, client="subscribe")
        self.want = want
        self.stopping = stopping
        self.mapper = make_mapper()
        self.receipts = Receipts.from_config(cfg)
        self.call = None

    def run(self) -> None:
        """Subscribe, apply, reconnect; never raises."""
        delay = 0.2
        labels = (self.want.provider, self.want.resource)
        while not self.stopping.is_set():
            replica = Replica(self.cfg.consumer.replica)
            failed = self.hubs.current
            try:
                self._session(replica)
                delay = 0.2
            except Resubscribe:
                delay = 0.0
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code == grpc.StatusCode.PERMISSION_DENIED:
                    ENTITLED.labels(*labels).set(0)
                    replica.withdraw(*labels)
                    REPLICA_POSITION.labels(*labels).set(0)
                    log.warning("hub refuses %s/%s: %s; withdrawn from the replica, asking again in %.0fs",
                                *labels, e.details(), self.cfg.hub.reconnect_max,
                                extra={"provider": labels[0], "resource": labels[1]})
                    delay = self.cfg.hub.reconnect_max
                elif hubs.unreachable(e) and self.hubs.fail_over(failed) not in (None, failed):
                    log.warning("hub %s unavailable; %s/%s continues at hub %s from the replica's checkpoint",
                                failed, *labels, self.hubs.current, extra={"hub": self.hubs.current})
                    delay = 0.0
                elif code == grpc.StatusCode.ABORTED:
                    log.info("hub: %s", e.details())
                    delay = 0.0
                elif code != grpc.StatusCode.CANCELLED or not self.stopping.is_set():
                    metrics.ERRORS.labels(code.name.lower() if code else "rpc").inc()
                    log.warning("subscription to %s/%s failed (%s); retrying in %.1fs", *labels,
                                e.details() if hasattr(e, "details") else e, delay)
            except Exception:
                metrics.ERRORS.labels("replica").inc()
                log.exception("applying %s/%s to the replica failed; retrying in %.1fs", *labels, delay)
            finally:
                replica.close()
            self.stopping.wait(delay)
            delay = min(max(delay, 0.2) * 2, self.cfg.hub.reconnect_max)

    def stop(self) -> None:
        call = self.call
        if call is not None:
            call.cancel()

    def _session(self, replica: Replica) -> None:
        provider, resource = self.want.provider, self.want.resource
        after = replica.position(provider, resource)
        request = pb.SubscribeRequest(agency=provider, consumer=self.cfg.agency, resource=resource,
                                      purpose=self.cfg.consumer.purpose, after=after)
        with open_channel(self.hubs.current, self.cfg) as channel:
            self.call = pb_grpc.ExchangeStub(channel).Subscribe(request)
            try:
                if self.receipts.pending:
                    self.receipts.flush(channel)
                for batch in self.call:
                    self._check_items(replica, projection(batch.items, batch.rows))
                    events = [(e.notification_id, self.mapper.to_domain_event(from_wire(e))) for e in batch.events]
                    applied = replica.apply(provider, resource, events, batch.after, batch.reached)
                    if events and self.receipts.enabled:
                        self.receipts.send(channel, "stream", provider, resource, batch.after, batch.reached,
                                           batch_parts(batch), len(events))
                    EVENTS_APPLIED.labels(provider, resource).inc(applied)
                    REPLICA_POSITION.labels(provider, resource).set(batch.reached)
                    ENTITLED.labels(provider, resource).set(1)
            finally:
                self.call = None

    def _check_items(self, replica: Replica, items: Projection) -> None:
        provider, resource = self.want.provider, self.want.resource
        held = replica.items(provider, resource)
        if held == items:
            return
        if held is None and replica.position(provider, resource) == 0:
            replica.set_items(provider, resource, items)
            return
        log.info("entitled items of %s/%s are now %s (replica holds %s): copying the resource anew",
                 provider, resource, items, held, extra={"provider": provider, "resource": resource})
        replica.withdraw(provider, resource, items)
        raise Resubscribe()


def run(cfg: Config) -> int:
    """Keep the replica current until SIGTERM or SIGINT; 2 when the settings cannot work."""
    try:
        check_agency(cfg.agency)
        resources = wanted(cfg)
        hub_list = hubs.with_metrics(hubs.check_all(cfg), cfg, "subscribe")  # TLS, or insecure on loopback
        Replica(cfg.consumer.replica).close()  # a bad replica URL fails here, not in every thread
        Receipts.from_config(cfg)  # a TLS key that cannot sign receipts fails here
    except Exception as e:
        log.error("consumer cannot start: %s", e)
        return 2
    stopping = threading.Event()
    subscriptions = [Subscription(cfg, want, stopping, hub_list) for want in resources]

    def stop(*_: object) -> None:
        stopping.set()
        for s in subscriptions:
            s.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics.serve(cfg.metrics.address, cfg.metrics.port)
    threads = [threading.Thread(target=s.run, name=f"consumer-{s.want.resource}", daemon=True) for s in subscriptions]
    for t in threads:
        t.start()
    log.info("consumer %s replicating %s into the replica", cfg.agency,
             ", ".join(f"{w.provider}/{w.resource}" for w in resources))
    while not stopping.is_set():
        stopping.wait(0.5)
    for t in threads:
        t.join(10)
    return 0
