"""Bundle import at the hub: verify, store through Ingest, file away, acknowledge.

One pass over a directory (``exchange hub import DIR``, or the inbox):

- bundles are read in id order per agency (by their manifests), so files
  may arrive in any order;
- each verified bundle goes through Ingest, the same exactly-once rules as
  gRPC: events the hub holds are dropped, the rest are stored with the new
  position in one transaction.  Then the file moves to ``imported/``; a
  crash before the move only means the next pass finds nothing new in it;
- a bundle that starts after the hub's position (a gap) is not corrupt: it
  stays where it is, pending, and is imported once the missing one arrives;
- a bundle that fails verification, or whose events cannot be stored,
  moves to ``quarantine/`` with ``<name>.reason.txt`` beside it;
- the hub's position for each agency seen is written to ``ack/<agency>.json``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import IntegrityError

from exchange.bundles import (BundleError, Manifest, is_bundle_name, load_trusted_keys, read_bundle, read_manifest,
                              write_atomically)
from exchange.store import EventStore, VersionGapError
from exchange.wire import MalformedEvent
from exchange.workdays import WorkingCalendar
from hub import metrics
from hub.catalog.catalog import Catalog
from hub.ingest import Ingest, PositionGap
from hub.sharing.guard import NotSharedGuard
from protos.exchange.v1 import exchange_pb2 as pb

log = logging.getLogger(__name__)

IMPORTED_DIR = "imported"
QUARANTINE_DIR = "quarantine"
ACK_DIR = "ack"
ACK_FORMAT = 1


class BundleImporter:
    """Imports the bundles found in one directory into the hub's store."""

    def __init__(self, ingest: Ingest, trusted_keys: Mapping[str, Ed25519PublicKey], directory: str | Path):
        self.ingest = ingest
        self.trusted_keys = trusted_keys
        self.directory = Path(directory)
        self._reported_pending: set[str] = set()  # warn once per pending file, not on every rescan

    def import_all(self) -> dict:
        """One pass over the directory; returns the imported, pending and
        quarantined files and the acknowledgements written."""
        report: dict[str, list] = {"imported": [], "pending": [], "quarantined": [], "acks": []}
        by_agency: dict[str, list[tuple[Manifest, Path]]] = defaultdict(list)
        for path in sorted(p for p in self.directory.iterdir() if is_bundle_name(p.name) and p.is_file()):
            try:
                manifest = read_manifest(path)
            except BundleError as e:
                self._quarantine(path, e.reason, e.detail, report)
                continue
            except FileNotFoundError:
                continue  # taken away meanwhile
            by_agency[manifest.agency].append((manifest, path))
        for agency, bundles in sorted(by_agency.items()):
            verified = [self._import(path, report) for _, path in sorted(bundles, key=lambda b: (b[0].after, b[0].last))]
            if any(verified):  # never acknowledge for an agency named only by unverified files
                report["acks"].append(str(self._acknowledge(agency)))
        return report

    def _import(self, path: Path, report: dict) -> bool:
        """Import one bundle; False if it was quarantined."""
        try:
            manifest, batch = read_bundle(path, self.trusted_keys)
            with metrics.STORE_BATCH_SECONDS.time():
                position, stored = self._ingest(manifest.agency, batch)
        except BundleError as e:
            return self._quarantine(path, e.reason, e.detail, report)
        except FileNotFoundError:
            return False  # taken away since the listing
        except PositionGap as e:
            report["pending"].append({"file": path.name, "reason": str(e)})
            if path.name not in self._reported_pending:
                self._reported_pending.add(path.name)
                log.warning("bundle %s is pending: %s", path.name, e)
            return True
        except MalformedEvent as e:
            return self._quarantine(path, "malformed", str(e), report)
        except VersionGapError as e:
            return self._quarantine(path, "version_gap", f"{e}; nothing of the bundle was stored", report)
        agency = manifest.agency
        metrics.BUNDLES_IMPORTED.labels(agency).inc()
        metrics.EVENTS_STORED.labels(agency).inc(stored)
        metrics.EVENTS_DUPLICATE.labels(agency).inc(len(batch.events) - stored)
        metrics.POSITION.labels(agency).set(position)
        if stored:
            metrics.record_commit_time(agency, batch.events[-1].state)
        self._move(path, IMPORTED_DIR)
        self._reported_pending.discard(path.name)
        report["imported"].append({"file": path.name, "agency": agency, "first": manifest.first,
                                   "last": manifest.last, "stored": stored})
        log.info("imported bundle %s: %d new events, hub position %d", path.name, stored, position,
                 extra={"agency": agency})
        return True

    def _ingest(self, agency: str, batch: pb.EventBatch) -> tuple[int, int]:
        """Ingest the batch, once more if it clashed with events stored meanwhile by
        another process on the same store (``exchange hub import`` beside a running
        hub): the retry reads the new position and drops them.  A real version gap
        fails again."""
        try:
            return self.ingest.ingest(agency, batch)
        except IntegrityError:
            return self.ingest.ingest(agency, batch)

    def _quarantine(self, path: Path, reason: str, detail: str, report: dict) -> bool:
        target = self.directory / QUARANTINE_DIR
        target.mkdir(exist_ok=True)
        # The reason first: a crash between the two leaves a stray note, never an unexplained file.
        (target / f"{path.name}.reason.txt").write_text(f"{reason}: {detail}\n")
        self._move(path, QUARANTINE_DIR)
        metrics.BUNDLES_QUARANTINED.labels(reason).inc()
        report["quarantined"].append({"file": path.name, "reason": reason, "detail": detail})
        log.error("quarantined bundle %s (%s): %s", path.name, reason, detail)
        return False

    def _move(self, path: Path, subdirectory: str) -> None:
        target = self.directory / subdirectory
        target.mkdir(exist_ok=True)
        path.replace(target / path.name)

    def _acknowledge(self, agency: str) -> Path:
        """Write the hub's position for ``agency`` where the node's export finds it."""
        path = self.directory / ACK_DIR / f"{agency}.json"
        path.parent.mkdir(exist_ok=True)
        ack = {"format": ACK_FORMAT, "agency": agency, "position": self.ingest.position(agency),
               "hub_time": datetime.now(timezone.utc).isoformat()}
        write_atomically(path, json.dumps(ack).encode() + b"\n")
        return path


def import_directory(cfg: dict, directory: str | Path) -> dict:
    """``exchange hub import``: one pass over ``directory`` into the hub's store.

    Safe beside a running hub on the same SQLite store: SQLite serialises
    the writers and Ingest's position check makes every write exactly-once."""
    if not Path(directory).is_dir():
        raise ValueError(f"{directory}: no such directory")
    trusted_keys = load_trusted_keys(cfg["bundles.trusted_keys"])
    store = EventStore(cfg["store.url"])
    catalog = Catalog(cfg["store.url"], WorkingCalendar.from_config(cfg))
    try:
        ingest = Ingest(store)
        ingest.guards.append(NotSharedGuard(catalog))  # as the running hub does: not-shared resources are refused
        return BundleImporter(ingest, trusted_keys, directory).import_all()
    finally:
        catalog.close()
        store.close()
