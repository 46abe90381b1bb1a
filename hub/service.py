"""``exchange hub run``: serve the hub's gRPC API and metrics until signalled."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from eventsourcing.persistence import PersistenceError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from exchange.common.config import Config
from exchange.common.stall import Watchdog
from exchange.common.urls import redact_url
from exchange.contracts.errors import InvalidInput
from exchange.store import StoreError, open_store
from exchange.store.at_rest import store_cipher
from exchange.transport.rpc import tls
from hub import audit_reconcile, identity, single_hub, status, upstream, web
from hub import config as hub_config
from hub import inbox as hub_inbox
from hub import sftp_inbox as hub_sftp_inbox
from hub.api import ExchangeServicer
from hub.audit import AuditError, AuditLog, ChainWatch, open_audit
from hub.catalog import schedule
from hub.catalog.serve import SERVICE_NAME as CATALOG_SERVICE
from hub.catalog.serve import CatalogRuntime
from hub.ingest import Ingest
from hub.metrics import METRICS, HubState
from hub.registry.api import SERVICE_NAME as REGISTRY_SERVICE
from hub.sharing import setup as hub_sharing
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

EXCHANGE_SERVICE = pb.DESCRIPTOR.services_by_name["Exchange"].full_name
GRACE_SECONDS = 5.0
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # Without this a second hub could bind the same port and share the load.
    ("grpc.so_reuseport", 0),
]


def run(cfg: Config) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop, 2 on a setup error."""
    try:
        store = open_store(cfg.store.url, cipher=store_cipher(cfg))
        agencies = store.agencies()  # opens the database now, so a bad path fails here
    except (StoreError, PersistenceError, sqlite3.Error, OSError) as e:  # includes a bad cipher key
        log.error("cannot open the hub store %s: %s", redact_url(cfg.store.url), e)
        return 2
    _warn_failover_risk(store)
    try:
        claimed = single_hub.claim(cfg.store.url)
    except (StoreError, OSError) as e:
        log.error("cannot serve the hub store: %s", e)
        store.close()
        return 2
    listener = None
    try:
        watchdog = Watchdog(cfg.watchdog.stall_seconds, METRICS.stalls)
        ingest = Ingest(store, cfg.store.batch_bytes, watchdog.start())
        listener = store.listen_stored(ingest.stored_elsewhere)  # batches other hubs store
        try:
            _check_readable(ingest, agencies)  # a wrong cipher key fails here
        except StoreError as e:
            log.error("cannot read the hub store %s: %s", redact_url(cfg.store.url), e)
            return 2
        started = _start_audit(cfg)
        if started is None:
            return 2
        audit, watch = started
        try:
            _reconcile_audit(store, audit, cfg.audit.peers)
            try:
                credentials = _credentials(cfg, audit)
            except tls.TLSError as e:
                log.error("cannot serve: %s", e)
                return 2
            try:
                catalog = CatalogRuntime(cfg, ingest, audit)
            except (StoreError, PersistenceError, sqlite3.Error, OSError, ValueError) as e:
                log.error("cannot open the catalog: %s", e)
                return 2
            try:
                return _serve(cfg, ingest, audit, credentials, catalog)
            finally:
                catalog.stop()
        finally:
            watch.stop()
            audit.record("hub.stopped", "hub")
    finally:
        if listener is not None:
            listener.close()
        store.close()
        single_hub.release(claimed)


def _warn_failover_risk(store: Any) -> None:
    """Log when the store names standbys but a promotion could lose acknowledged batches."""
    check = getattr(store, "failover_risk", None)
    try:
        risk = check() if check is not None else None
    except (PersistenceError, StoreError) as e:
        log.warning("cannot read the store's replication settings: %s", e)
        return
    if risk:
        log.warning("the hub store names several servers, but %s: batches acknowledged to nodes may be missing "
                    "on a promoted standby; set synchronous_commit = on and synchronous_standby_names "
                    "(docs/scaling.md)", risk, extra={"risk": risk})


def _reconcile_audit(store: Any, audit: AuditLog, peers: list[str]) -> None:
    """Audit the decisions a crash left stored but unaudited in every hub's log (hub/audit_reconcile.py)."""
    try:
        audit_reconcile.repair(store, audit, peers)
    except AuditError as e:  # a broken chain: the chain watch reports it; appending would not mend it
        log.error("cannot reconcile the store with the audit log: %s", e)


