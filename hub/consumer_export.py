"""``exchange hub export --consumer ID --to DIR``: a consumer's entitled events as signed bundles (offline exchange).

For each resource the consumer is entitled to, the events after the
previous export (or from the start with ``--from-start``, or when the
entitled data items or the approved row filter changed) are projected
exactly as a subscription would project them and written with the hub's own key into
``DIR/<consumer>/<provider>/<resource>/``.  Each bundle's content carries
the items it was projected to and the hub position it reached; every
bundle is recorded as a delivery.  Re-running after a crash rewrites the
same bundles (same names, atomic writes): nothing is lost or doubled.
``exchange node import`` applies them at the consumer (consumer/bundle_import.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from exchange.common.config import Config
from exchange.contracts.agency import check_agency
from exchange.contracts.errors import InvalidInput
from exchange.store import StoreError, open_store
from exchange.store.at_rest import store_cipher
from exchange.transport.offline.bundles import load_private_key, write_bundle
from hub.audit import open_audit
from hub.catalog.catalog import Catalog
from hub.ingest import Ingest
from hub.sharing.ledger import NotEntitled, SharingLedger
from hub.sharing.projection import project
from hub.sharing.scoped import RecordHistory, within
from hub.workdays import WorkingCalendar

log = logging.getLogger(__name__)

READ_BATCH = 5000


def export(cfg: Config, consumer: str, directory: str | Path, *, resources: list[str] | None = None,
           purpose: str = "", max_events: int = 10000, from_start: bool = False) -> dict[str, Any]:
    """Write the consumer's entitled events as bundles; a report per resource."""
    if max_events < 1:
        raise InvalidInput(f"--max-events must be at least 1, got {max_events}")
    check_agency(consumer)
    key = load_private_key(_key_path(cfg))
    audit = open_audit(cfg)
    store = open_store(cfg.store.url, create=False, cipher=store_cipher(cfg))
    calendar = WorkingCalendar.from_config(cfg)
    catalog = Catalog(cfg.store.url, calendar, audit=audit, cipher=store.cipher)
    try:
        ledger = SharingLedger(store, catalog, calendar, audit=audit)
        exporter = _Exporter(Ingest(store), ledger, key, Path(directory) / consumer, max_events)
        report: dict[str, Any] = {"consumer": consumer, "resources": {}, "refused": {}}
        for provider, resource in _targets(resources, ledger, catalog, consumer):
            name = f"{provider}/{resource}"
            try:
                granted = ledger.entitlement(consumer, provider, resource)
            except NotEntitled as e:
                report["refused"][name] = str(e)
                continue
            if not (granted.purpose or purpose):
                report["refused"][name] = "state the purpose of receiving it (--purpose): deliveries are recorded with it"
                continue
            report["resources"][name] = exporter.export(granted, granted.purpose or purpose, from_start)
        return report
    finally:
        catalog.close()
        store.close()


class _Exporter:
    def __init__(self, ingest: Ingest, ledger: SharingLedger, key, directory: Path, max_events: int):
        self.ingest, self.ledger, self.key, self.directory, self.max_events = ingest, ledger, key, directory, max_events

    def export(self, granted, purpose: str, from_start: bool) -> dict[str, Any]:
        items = sorted(granted.items)
        previous = [r for r in self.ledger.deliveries(granted.consumer, granted.provider, granted.resource)
                    if r["mode"] == "bundle"]
        changed = previous and (previous[-1]["items"], previous[-1].get("rows", "")) != (items, granted.rows_text)
        after = 0 if from_start or not previous or changed else previous[-1]["reached"]
        history = RecordHistory(self.ingest, granted.provider) if granted.rows is not None else None
        folder = self.directory / granted.provider / granted.resource
        folder.mkdir(parents=True, exist_ok=True)
        start, bundles, events, pending, position = after, [], 0, [], after
        while notifications := self.ingest.read(granted.provider, position, READ_BATCH):
            position = notifications[-1].id
            if history is not None:
                notifications = within(notifications, granted.resource, granted.rows, history)
            pending += project(notifications, granted.resource, granted.items)
            while len(pending) >= self.max_events:
                chunk, pending = pending[:self.max_events], pending[self.max_events:]
                after = self._write(folder, granted, purpose, chunk, after, chunk[-1].id, items)
                bundles.append(after)
                events += len(chunk)
        if pending:
            after = self._write(folder, granted, purpose, pending, after, position, items)
            bundles.append(after)
            events += len(pending)
        return {"after": start, "reached": after, "events": events, "bundles": len(bundles), "items": items,
                "directory": str(folder)}

    def _write(self, folder: Path, granted, purpose: str, chunk, after: int, reached: int, items: list[str]) -> int:
        write_bundle(folder, granted.provider, chunk, after, self.key, items=items, reached=reached,
                     rows=granted.rows_text)
        self.ledger.record_delivery(granted, purpose=purpose, events=len(chunk), after=after, reached=reached,
                                    mode="bundle")
        return reached


def _targets(resources: list[str] | None, ledger: SharingLedger, catalog: Catalog, consumer: str) -> list[tuple[str, str]]:
    """The resources named, or every published resource of another agency plus those the consumer requested."""
    if resources:
        found = []
        for text in resources:
            provider, slash, resource = text.partition("/")
            if not slash or not resource:
                raise InvalidInput(f"--resource {text!r} is not PROVIDER/RESOURCE")
            found.append((check_agency(provider), resource))
        return found
    candidates = {(e.agency, e.published["resource"]) for e in catalog.published()}
    candidates |= {(r.provider, r.resource) for r in ledger.requests.values() if r.requester == consumer}
    return sorted(c for c in candidates if c[0] != consumer)


def _key_path(cfg: Config) -> Path:
    if not cfg.bundles.ack_key:
        raise StoreError("[bundles] ack_key is not set: the hub signs consumer bundles with its own key "
                         "(create it with exchange hub keygen)")
    return Path(cfg.bundles.ack_key)
