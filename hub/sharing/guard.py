"""The hub's refusal of published events of resources the catalog says are not shared (Art. 8).

A node keeps such events (``[source] not_shared``); should any arrive
anyway, by gRPC or in a bundle, the whole batch is refused before anything
of it is stored, and the refusal is audited.
"""

from __future__ import annotations

from typing import Any, Sequence

from exchange.transport.wire import MalformedEvent, checked_resource
from hub.catalog.terms import NOT_SHARED, TermsSource
from protos.exchange.v1 import exchange_pb2 as pb


class NotSharedEvents(MalformedEvent):
    """A published batch holds events of a resource published as not shared."""


class NotSharedGuard:
    """An Ingest guard: raises NotSharedEvents for a batch holding not-shared resources' events."""

    def __init__(self, terms: TermsSource, audit: Any = None):
        self.terms = terms
        self.audit = audit

    def __call__(self, agency: str, events: Sequence[pb.Event]) -> None:
        # The resource as the state names it: an envelope claiming another one refuses the batch.
        named = [checked_resource(e) for e in events]
        for resource in sorted(set(named) - {None}):  # type: ignore[type-var]
            terms = self.terms.terms(agency, resource)
            if terms is not None and terms.share_type == NOT_SHARED:
                count = named.count(resource)
                if self.audit is not None:
                    self.audit.record("share.not_shared_refused", agency, resource=resource, events=count,
                                      first=events[0].notification_id, last=events[-1].notification_id)
                raise NotSharedEvents(
                    f"agency {agency}: {count} events of resource {resource}, which its catalog entry {terms.code} "
                    f"publishes as not shared (basis: {terms.basis or 'not given'}); the node must keep them "
                    "([source] not_shared); nothing of the batch was stored")
