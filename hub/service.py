"""``exchange hub run``: serve the hub's gRPC API and metrics until signalled."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from eventsourcing.persistence import PersistenceError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.store import EventStore, StoreError, redact_url
from hub import inbox as hub_inbox
from hub import metrics, status, web
from hub.api import ExchangeServicer
from hub.catalog.serve import SERVICE_NAME as CATALOG_SERVICE
from hub.catalog.serve import CatalogRuntime
from hub.ingest import Ingest
from hub.sharing import setup as hub_sharing
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

EXCHANGE_SERVICE = pb.DESCRIPTOR.services_by_name["Exchange"].full_name
# Every open publish or subscribe stream holds a worker thread.  Beyond this
# many calls, clients get RESOURCE_EXHAUSTED instead of waiting unanswered.
WORKERS = 64
GRACE_SECONDS = 5.0
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Without this a second hub could bind the same port and share the load.
    ("grpc.so_reuseport", 0),
]


def run(cfg: dict[str, Any]) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop, 2 on a setup error."""
    if cfg["listen.max_batch"] < 1:
        log.error("[listen] max_batch must be at least 1, got %d", cfg["listen.max_batch"])
        return 2
    try:
        store = EventStore(cfg["store.url"])
        agencies = store.agencies()  # opens the database now, so a bad path fails here
    except (StoreError, PersistenceError, sqlite3.Error, OSError) as e:
        log.error("cannot open the hub store %s: %s", redact_url(cfg["store.url"]), e)
        return 2
    try:
        ingest = Ingest(store)
        _restore_metrics(ingest, agencies)
        try:
            catalog = CatalogRuntime(cfg, ingest)
        except (StoreError, PersistenceError, sqlite3.Error, OSError, ValueError) as e:
            log.error("cannot open the catalog: %s", e)
            return 2
        try:
            return _serve(cfg, ingest, catalog)
        finally:
            catalog.stop()
    finally:
        store.close()


def _serve(cfg: dict[str, Any], ingest: Ingest, catalog: CatalogRuntime) -> int:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="hub-rpc"),
        options=SERVER_OPTIONS,
        maximum_concurrent_rpcs=WORKERS,
    )
    board = status.StatusBoard()
    exchange_servicer = ExchangeServicer(ingest, cfg["listen.max_batch"], board)
    pb_grpc.add_ExchangeServicer_to_server(exchange_servicer, server)
    catalog.add_to_server(server)
    sharing = hub_sharing.start(cfg, ingest, server, exchange_servicer, catalog=catalog.catalog)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (EXCHANGE_SERVICE, CATALOG_SERVICE, hub_sharing.SHARING_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server
    )

    address = cfg["listen.address"]
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        log.error("cannot listen on %s: the address is in use or not valid; check [listen] address", address)
        return 2
    if not _is_loopback(address):
        log.warning("listening on %s without TLS: anyone on the network can publish and subscribe", address)
    try:
        inbox = hub_inbox.start(cfg, ingest)
    except (ValueError, StoreError, OSError) as e:  # a bad key file, setting or directory
        log.error("cannot start the bundle inbox %s: %s", cfg["inbox.path"], e)
        return 2
    try:
        http = web.serve(cfg["metrics.address"], cfg["metrics.port"],
                         lambda: status.report(ingest, board, catalog.overdue_counts(), sharing.ledger.refresh_overdue()))
    except OSError as e:
        log.error("cannot serve metrics on %s:%s: %s", cfg["metrics.address"], cfg["metrics.port"], e)
        if inbox is not None:
            inbox.stop()
        return 2

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        catalog.start()
        for service in ("", EXCHANGE_SERVICE, CATALOG_SERVICE, hub_sharing.SHARING_SERVICE):
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        metrics_at = f"{cfg['metrics.address']}:{cfg['metrics.port']}" if cfg["metrics.port"] else "off"
        log.info("hub listening on %s (store %s, metrics and status page %s)", address, redact_url(cfg["store.url"]),
                 metrics_at, extra={"address": address, "store": redact_url(cfg["store.url"]), "metrics": metrics_at})
        stop.wait()
        log.info("hub stopping")
        health_servicer.enter_graceful_shutdown()
        server.stop(GRACE_SECONDS).wait()
    finally:
        sharing.stop()
        if inbox is not None:
            inbox.stop()
        if http is not None:
            http.shutdown()
            http.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("hub stopped")
    return 0


def _restore_metrics(ingest: Ingest, agencies: list[str]) -> None:
    """Publish positions and commit times of what the store already holds
    (and no open publish stream, so a node that never reconnects is seen)."""
    for agency in agencies:
        metrics.POSITION.labels(agency).set(ingest.position(agency))
        metrics.PUBLISHERS.labels(agency).set(0)
        last = ingest.read(agency, ingest.hub_position(agency) - 1, 1)
        if last:
            metrics.record_commit_time(agency, last[0].state)


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
