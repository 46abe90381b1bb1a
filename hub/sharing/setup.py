"""Sharing in a running hub: the ledger, the Sharing service and the not-shared guard."""

from __future__ import annotations

from typing import Any

import grpc

from exchange.common.config import Config
from hub.audit import AuditLog, open_audit
from hub.catalog.catalog import Catalog
from hub.ingest import Ingest
from hub.sharing.api import SharingServicer
from hub.sharing.guard import NotSharedGuard
from hub.sharing.ledger import SharingLedger
from hub.sharing.receipts import ReceiptBook, ReceiptsServicer
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import sharing_pb2, sharing_pb2_grpc

SHARING_SERVICE = sharing_pb2.DESCRIPTOR.services_by_name["Sharing"].full_name
RECEIPTS_SERVICE = sharing_pb2.DESCRIPTOR.services_by_name["Receipts"].full_name


class Sharing:
    """What ``start`` set up; ``stop()`` closes the catalog it opened."""

    def __init__(self, ledger: SharingLedger, catalog: Catalog, owns_catalog: bool, receipts: ReceiptBook):
        self.ledger = ledger
        self.receipts = receipts
        self.catalog = catalog
        self._owns_catalog = owns_catalog

    def stop(self) -> None:
        if self._owns_catalog:
            self.catalog.close()


def start(cfg: Config, ingest: Ingest, server: grpc.Server, exchange_servicer: Any, *,
          audit: AuditLog | None = None, catalog: Catalog | None = None) -> Sharing:
    """Open the ledger over the hub's store and serve ``exchange.v1.Sharing`` and ``exchange.v1.Receipts`` on ``server``."""
    calendar = WorkingCalendar.from_config(cfg)
    audit = audit if audit is not None else open_audit(cfg)
    owns_catalog = catalog is None
    catalog = catalog or Catalog(cfg.store.url, calendar, audit, cipher=ingest.store.cipher)
    ledger = SharingLedger(ingest.store, catalog, calendar, audit=audit)
    ingest.guards.append(NotSharedGuard(catalog, audit))
    administrators = frozenset(cfg.security.administrators)
    sharing_pb2_grpc.add_SharingServicer_to_server(SharingServicer(ledger, administrators), server)
    receipts = ReceiptBook(ingest.store, audit)
    sharing_pb2_grpc.add_ReceiptsServicer_to_server(ReceiptsServicer(receipts, administrators), server)
    exchange_servicer.sharing = ledger
    return Sharing(ledger, catalog, owns_catalog, receipts)
