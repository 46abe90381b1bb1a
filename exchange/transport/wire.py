"""Conversion between stored notifications and wire events."""

from __future__ import annotations

from typing import Sequence
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from exchange.contracts.errors import ExchangeError
from exchange.contracts.text import excerpt
from protos.exchange.v1 import exchange_pb2 as pb

# Stores keep ids and versions as signed 64-bit integers; the wire allows unsigned ones.
MAX_ID = 2**63 - 1


class MalformedEvent(ValueError, ExchangeError):
    """A wire event that cannot be stored; the message says which field."""


def to_wire(notifications: Sequence[Notification], after: int, head: int = 0) -> pb.EventBatch:
    """A batch of the given consecutive notifications, following ``after``;
    ``head`` is the sender's latest notification id."""
    return pb.EventBatch(
        after=after,
        head=head,
        events=[
            pb.Event(
                notification_id=n.id,
                originator_id=str(n.originator_id),
                originator_version=n.originator_version,
                topic=n.topic,
                state=n.state,
            )
            for n in notifications
        ],
    )


def from_wire_all(events: Sequence[pb.Event]) -> list[StoredEvent]:
    """The stored forms of wire events, as ``from_wire`` gives each, made in one pass; raises MalformedEvent
    naming the first malformed one."""
    try:
        stored = [StoredEvent(UUID(e.originator_id), e.originator_version, e.topic, e.state) for e in events]
    except ValueError:
        stored = []
    if len(stored) != len(events) or not all(0 < s.originator_version <= MAX_ID and s.topic for s in stored) \
            or any(e.notification_id > MAX_ID for e in events):
        return [from_wire(e) for e in events]  # raises for the first malformed event
    return stored


def from_wire(event: pb.Event) -> StoredEvent:
    """The stored form of a wire event; raises MalformedEvent."""
    try:
        originator_id = UUID(event.originator_id)
    except ValueError:
        raise MalformedEvent(
            f"event {event.notification_id}: originator_id {excerpt(event.originator_id)} is not a UUID"
        ) from None
    if event.originator_version < 1:
        raise MalformedEvent(f"event {event.notification_id}: originator_version must be >= 1")
    if event.originator_version > MAX_ID or event.notification_id > MAX_ID:
        raise MalformedEvent(f"event {event.notification_id}: notification id or originator_version is too large "
                             f"(at most {MAX_ID})")
    if not event.topic:
        raise MalformedEvent(f"event {event.notification_id}: topic is empty")
    return StoredEvent(
        originator_id=originator_id,
        originator_version=event.originator_version,
        topic=event.topic,
        state=event.state,
    )
