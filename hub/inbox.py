"""The hub's inbox: a watched directory whose bundles the running hub imports.

``watchdog`` wakes the import thread when a file appears or is renamed into
the directory; a rescan every ``[inbox] rescan_interval`` seconds catches
events the filesystem did not report.  One thread does all imports, through
the hub's own Ingest, so the inbox and gRPC publishers share one writer.
Only complete bundles are read: writers must write under a hidden or
``*.tmp`` name and rename into place (``exchange node export`` does).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from exchange.common.config import Config
from exchange.transport.offline.bundles import is_bundle_name, load_trusted_keys
from hub.audit import AuditLog
from hub.bundle_import import BundleImporter, ack_key, decrypt_key
from hub.ingest import Ingest
from hub.metrics import METRICS as metrics

log = logging.getLogger(__name__)


class Inbox:
    """Imports bundles from a directory until stopped."""

    def __init__(self, importer: BundleImporter, rescan_interval: float):
        self.importer = importer
        self.rescan_interval = rescan_interval
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.observer = Observer()
        self.thread = threading.Thread(target=self._run, name="inbox", daemon=True)

    def start(self) -> None:
        self.importer.directory.mkdir(parents=True, exist_ok=True)
        self.observer.schedule(_Wake(self.wake), str(self.importer.directory), recursive=False)
        self.observer.start()
        self.thread.start()
        log.info("watching inbox %s for bundles", self.importer.directory)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.observer.stop()
        self.observer.join(5)
        self.thread.join(30)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self.importer.import_all()
            except Exception:  # e.g. the store is busy; the next pass retries
                metrics.errors.labels("inbox").inc()
                log.exception("inbox import failed; retrying in %.0fs", self.rescan_interval)
            self.wake.wait(self.rescan_interval)


class _Wake(FileSystemEventHandler):
    """Sets ``wake`` when a bundle appears (created, or renamed into place)."""

    def __init__(self, wake: threading.Event):
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = getattr(event, "dest_path", "") or event.src_path
        if event.event_type in ("created", "moved", "closed") and is_bundle_name(Path(str(path)).name):
            self.wake.set()


def start(cfg: Config, ingest: Ingest, audit: AuditLog | None = None) -> Inbox | None:
    """Start watching ``[inbox] path`` (None when it is empty: no inbox)."""
    if not cfg.inbox.path:
        return None
    trusted_keys = load_trusted_keys(cfg.bundles.trusted_keys)
    if not trusted_keys:
        log.warning("[bundles] trusted_keys is empty: every bundle in the inbox will be quarantined as unknown_signer")
    importer = BundleImporter(ingest, trusted_keys, cfg.inbox.path, audit=audit, decrypt_key=decrypt_key(cfg),
                              ack_key=ack_key(cfg))
    inbox = Inbox(importer, cfg.inbox.rescan_interval)
    inbox.start()
    return inbox