def _start_audit(cfg: Config) -> tuple[AuditLog, ChainWatch] | None:
    """Open the audit log, record the start and begin verifying the chain; None (logged) when it cannot."""
    try:
        audit = open_audit(cfg)
        watch = ChainWatch(audit.path, cfg.audit.verify_interval)
        # An unreadable last entry fails here: appending after it would hide it.
        audit.record("hub.started", "hub", address=cfg.listen.address, store=redact_url(cfg.store.url))
    except (AuditError, ValueError, OSError) as e:
        log.error("cannot use the audit log: %s", e)
        return None
    watch.start()
    return audit, watch


def _credentials(cfg: Config, audit: AuditLog) -> grpc.ServerCredentials | None:
    """Mutual TLS credentials (and the revocation list for the identity layer);
    None for an explicitly insecure hub on a loopback address.  Raises TLSError."""
    address = cfg.listen.address
    if cfg.listen.insecure:
        if cfg.tls.cert:
            raise tls.TLSError("[listen] insecure = true and [tls] cert are both set: choose one")
        if not tls.is_loopback(address):
            raise tls.TLSError(f"[listen] insecure = true is refused on {address}: without TLS the hub may only "
                               "listen on a loopback address (127.0.0.1, ::1, localhost); configure [tls]")
        identity.configure(secure=False, audit=audit)
        return None
    if not cfg.tls.cert:
        raise tls.TLSError("no [tls] ca, cert and key: issue them with exchange ca (docs/security.md), "
                           "or set [listen] insecure = true to serve plain gRPC on a loopback address for tests")
    credentials = tls.server_credentials(cfg)
    revocations = tls.RevocationList(cfg.tls.crl, cfg.tls.ca) if cfg.tls.crl else None
    if revocations is None:
        log.warning("no [tls] crl set: revoked certificates cannot be refused")
    identity.configure(secure=True, revocations=revocations, audit=audit)
    return credentials


