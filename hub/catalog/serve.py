"""The catalog inside a running hub: its gRPC service, the schema watch and the overdue counts."""

from __future__ import annotations

import logging
import threading

import grpc

from exchange.common.config import Config
from hub.audit import AuditLog
from hub.catalog import reports
from hub.catalog.api import CatalogServicer
from hub.catalog.catalog import Catalog
from hub.catalog.schema_watch import SchemaWatch
from hub.ingest import Ingest
from hub.registry.agencies import Registry
from hub.registry.api import RegistryServicer
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Catalog"].full_name
WATCH_SECONDS = 30.0  # schema watch pass, besides wake-ups on schema events


class CatalogRuntime:
    """Owns the hub's Catalog while the hub serves."""

    def __init__(self, cfg: Config, ingest: Ingest, audit: AuditLog | None = None):
        """``audit``: the hub's one audit log (one writer per file keeps its chain whole), if it has one.

        The evaluation's late answers come from ``servicer.late_answers``
        (agency -> share requests answered late), set once sharing runs."""
        self.catalog = Catalog(cfg.store.url, WorkingCalendar.from_config(cfg), audit=audit,
                               cipher=ingest.store.cipher)
        self.registry = Registry(self.catalog.store, audit)
        administrators = frozenset(cfg.security.administrators)
        self.servicer = CatalogServicer(self.catalog, administrators, sync=ingest.newest_commit,
                                        dcat_base=cfg.catalog.dcat_base, registry=self.registry)
        self.registry_servicer = RegistryServicer(self.registry, administrators)
        self.watch = SchemaWatch(self.catalog, ingest)
        ingest.listeners.append(self.watch.notice)
        self._calendar_error: str | None = None
        self._thread: threading.Thread | None = None

    def add_to_server(self, server: grpc.Server) -> None:
        pb_grpc.add_CatalogServicer_to_server(self.servicer, server)
        pb_grpc.add_RegistryServicer_to_server(self.registry_servicer, server)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.watch.run, args=(WATCH_SECONDS,), name="catalog-watch",
                                        daemon=True)
        self._thread.start()

    def overdue_counts(self) -> dict[str, int] | None:
        """Overdue entries per agency now (they fall due as time passes); None, logged once per
        distinct error, when the working-day calendar does not know the year."""
        try:
            counts = reports.overdue_by_agency(self.catalog)
        except ValueError as e:
            if str(e) != self._calendar_error:
                log.error("cannot count overdue catalog entries: %s", e)
            self._calendar_error = str(e)
            return None
        self._calendar_error = None
        return counts

    def stop(self) -> None:
        self.watch.stop()
        if self._thread is not None:
            self._thread.join(10)
        self.catalog.close()
