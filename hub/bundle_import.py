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

import logging
from collections import defaultdict
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eventsourcing.persistence import IntegrityError

from exchange.common.config import Config
from exchange.contracts.errors import InvalidInput
from exchange.store import VersionGapError, open_store
from exchange.store.at_rest import store_cipher
from exchange.transport.offline.acks import make_ack
from exchange.transport.offline.bundles import (
    BundleError,
    Manifest,
    SigningKeyError,
    generate_hub_key,
    generate_key,
    is_bundle_name,
    key_id,
    load_hub_private_key,
    load_private_key,
    load_trusted_keys,
    read_bundle,
    read_manifest,
    write_atomically,
)
from exchange.transport.wire import MalformedEvent
from hub.audit import AuditLog, open_audit
from hub.catalog.catalog import Catalog
from hub.ingest import ConcurrentPublish, Ingest, NotHeld, PositionGap
from hub.metrics import METRICS as metrics
from hub.sharing.guard import NotSharedGuard
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import exchange_pb2 as pb

log = logging.getLogger(__name__)

IMPORTED_DIR = "imported"
QUARANTINE_DIR = "quarantine"
ACK_DIR = "ack"


class BundleImporter:
    """Imports the bundles found in one directory into the hub's store."""

    def __init__(self, ingest: Ingest, trusted_keys: Mapping[str, Ed25519PublicKey], directory: str | Path,
                 audit: AuditLog | None = None, decrypt_key: X25519PrivateKey | None = None,
                 ack_key: Ed25519PrivateKey | None = None):
        self.ingest = ingest
        self.audit = audit
        self.decrypt_key = decrypt_key
        self.trusted_keys = trusted_keys
        self.ack_key = ack_key  # signs the acknowledgements when set
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
            manifest, batch = read_bundle(path, self.trusted_keys, self.decrypt_key)
            with metrics.store_batch_seconds.time():
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
        except NotHeld as e:
            return self._quarantine(path, "not_held", str(e), report)
        agency = manifest.agency
        metrics.bundles_imported.labels(agency).inc()
        metrics.events_stored.labels(agency).inc(stored)
        metrics.events_duplicate.labels(agency).inc(len(batch.events) - stored)
        if self.audit is not None:  # before the move: a crash between the two repeats the entry, never loses it
            self.audit.record("bundle.imported", agency, file=path.name, first=manifest.first, last=manifest.last,
                              stored=stored, key_id=manifest.key_id, content_sha256=manifest.content_sha256)
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
        except (IntegrityError, ConcurrentPublish):
            return self.ingest.ingest(agency, batch)

    def _quarantine(self, path: Path, reason: str, detail: str, report: dict) -> bool:
        target = self.directory / QUARANTINE_DIR
        target.mkdir(exist_ok=True)
        # The reason first: a crash between the two leaves a stray note, never an unexplained file.
        (target / f"{path.name}.reason.txt").write_text(f"{reason}: {detail}\n")
        if self.audit is not None:
            self.audit.record("bundle.quarantined", "bundle-import", file=path.name, reason=reason, detail=detail)
        self._move(path, QUARANTINE_DIR)
        metrics.bundles_quarantined.labels(reason).inc()
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
        write_atomically(path, make_ack(agency, self.ingest.position(agency), self.ack_key))
        return path


def keygen(cfg: Config) -> dict:
    """``exchange hub keygen``: create the keys the config names (each never overwritten):
    ``[bundles] decrypt_key`` (X25519; its ``<name>.pub`` is the nodes' ``[bundles]
    encrypt_to``) and ``[bundles] ack_key`` (Ed25519; ``hub.pub`` beside it is the
    nodes' ``[bundles] hub_key``)."""
    if not cfg.bundles.decrypt_key and not cfg.bundles.ack_key:
        raise SigningKeyError("set [bundles] decrypt_key (bundles encrypted to the hub) and/or [bundles] ack_key "
                              "(signed acknowledgements) to the key file paths to create")
    report = {}
    if cfg.bundles.decrypt_key:
        path = Path(cfg.bundles.decrypt_key)
        public_path = path.with_suffix(".pub")
        if public_path == path:
            raise SigningKeyError(f"[bundles] decrypt_key {path}: name the private key file, not a .pub file")
        report["decrypt_key"] = {"key": str(path), "public_key": str(public_path),
                                 "key_id": key_id(generate_hub_key(path, public_path))}
    if cfg.bundles.ack_key:
        path = Path(cfg.bundles.ack_key)
        public_path = path.with_name("hub.pub")
        report["ack_key"] = {"key": str(path), "public_key": str(public_path),
                             "key_id": key_id(generate_key(path, public_path))}
    return report


def decrypt_key(cfg: Config) -> X25519PrivateKey | None:
    """The hub's bundle decryption key, ``[bundles] decrypt_key`` (None when unset)."""
    return load_hub_private_key(cfg.bundles.decrypt_key) if cfg.bundles.decrypt_key else None


def ack_key(cfg: Config) -> Ed25519PrivateKey | None:
    """The key signing the hub's acknowledgements (``[bundles] ack_key``), or None: unsigned."""
    return load_private_key(cfg.bundles.ack_key) if cfg.bundles.ack_key else None


def import_directory(cfg: Config, directory: str | Path) -> dict:
    """``exchange hub import``: one pass over ``directory`` into the hub's store.

    Safe beside a running hub on the same SQLite store: SQLite serialises
    the writers and Ingest's position check makes every write exactly-once."""
    if not Path(directory).is_dir():
        raise InvalidInput(f"{directory}: no such directory")
    trusted_keys = load_trusted_keys(cfg.bundles.trusted_keys)
    audit = open_audit(cfg)
    store = open_store(cfg.store.url, cipher=store_cipher(cfg))
    catalog = Catalog(cfg.store.url, WorkingCalendar.from_config(cfg), audit=audit, cipher=store.cipher)
    try:
        ingest = Ingest(store)
        ingest.guards.append(NotSharedGuard(catalog))  # as the running hub does: not-shared resources are refused
        return BundleImporter(ingest, trusted_keys, directory, audit=audit,
                              decrypt_key=decrypt_key(cfg), ack_key=ack_key(cfg)).import_all()
    finally:
        catalog.close()
        store.close()
