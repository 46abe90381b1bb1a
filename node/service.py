"""``exchange node run``: the capture loop and the shipper in one process."""

from __future__ import annotations

import logging
import signal
import threading
import time

import adapters
from exchange.changes import SourceNotReady
from exchange.store import EventStore, StoreError
from node import metrics
from node.capture import Capture
from node.positions import RESTORE_TRACKING, SOURCE_TRACKING
from node.quality import IdentifierCheck
from node.shipper import Shipper

log = logging.getLogger(__name__)
SLOT_MEASURE_SECONDS = 5.0  # how often to ask PostgreSQL how much WAL the slot retains


class Node:
    """A running node: capture thread + shipper thread."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.agency = cfg["agency"]
        self.identifiers = IdentifierCheck.from_config(cfg)
        self.store = EventStore(cfg["store.url"])
        self.recorder = self.store.node_recorder(self.agency)
        self.failed = False
        self.stopping = threading.Event()
        self.stored = threading.Event()  # wakes the shipper when capture stored events
        self.shipper = Shipper(
            self.agency, self.recorder, cfg["hub.address"], batch_size=cfg["hub.batch_size"],
            window=cfg["hub.window"], reconnect_max=cfg["hub.reconnect_max"], wake=self.stored, cfg=cfg,
        )

    def open_source(self):
        return adapters.open_source(self.cfg["source.url"], self.cfg["source.tables"], self.cfg["source.keys"])

    def capture_forever(self) -> None:
        """Capture until stopped; transient errors are logged and retried.

        The source is opened here because database connections belong to
        the thread that opened them."""
        try:
            source = self.open_source()
            capture = Capture(self.agency, source, self.recorder, self.cfg["source.batch_size"],
                              on_stored=self.identifiers.count)
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
        delay = self.cfg["source.poll_interval"]
        measured = 0.0
        while not self.stopping.is_set():
            try:
                consumed = capture.step()
                capture.prune()
                metrics.SOURCE_PENDING.set(source.pending(capture.position))
                if hasattr(source, "slot_retained_wal_bytes") and time.monotonic() - measured > SLOT_MEASURE_SECONDS:
                    metrics.SLOT_RETAINED_WAL.set(source.slot_retained_wal_bytes())
                    measured = time.monotonic()
            except Exception:
                metrics.ERRORS.labels("capture").inc()
                log.exception("capture failed; retrying")
                self.stopping.wait(1.0)
                continue
            if consumed:
                self.stored.set()
            else:
                self.stopping.wait(delay)

    def stop(self, *_: object) -> None:
        self.stopping.set()
        self.shipper.stop()


def run(cfg: dict) -> int:
    """Run a node until SIGTERM or SIGINT; 2 when it cannot start."""
    try:
        node = Node(cfg)
        if node.recorder.position(RESTORE_TRACKING) and not node.recorder.position(SOURCE_TRACKING):
            raise StoreError("a restore of this node's store from the hub was interrupted: "
                             "run `exchange node restore` again before `exchange node run`")
        source = node.open_source()
        try:
            source.prepare()
        finally:
            source.close()
    except (SourceNotReady, StoreError, ValueError) as e:
        log.error("node cannot start: %s", e)
        return 2
    signal.signal(signal.SIGTERM, node.stop)
    signal.signal(signal.SIGINT, node.stop)
    metrics.serve(cfg["metrics.address"], cfg["metrics.port"])
    shipper = threading.Thread(target=node.shipper.run, name="shipper", daemon=True)
    shipper.start()
    log.info("node for agency %s capturing %s, shipping to %s", node.agency, ", ".join(cfg["source.tables"]),
             cfg["hub.address"])
    capture = threading.Thread(target=node.capture_forever, name="capture", daemon=True)
    capture.start()
    while capture.is_alive():
        capture.join(0.5)
    shipper.join(5)
    node.store.close()
    return 1 if node.failed else 0