def _serve(cfg: Config, ingest: Ingest, audit: AuditLog, credentials: grpc.ServerCredentials | None,
           catalog: CatalogRuntime) -> int:
    try:
        scheduled = schedule.check_settings(cfg.evaluation.interval, cfg.evaluation.at, cfg.evaluation.directory)
    except InvalidInput as e:
        log.error("cannot schedule the evaluation: %s", e)
        return 2
    try:
        forwarding = upstream.Upstream(cfg, ingest) if upstream.configured(cfg) else None
    except (InvalidInput, tls.TLSError) as e:
        log.error("cannot forward to the city hub: %s", e)
        return 2
    # Every open publish or subscribe stream holds a worker thread.  Beyond [listen] max_streams
    # calls, clients get RESOURCE_EXHAUSTED instead of waiting unanswered.
    workers = ThreadPoolExecutor(max_workers=cfg.listen.max_streams, thread_name_prefix="hub-rpc")
    server = grpc.server(
        workers,
        options=SERVER_OPTIONS + [("grpc.max_receive_message_length", cfg.listen.max_message_bytes)],
        maximum_concurrent_rpcs=cfg.listen.max_streams,
        interceptors=[identity.CertificateCheck()],
    )
    board = status.StatusBoard()
    exchange_servicer = ExchangeServicer(ingest, cfg.listen.max_batch, board, audit, METRICS,
                                         downstream=hub_config.downstream_hubs(cfg))
    pb_grpc.add_ExchangeServicer_to_server(exchange_servicer, server)
    catalog.add_to_server(server)
    sharing = hub_sharing.start(cfg, ingest, server, exchange_servicer, audit=audit, catalog=catalog.catalog)
    catalog.servicer.late_answers = sharing.ledger.late_answers  # the evaluation report's late answers (Art. 22)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (EXCHANGE_SERVICE, CATALOG_SERVICE, REGISTRY_SERVICE, hub_sharing.SHARING_SERVICE, hub_sharing.QUERY_SERVICE,
         hub_sharing.RECEIPTS_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server
    )

    address = cfg.listen.address
    try:
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        log.error("cannot listen on %s: the address is in use or not valid; check [listen] address", address)
        return 2
    if credentials is None:
        log.warning("INSECURE: listening on %s WITHOUT TLS ([listen] insecure = true): no client certificates, "
                    "every local caller may act for any agency; for tests and demos on one machine only", address,
                    extra={"address": address, "insecure": True})
    try:
        inbox = hub_inbox.start(cfg, ingest, audit)
    except (ValueError, StoreError, OSError) as e:  # a bad key file, setting or directory
        log.error("cannot start the bundle inbox %s: %s", cfg.inbox.path, e)
        return 2
    try:
        sftp_inbox = hub_sftp_inbox.start(cfg, ingest, audit)
    except (ValueError, StoreError, OSError) as e:
        log.error("cannot start the SFTP inbox %s: %s", cfg.sftp_inbox.host, e)
        if inbox is not None:
            inbox.stop()
        return 2
    state = HubState(ingest, board, catalog.overdue_counts, sharing.ledger.overdue_counts)
    METRICS.registry.register(state)
    evaluation = schedule.Evaluation(catalog.catalog, cfg.evaluation.directory, sync=ingest.newest_commit,
                                     late_answers=sharing.ledger.late_answers,
                                     overdue_requests=sharing.ledger.overdue_counts, deliveries=sharing.receipts.counts)
    gauges = schedule.EvaluationGauges(evaluation)
    METRICS.registry.register(gauges)
    evaluating = schedule.EvaluationSchedule(evaluation, cfg.evaluation.interval, cfg.evaluation.at) if scheduled else None
    try:
        http = web.serve(cfg.metrics.address, cfg.metrics.port,
                         lambda: status.report(ingest, board, catalog.overdue_counts(), sharing.ledger.overdue_counts(),
                                               forwarding.progress() if forwarding is not None else None))
    except OSError as e:
        log.error("cannot serve metrics on %s:%s: %s", cfg.metrics.address, cfg.metrics.port, e)
        METRICS.registry.unregister(state)
        METRICS.registry.unregister(gauges)
        if inbox is not None:
            inbox.stop()
        if sftp_inbox is not None:
            sftp_inbox.stop()
        return 2

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        catalog.start()
        if forwarding is not None:
            forwarding.start()
        if evaluating is not None:
            evaluating.start()
        for service in ("", EXCHANGE_SERVICE, CATALOG_SERVICE, REGISTRY_SERVICE, hub_sharing.SHARING_SERVICE,
                        hub_sharing.QUERY_SERVICE, hub_sharing.RECEIPTS_SERVICE):
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        metrics_at = f"{cfg.metrics.address}:{cfg.metrics.port}" if cfg.metrics.port else "off"
        log.info("hub listening on %s (store %s, metrics and status page %s)", address, redact_url(cfg.store.url),
                 metrics_at, extra={"address": address, "store": redact_url(cfg.store.url), "metrics": metrics_at})
        stop.wait()
        log.info("hub stopping")
        exit_after(cfg.watchdog.stop_seconds, ingest.watchdog)
        health_servicer.enter_graceful_shutdown()
        server.stop(GRACE_SECONDS).wait()
        workers.shutdown(wait=True)  # cancelled streams end at their next check; the store outlives them
    finally:
        if forwarding is not None:
            forwarding.stop()
        if evaluating is not None:
            evaluating.stop()
        METRICS.registry.unregister(state)
        METRICS.registry.unregister(gauges)
        sharing.stop()
        if inbox is not None:
            inbox.stop()
        if sftp_inbox is not None:
            sftp_inbox.stop()
        if http is not None:
            http.shutdown()
            http.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("hub stopped")
    return 0


def exit_after(seconds: float, watchdog: Watchdog | None) -> threading.Timer:
    """End the process ``seconds`` from now unless it has ended by then (logged with
    what its steps wait on): a worker stuck in a call that never returns cannot keep
    a stopping hub alive."""
    def hard_exit() -> None:
        waiting = "; ".join(f"{s['step']} waiting on {s['waiting_on']}" for s in watchdog.stalled(0)) if watchdog else ""
        log.error("hub did not stop within %.0f seconds of the stop signal%s; exiting now", seconds,
                  f" ({waiting})" if waiting else "", extra={"seconds": seconds})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)
    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True
    timer.start()
    return timer


def _check_readable(ingest: Ingest, agencies: list[str]) -> None:
    """Read each agency's newest event, so a store the hub cannot read fails at start (StoreError)."""
    for agency in agencies:
        ingest.newest_commit(agency)

