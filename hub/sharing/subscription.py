"""A consumer's subscription to one of a provider's resources (Subscribe with ``consumer`` set).

Positions contract: the stream starts with a batch holding no events,
``reached`` = the requested ``after`` and the entitled ``items``; every
later batch holds the entitled events (projected) among the provider's
events after the previous batch's ``reached``, up to its own ``reached``.
A consumer that stores ``reached`` with what it applied resumes without gap
or duplicate.  The entitlement is checked before every batch and at least
every ``ENTITLEMENT_POLL`` seconds while waiting for new events: when it is
lost the call ends with PERMISSION_DENIED, when its items or its row
filter change with ABORTED, and no event is sent after either.  With a row
filter every batch carries it in ``rows`` and its events are cut to the
rows it matches (hub/sharing/scoped.py) before they are cut to the items.
"""

from __future__ import annotations

import logging
from typing import Iterator

import grpc

from exchange.transport.wire import to_wire
from hub import identity
from hub.ingest import Ingest
from hub.sharing.ledger import Entitlement, NotEntitled, SharingLedger
from hub.sharing.projection import project
from hub.sharing.scoped import RecordHistory, within
from protos.exchange.v1 import exchange_pb2 as pb

log = logging.getLogger(__name__)

ENTITLEMENT_POLL = 0.25


def stream(ingest: Ingest, ledger: SharingLedger, provider: str, consumer: str, request: pb.SubscribeRequest,
           limit: int, context: grpc.ServicerContext) -> Iterator[pb.EventBatch]:
    """The batches of a consumer subscription (see the module docstring)."""
    resource = request.resource
    if not resource:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a consumer subscription names the resource it wants")
    granted = _entitlement(ledger, consumer, provider, resource, context)
    purpose = granted.purpose or request.purpose
    if not purpose:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"state the purpose of receiving {provider}/{resource} (Art. 17: deliveries are recorded with it)")
    items = sorted(granted.items)
    history = RecordHistory(ingest, provider, ledger.current) if granted.rows is not None else None
    after = request.after
    log.info("consumer %s subscribed to %s/%s after %d (items %s)", consumer, provider, resource, after, items,
             extra={"agency": provider, "consumer": consumer, "resource": resource})
    yield pb.EventBatch(after=after, reached=after, items=items, rows=granted.rows_text)
    while context.is_active():
        _recheck(ledger, granted, context)
        notifications = ingest.read(provider, after, limit)
        if not notifications:
            ingest.wait(provider, after, ENTITLEMENT_POLL)
            continue
        in_scope = notifications if history is None else within(notifications, resource, granted.rows, history)
        projected = project(in_scope, resource, granted.items)
        reached = notifications[-1].id
        _recheck(ledger, granted, context)
        batch = to_wire(projected, after)
        batch.reached, batch.items[:], batch.rows = reached, items, granted.rows_text
        if projected:  # recorded before sending: a record may name a batch the consumer never read, never the reverse
            ledger.metrics.events_delivered.labels(provider).inc(len(projected))
            ledger.record_delivery(granted, purpose=purpose, events=len(projected), after=after, reached=reached,
                                   mode="stream")
        yield batch
        after = reached


def _entitlement(ledger: SharingLedger, consumer: str, provider: str, resource: str,
                 context: grpc.ServicerContext) -> Entitlement:
    try:
        return ledger.entitlement(consumer, provider, resource)
    except NotEntitled as e:
        refuse(ledger, consumer, provider, resource, str(e), context)


def _recheck(ledger: SharingLedger, granted: Entitlement, context: grpc.ServicerContext) -> None:
    """End the call unless the caller's certificate and its entitlement both still hold, unchanged."""
    identity.peer(context)  # a certificate revoked or expired since the stream opened ends it here
    now = _entitlement(ledger, granted.consumer, granted.provider, granted.resource, context)
    if now.items != granted.items:
        context.abort(grpc.StatusCode.ABORTED,
                      f"the entitled data items of {granted.provider}/{granted.resource} changed to "
                      f"{sorted(now.items)}: subscribe again")
    if now.rows_text != granted.rows_text:
        context.abort(grpc.StatusCode.ABORTED,
                      f"the approved row filter of {granted.provider}/{granted.resource} changed to "
                      f"{now.rows_text or 'every row'}: subscribe again")


def refuse(ledger: SharingLedger, consumer: str, provider: str, resource: str, reason: str,
           context: grpc.ServicerContext) -> None:
    """Count, audit and log a refused delivery, then end the call with PERMISSION_DENIED naming ``reason``."""
    ledger.metrics.share_refused.labels(provider).inc()
    if ledger.audit is not None:
        ledger.audit.record("share.refused", consumer, provider=provider, resource=resource, reason=reason)
    log.info("consumer %s refused %s/%s: %s", consumer, provider, resource, reason,
             extra={"agency": provider, "consumer": consumer, "resource": resource})
    context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
