"""The hub's gRPC API: the ``exchange.v1.Exchange`` service."""

from __future__ import annotations

import logging
import time
from typing import Iterator, Mapping

import grpc

from exchange.contracts.agency import InvalidAgency, check_agency
from exchange.contracts.text import bounded
from exchange.store import StoreError, VersionGapError
from exchange.transport.wire import MAX_ID, MalformedEvent, commit_time_of, to_wire
from hub import identity
from hub.audit import AuditLog
from hub.ingest import ConcurrentPublish, Ingest, NotHeld, PositionGap
from hub.metrics import METRICS, HubMetrics
from hub.sharing import subscription as sharing_subscription
from hub.sharing.guard import NotSharedEvents
from hub.status import StatusBoard
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# A subscriber re-reads the log this often even without a wake-up, so a
# missed notification can only delay delivery, never stall it.
POLL_SECONDS = 1.0


class ExchangeServicer(pb_grpc.ExchangeServicer):
    """Publish, Subscribe and GetPosition over an Ingest."""

    def __init__(self, ingest: Ingest, max_batch: int, board: StatusBoard | None = None,
                 audit: AuditLog | None = None, metrics: HubMetrics = METRICS,
                 downstream: Mapping[str, frozenset[str]] | None = None):
        self.metrics = metrics
        self.downstream = downstream or {}  # district hubs and the agencies each may publish ([federation])
        self.ingest = ingest
        self.max_batch = max_batch
        self.board = board or StatusBoard()
        self.audit = audit  # security-relevant actions and deliveries (hub/audit.py)
        self.sharing = None  # a hub.sharing.ledger.SharingLedger: consumer subscriptions (docs/sharing.md)

    def _record(self, action: str, actor: str, **details) -> None:
        if self.audit is not None:
            self.audit.record(action, actor, **details)

    def Publish(self, request_iterator: Iterator[pb.PublishRequest], context: grpc.ServicerContext):
        """Hello, then batches; answer each with the durable position."""
        first = next(request_iterator, None)
        if first is None:
            return
        if first.WhichOneof("kind") != "hello":
            self._refuse(context, "protocol", grpc.StatusCode.INVALID_ARGUMENT,
                         "the first message of a publish stream must be a Hello naming the agency")
        agency = self._agency(identity.publishing_agency(context, first.hello.agency, self.downstream), context)
        self.board.connected(agency, context)
        position = self.ingest.position(agency)
        log.info("publisher connected: agency %s from %s, node version %s, position %d",
                 agency, context.peer(), first.hello.node_version or "unknown", position,
                 extra={"agency": agency, "peer": context.peer(), "position": position})
        publisher = identity.caller(context)  # a district hub's name when it forwards the agency's log
        self._record("publisher.connected", agency, peer=context.peer(), node_version=first.hello.node_version,
                     position=position, **({"hub": publisher} if publisher not in (None, agency) else {}))
        yield pb.PublishResponse(position=position)
        for request in request_iterator:
            if request.WhichOneof("kind") != "batch":
                self._refuse(context, "protocol", grpc.StatusCode.INVALID_ARGUMENT,
                             "only the first message of a publish stream may be a Hello")
            identity.peer(context)  # a certificate revoked or expired since the stream opened stops it here
            position, stored = self._store(agency, request.batch, context)
            yield pb.PublishResponse(position=position, stored=stored)

    def Subscribe(self, request: pb.SubscribeRequest, context: grpc.ServicerContext):
        """The agency's events after ``request.after``, then new ones as they come."""
        agency = self._agency(request.agency, context)  # the provider whose log is read
        if request.after > MAX_ID:
            self._refuse(context, "protocol", grpc.StatusCode.INVALID_ARGUMENT,
                         f"after = {request.after} is beyond the largest notification id ({MAX_ID})")
        limit = min(request.max_batch or self.max_batch, self.max_batch)
        after = request.after
        _track_connected(self.metrics.subscribers, agency, context)
        consumer = identity.acting_agency(context, request.consumer) or agency
        if consumer != agency:
            yield from self._subscribe_consumer(agency, self._agency(consumer, context), request, limit, context)
            return
        # Audit: one delivery summary per subscribe call, recorded when the call ends.
        delivery = {"agency": agency, "after": after, "last": after, "events": 0}
        peer = context.peer()
        context.add_callback(lambda: self._record("subscription.delivered", peer, **delivery))
        while context.is_active():
            identity.peer(context)
            notifications = self.ingest.read(agency, after, limit)
            if not notifications:
                self.ingest.wait(agency, after, POLL_SECONDS)
                continue
            # Audit counts what is handed to the transport (the call may end before the next resume).
            delivery.update(last=notifications[-1].id, events=delivery["events"] + len(notifications))
            yield to_wire(notifications, after)
            self.metrics.events_delivered.labels(agency).inc(len(notifications))
            after = notifications[-1].id

    def _subscribe_consumer(self, provider: str, consumer: str, request: pb.SubscribeRequest, limit: int,
                            context: grpc.ServicerContext):
        """Another agency's subscription: only what it is entitled to (hub/sharing/subscription.py)."""
        if self.sharing is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this hub does not serve consumer subscriptions")
        yield from sharing_subscription.stream(self.ingest, self.sharing, provider, consumer, request, limit, context)

    def GetPosition(self, request: pb.PositionRequest, context: grpc.ServicerContext) -> pb.Position:
        """The node position and latest hub notification id for the agency."""
        agency = self._agency(identity.acting_agency(context, request.agency), context)
        return pb.Position(position=self.ingest.position(agency), hub_position=self.ingest.hub_position(agency))

    def _store(self, agency: str, batch: pb.EventBatch, context: grpc.ServicerContext) -> tuple[int, int]:
        try:
            with self.metrics.store_batch_seconds.time():
                position, stored = self.ingest.ingest(agency, batch)
        except NotSharedEvents as e:
            self._refuse_batch(context, agency, "not_shared", grpc.StatusCode.PERMISSION_DENIED, str(e))
        except MalformedEvent as e:
            self._refuse_batch(context, agency, "malformed", grpc.StatusCode.INVALID_ARGUMENT,
                               f"agency {agency}: {e}")
        except PositionGap as e:
            self._refuse_batch(context, agency, "gap", grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except ConcurrentPublish as e:
            self._refuse_batch(context, agency, "concurrent", grpc.StatusCode.ABORTED, str(e))
        except NotHeld as e:
            self._refuse_batch(context, agency, "not_held", grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except VersionGapError as e:
            self._refuse_batch(
                context, agency, "version_gap", grpc.StatusCode.FAILED_PRECONDITION,
                f"agency {agency}: batch after {batch.after}: record {e.originator_id}: "
                f"expected version {e.expected}, got {e.got}; nothing of the batch was stored",
            )
        except Exception as e:
            log.exception("storing a batch for agency %s failed", agency, extra={"agency": agency})
            self._refuse_batch(context, agency, "internal", grpc.StatusCode.INTERNAL,
                               f"agency {agency}: batch after {batch.after} not stored: {e}")
        duplicates = len(batch.events) - stored
        self.metrics.batches.labels(agency, "stored" if stored else "duplicate").inc()
        self.metrics.events_stored.labels(agency).inc(stored)
        self.metrics.events_duplicate.labels(agency).inc(duplicates)
        if batch.head:
            self.board.set_head(agency, batch.head)
        commit = commit_time_of(batch.events[-1]) if stored else None
        if commit is not None:
            self.board.set_clock_ahead(agency, commit, time.time())
        return position, stored

    def _refuse_batch(self, context: grpc.ServicerContext, agency: str, kind: str, code: grpc.StatusCode,
                      message: str):
        self.metrics.batches.labels(agency, "refused").inc()
        message = bounded(message)
        log.warning("refused a batch: %s", message, extra={"agency": agency, "kind": kind})
        self._record("batch.refused", agency, kind=kind, reason=message, peer=context.peer())
        self._refuse(context, kind, code, message)

    def _agency(self, agency: str, context: grpc.ServicerContext) -> str:
        try:
            self.ingest.position(check_agency(agency))  # opens the log: an id another's differs from by case only fails
            return agency
        except (InvalidAgency, StoreError) as e:
            self._refuse(context, "invalid_agency", grpc.StatusCode.INVALID_ARGUMENT, str(e))

    def _refuse(self, context: grpc.ServicerContext, kind: str, code: grpc.StatusCode, message: str):
        """Count the error and end the call with ``code`` (raises)."""
        self.metrics.errors.labels(kind).inc()
        context.abort(code, bounded(message))


def _track_connected(gauge, agency: str, context: grpc.ServicerContext) -> None:
    """Count the call in ``gauge`` until it ends."""
    gauge.labels(agency).inc()
    if not context.add_callback(gauge.labels(agency).dec):
        gauge.labels(agency).dec()
