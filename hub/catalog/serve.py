"""The catalog inside a running hub: its gRPC service, the schema watch and the overdue metric."""

from __future__ import annotations

import logging
import threading

import grpc

from exchange.common.config import Config
from hub.workdays import WorkingCalendar
from hub import metrics
from hub.audit import AuditLog
from hub.catalog import reports
from hub.catalog.api import CatalogServicer
from hub.catalog.catalog import Catalog
from hub.catalog.schema_watch import SchemaWatch
from hub.ingest import Ingest
from hub.metrics import commit_timestamp
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Catalog"].full_name
WATCH_SECONDS = 30.0  # schema watch pass and overdue refresh, besides wake-ups on schema events


def newest_commit(ingest: Ingest, agency: str) -> float | None:
    """Source commit time (Unix) of the agency's newest event at the hub, for sync freshness."""
    latest = ingest.hub_position(agency)
    newest = ingest.read(agency, latest - 1, 1) if latest else []
    return commit_timestamp(newest[0].state) if newest else None


class CatalogRuntime:
    """Owns the hub's Catalog while the hub serves."""

    def __init__(self, cfg: Config, ingest: Ingest, audit: AuditLog | None = None):
        """``audit``: the hub's one audit log (one writer per file keeps its chain whole), if it has one.

        The evaluation's late answers come from ``servicer.late_answers``
        (agency -> share requests answered late), set once sharing runs."""
        self.catalog = Catalog(cfg.store.url, WorkingCalendar.from_config(cfg), audit=audit)
        self.servicer = CatalogServicer(self.catalog, frozenset(cfg.security.administrators),
                                        sync=lambda agency: newest_commit(ingest, agency),
                                        dcat_base=cfg.catalog.dcat_base)
        self.watch = SchemaWatch(self.catalog, ingest)
        ingest.listeners.append(self.watch.notice)
        self._overdue: dict[str, int] | None = None
        self._thread: threading.Thread | None = None

    def add_to_server(self, server: grpc.Server) -> None:
        pb_grpc.add_CatalogServicer_to_server(self.servicer, server)

    def start(self) -> None:
        self.refresh()  # the status page and metric have figures from the start
        self._thread = threading.Thread(target=self.watch.run, args=(WATCH_SECONDS, self.refresh),
                                        name="catalog-watch", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Recount overdue entries per agency (they fall due as time passes) into the metric."""
        try:
            counts = reports.overdue_by_agency(self.catalog)
        except ValueError as e:  # a year the working-day calendar does not know
            log.error("cannot count overdue catalog entries: %s", e)
            return
        for agency, count in counts.items():
            metrics.CATALOG_OVERDUE.labels(agency).set(count)
        self._overdue = counts

    def overdue_counts(self) -> dict[str, int] | None:
        """Overdue entries per agency as of the latest refresh (None before the first)."""
        return self._overdue

    def stop(self) -> None:
        self.watch.stop()
        if self._thread is not None:
            self._thread.join(10)
        self.catalog.close()
