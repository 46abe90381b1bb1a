"""``exchange node run``: the capture loop and the shipper in one process."""

from __future__ import annotations

import logging
import signal
import threading

import adapters
from exchange.common.config import Config
from exchange.common.stall import StalledSteps, Watchdog
from exchange.contracts.changes import SourceNotReady
from exchange.store import EventStore, StoreError
from exchange.store.at_rest import store_cipher
from exchange.transport.rpc import hubs, tls
from node import metrics as node_metrics
from node import offline as node_offline
from node.capture import Capture
from node.field_policy import FieldPolicy
from node.health import CaptureHealth
from node.metrics import NodeMetrics, NodeState
from node.positions import HUB_TRACKING, RESTORE_TRACKING, SOURCE_TRACKING
from node.quality import IdentifierCheck
from node.read_ahead import ReadAhead
from node.shipper import Shipper

log = logging.getLogger(__name__)


class Node:
    """A running node: capture thread + shipper thread."""

    def __init__(self, cfg: Config, metrics: NodeMetrics = node_metrics.METRICS):
        self.cfg = cfg
        self.metrics = metrics
        self.agency = cfg.agency
        self.identifiers = IdentifierCheck.from_config(cfg, metrics)
        self.store = EventStore(cfg.store.url, cipher=store_cipher(cfg))
        self.recorder = self.store.node_recorder(self.agency)
        self.policy = FieldPolicy.from_config(cfg)
        for table, columns in self.identifiers.declared.items():
            hidden = set(columns) & (self.policy.exclude.get(table, frozenset()) | self.policy.mask.get(table, frozenset()))
            if hidden:  # the check reads stored events, which hold only what the policy lets through
                raise ValueError(f"[source] identifiers.{table} declares {', '.join(sorted(hidden))}, which [policy] "
                                 "excludes or masks: identifiers are checked on the values the node keeps")
        self.failed = False
        self.health = CaptureHealth(metrics)
        self.watchdog = Watchdog(cfg.watchdog.stall_seconds, metrics.stalls)
        self.stopping = threading.Event()
        self.wake = threading.Event()  # ends capture's wait early: new input at the source, or stopping
        self.stored = threading.Event()  # wakes the shipper when capture stored events
        self.shipper = Shipper(
            self.agency, self.recorder, hubs.addresses(cfg), batch_size=cfg.hub.batch_size,
            window=cfg.hub.window, reconnect_max=cfg.hub.reconnect_max, wake=self.stored, cfg=cfg,
            metrics=metrics, batch_bytes=cfg.hub.batch_bytes, watchdog=self.watchdog,
        )

    def open_source(self):
        return adapters.open_source(self.cfg.source.url, self.cfg.source.tables, self.cfg.source.keys,
                                    **adapters.source_options(self.cfg))

    def capture_forever(self) -> None:
        """Capture until stopped; transient errors are logged and retried.

        The source is opened on the thread that reads it (node/read_ahead.py),
        because database connections belong to the thread that opened them."""
        try:
            source = ReadAhead(self.open_source)
            capture = Capture(self.agency, source, self.recorder, self.cfg.source.batch_size, self.policy,
                              on_stored=self.identifiers.count, metrics=self.metrics,
                              batch_bytes=self.cfg.source.batch_bytes, watchdog=self.watchdog,
                              snapshot_batch_size=self.cfg.source.snapshot_batch_size)
            if hasattr(source, "watch"):  # file drops: wake up when a file arrives
                source.watch(self.wake.set)
        except Exception:
            log.exception("capture cannot start")
            self.failed = True
            self.stop()
            return
        try:
            self._capture_loop(source, capture)
        finally:
            source.close()

    def _capture_loop(self, source, capture: Capture) -> None:
        delay = self.cfg.source.poll_interval
        while not self.stopping.is_set():
            try:
                consumed = capture.step()
                capture.prune()
            except Exception as e:
                self.metrics.errors.labels("capture").inc()
                self.health.failed(e)
                self.stopping.wait(1.0)
                continue
            self.health.ok()
            if consumed:
                self.stored.set()
            else:
                self.wake.wait(delay)
                self.wake.clear()

    def state(self) -> NodeState:
        """The collector of the node's state gauges (register it to export them)."""
        return NodeState(self.recorder, self.acknowledged, self.open_source)

    def acknowledged(self) -> int:
        """The node notification id the hub holds, as the shipper or the offline fallback last learnt it."""
        return max(self.shipper.acknowledged, self.recorder.position(HUB_TRACKING))

    def stop(self, *_: object) -> None:
        self.stopping.set()
        self.wake.set()
        self.shipper.stop()


def run(cfg: Config) -> int:
    """Run a node until SIGTERM or SIGINT; 2 when it cannot start."""
    try:
        node = Node(cfg)
        if node.recorder.position(RESTORE_TRACKING) and not node.recorder.position(SOURCE_TRACKING):
            raise StoreError("a restore of this node's store from the hub was interrupted: "
                             "run `exchange node restore` again before `exchange node run`")
        hubs.check_all(cfg)
        if cfg.tls.cert:
            tls.export_expiry(tls.check_node_certificate(cfg))
        source = node.open_source()
        try:
            source.prepare()
            node.policy.check(source.schemas())
        finally:
            source.close()
        offline = node_offline.create(cfg, node.recorder, node.shipper, node.stopping, node.metrics)
    except (SourceNotReady, StoreError, ValueError) as e:
        log.error("node cannot start: %s", e)
        return 2
    signal.signal(signal.SIGTERM, node.stop)
    signal.signal(signal.SIGINT, node.stop)
    node.metrics.registry.register(node.state())  # a node runs once per process: never unregistered
    node.metrics.registry.register(StalledSteps(node.watchdog, "exchange_node_stalled_step_seconds"))
    node_metrics.serve(cfg.metrics.address, cfg.metrics.port)
    node.watchdog.start()
    shipper = threading.Thread(target=node.shipper.run, name="shipper", daemon=True)
    shipper.start()
    if offline is not None:
        offline.start()
    log.info("node for agency %s capturing %s, shipping to %s", node.agency, ", ".join(cfg.source.tables),
             node.shipper.hubs)
    capture = threading.Thread(target=node.capture_forever, name="capture", daemon=True)
    capture.start()
    while capture.is_alive():
        capture.join(0.5)
    node.watchdog.stop()
    shipper.join(5)
    if offline is not None:
        offline.join(5)
    node.store.close()
    return 1 if node.failed else 0
