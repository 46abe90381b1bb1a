"""Federation, district side: this hub forwards its agencies' logs to a city hub as a node does.

For each forwarded agency (``[upstream] agencies``, or every agency of the
store, those appearing later too) a publisher (exchange.transport.rpc.publish)
reads the agency's log from this hub's store after the position the city hub
reports and streams it with the Publish protocol.  The city hub records it as
it records a node's log (tracking ``node:<agency>``), this hub's notification
ids standing for the node's, so a re-sent or overlapping batch changes nothing
there either.  A stored batch wakes the agency's publisher at once.  While
the city hub is down this hub serves its own agencies as before; the
publishers retry with backoff (moving to the next ``[upstream] addresses``
hub that is SERVING) and resume from the city hub's position.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Sequence

from eventsourcing.persistence import Notification
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exchange.common.config import Config, from_values
from exchange.common.metrics import ScrapeReads
from exchange.transport.rpc import hubs, tls
from exchange.transport.rpc.channel import CLIENT_SETTINGS
from exchange.transport.rpc.hubs import HubList
from exchange.transport.rpc.publish import LogPublisher, PublishMetrics
from hub.ingest import Ingest
from hub.metrics import METRICS, HubMetrics

log = logging.getLogger(__name__)

HUB_VERSION = "hub 0.1.0"  # the Hello's node_version: the city hub logs and audits it
RESCAN_SECONDS = 5.0  # how often the store is asked for agencies other hubs on it created
STOP_SECONDS = 10.0


class AgencyForwarder(LogPublisher):
    """Publishes one agency's log at this hub to the city hub."""

    who = "hub"
    failure_kind = "forwarder"
    batch_setting = "[upstream] batch_size"

    def __init__(self, agency: str, ingest: Ingest, hub_list: HubList, client: Config, cfg: Config,
                 metrics: HubMetrics):
        counted = PublishMetrics(metrics.upstream_connected.labels(agency), metrics.upstream_forwarded.labels(agency),
                                 metrics.upstream_acknowledged.labels(agency),
                                 lambda kind: metrics.upstream_errors.labels(agency, kind).inc())
        super().__init__(agency, hub_list, client, counted, batch_size=cfg.upstream.batch_size,
                         window=cfg.upstream.window, reconnect_max=cfg.upstream.reconnect_max,
                         batch_bytes=cfg.upstream.batch_bytes, watchdog=ingest.watchdog, version=HUB_VERSION)
        self.ingest = ingest

    def read(self, after: int, limit: int) -> Sequence[Notification]:
        return self.ingest.read(self.agency, after, limit)

    def head(self) -> int:
        return self.ingest.hub_position(self.agency)

    def wait_for_events(self, sent: int) -> None:
        self.ingest.wait(self.agency, sent, 0.5)


