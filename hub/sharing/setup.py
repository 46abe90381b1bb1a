"""Sharing in a running hub: the ledger, the Sharing and Query services, the current-state follower and
the not-shared guard."""

from __future__ import annotations

from typing import Any

import grpc

from exchange.common.config import Config
from hub.audit import AuditLog, open_audit
from hub.catalog.catalog import Catalog
from hub.ingest import Ingest
from hub.sharing.api import SharingServicer
from hub.sharing.current import CurrentState, Follower
from hub.sharing.guard import NotSharedGuard
from hub.sharing.ledger import SharingLedger
from hub.sharing.query import QueryServicer
from hub.sharing.receipts import ReceiptBook, ReceiptsServicer
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import query_pb2, query_pb2_grpc, sharing_pb2, sharing_pb2_grpc

SHARING_SERVICE = sharing_pb2.DESCRIPTOR.services_by_name["Sharing"].full_name
QUERY_SERVICE = query_pb2.DESCRIPTOR.services_by_name["Query"].full_name
RECEIPTS_SERVICE = sharing_pb2.DESCRIPTOR.services_by_name["Receipts"].full_name


class Sharing:
    """What ``start`` set up; ``stop()`` closes the catalog it opened."""

    def __init__(self, ledger: SharingLedger, catalog: Catalog, owns_catalog: bool, follower: Follower,
                 receipts: ReceiptBook):
        self.ledger = ledger
        self.receipts = receipts
        self.catalog = catalog
        self.follower = follower
        self._owns_catalog = owns_catalog

    def stop(self) -> None:
        self.follower.stop()
        if self._owns_catalog:
            self.catalog.close()


def start(cfg: Config, ingest: Ingest, server: grpc.Server, exchange_servicer: Any, *,
          audit: AuditLog | None = None, catalog: Catalog | None = None) -> Sharing:
    """Open the ledger over the hub's store, serve ``exchange.v1.Sharing``, ``exchange.v1.Query`` and
    ``exchange.v1.Receipts`` on ``server`` and start folding the agencies' logs into the current-state table."""
    calendar = WorkingCalendar.from_config(cfg)
    audit = audit if audit is not None else open_audit(cfg)
    owns_catalog = catalog is None
    catalog = catalog or Catalog(cfg.store.url, calendar, audit, cipher=ingest.store.cipher)
    ledger = SharingLedger(ingest.store, catalog, calendar, audit=audit)
    ledger.current = CurrentState(ingest.store)
    ingest.guards.append(NotSharedGuard(catalog, audit))
    administrators = frozenset(cfg.security.administrators)
    sharing_pb2_grpc.add_SharingServicer_to_server(SharingServicer(ledger, administrators), server)
    query_pb2_grpc.add_QueryServicer_to_server(QueryServicer(ledger, ledger.current), server)
    receipts = ReceiptBook(ingest.store, audit)
    sharing_pb2_grpc.add_ReceiptsServicer_to_server(ReceiptsServicer(receipts, administrators), server)
    exchange_servicer.sharing = ledger
    follower = Follower(ledger.current, ingest).start()
    return Sharing(ledger, catalog, owns_catalog, follower, receipts)