class Upstream:
    """The forwarders of this hub's agencies, and a thread starting one for each agency that appears."""

    def __init__(self, cfg: Config, ingest: Ingest, metrics: HubMetrics = METRICS):
        self.cfg = cfg
        self.ingest = ingest
        self.metrics = metrics
        self.client = client_settings(cfg)
        self.hubs = HubList(hubs.addresses(self.client), self.client, client="upstream",
                            on_change=lambda _failed, _now: metrics.upstream_failovers.inc())
        self.forwarders: dict[str, AgencyForwarder] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._appeared = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="upstream", daemon=True)
        self._state = UpstreamState(self)
        self._reads = ScrapeReads("upstream forwarding")

    def start(self) -> None:
        """Start forwarding (and exporting its metrics); new agencies are picked up as they appear."""
        self.metrics.registry.register(self._state)
        self.ingest.listeners.append(self._stored)
        self._watcher.start()
        log.info("forwarding %s to the city hub %s", ", ".join(self.cfg.upstream.agencies) or "every agency",
                 self.hubs, extra={"upstream": str(self.hubs)})

    def stop(self) -> None:
        """Stop every forwarder and wait for them: an idle one stops within half a second, one waiting
        for the city hub's answer when it comes (10 s at most for all)."""
        if not self._watcher.is_alive():
            return  # never started
        self.metrics.registry.unregister(self._state)
        self._stopping.set()
        self._appeared.set()
        deadline = time.monotonic() + STOP_SECONDS
        self._watcher.join(STOP_SECONDS)  # no forwarder starts after this
        for forwarder in self.forwarders.values():
            forwarder.stop()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def progress(self) -> dict[str, dict[str, Any]]:
        """Per forwarded agency, in agency order: ``connected`` (a stream to the city hub is open),
        ``position`` (up to which the city hub holds the log, in this hub's notification ids) and
        ``backlog_events`` (what it does not hold yet; None when the log cannot be read now)."""
        result = {}
        for agency, forwarder in sorted(self.forwarders.items()):
            held = forwarder.acknowledged
            head = self._reads.read(f"the log of agency {agency}", lambda: self.ingest.hub_position(agency))
            result[agency] = {"connected": forwarder.unreachable_since is None, "position": held,
                              "backlog_events": max(0, head - held) if head is not None else None}
        return result

    def _stored(self, agency: str, _events: Sequence) -> None:
        if agency not in self.forwarders:
            self._appeared.set()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                for agency in self.cfg.upstream.agencies or self.ingest.store.agencies():
                    if agency not in self.forwarders and not self._stopping.is_set():
                        self._forward(agency)
            except Exception:
                log.exception("cannot list the agencies to forward; trying again in %.0fs", RESCAN_SECONDS)
            self._appeared.wait(RESCAN_SECONDS)
            self._appeared.clear()

    def _forward(self, agency: str) -> None:
        forwarder = AgencyForwarder(agency, self.ingest, self.hubs, self.client, self.cfg, self.metrics)
        self.forwarders[agency] = forwarder
        thread = threading.Thread(target=forwarder.run, name=f"upstream-{agency}", daemon=True)
        self._threads.append(thread)
        thread.start()


def client_settings(cfg: Config) -> Config:
    """The ``[upstream]`` settings as a client of the city hub (``[hub]`` and ``[tls]``, as a node's);
    TLSError unless this hub's certificate is a hub's, InvalidInput naming a bad address."""
    upstream = cfg.upstream
    client = from_values(CLIENT_SETTINGS, {
        "hub.address": upstream.address, "hub.addresses": upstream.addresses, "hub.insecure": upstream.insecure,
        "tls.ca": upstream.ca, "tls.cert": upstream.cert, "tls.key": upstream.key,
    }, source="[upstream]")
    try:
        hubs.check_all(client)
        if upstream.cert:
            holder = tls.describe(tls.check_pair(client))
            if holder.role != tls.ROLE_HUB:
                raise tls.TLSError(f"the certificate is {holder.role or 'no role'} {holder.name}'s, not a hub's; "
                                   "issue one with exchange ca issue --hub NAME and list NAME in the city hub's "
                                   "[federation] downstream")
    except tls.TLSError as e:
        raise tls.TLSError(f"[upstream] (its insecure, ca, cert and key play a node's [hub] insecure and [tls]): "
                           f"{e}") from None
    return client


def configured(cfg: Config) -> bool:
    """True when the config names a city hub to forward to."""
    return bool(cfg.upstream.address or cfg.upstream.addresses)


class UpstreamState(Collector):
    """``exchange_hub_upstream_position`` and ``exchange_hub_upstream_backlog_events`` per forwarded agency,
    read at scrape time."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position, backlog = self._families()
        for agency, progress in self.upstream.progress().items():
            position.add_metric([agency], progress["position"])
            if progress["backlog_events"] is not None:
                backlog.add_metric([agency], progress["backlog_events"])
        yield from (position, backlog)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("exchange_hub_upstream_position",
                                  "This hub's notification id of the agency's log up to which the city hub holds it, "
                                  "as the city hub last reported", labels=["agency"]),
                GaugeMetricFamily("exchange_hub_upstream_backlog_events",
                                  "Events of the agency's log at this hub that the city hub has not acknowledged",
                                  labels=["agency"]))
