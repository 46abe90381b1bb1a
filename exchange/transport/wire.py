"""Conversion between stored notifications and wire events."""

from __future__ import annotations

from typing import Sequence
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent

from exchange.contracts.envelope import header, operation
from exchange.contracts.errors import ExchangeError
from exchange.contracts.text import excerpt
from exchange.store import hex_id
from protos.exchange.v1 import exchange_pb2 as pb

# Stores keep ids and versions as signed 64-bit integers; the wire allows unsigned ones.
MAX_ID = 2**63 - 1


class MalformedEvent(ValueError, ExchangeError):
    """A wire event that cannot be stored; the message says which field."""


def to_wire(notifications: Sequence[Notification], after: int, head: int = 0) -> pb.EventBatch:
    """A batch of the given consecutive notifications, following ``after``;
    ``head`` is the sender's latest notification id.  Each event carries its envelope."""
    return pb.EventBatch(after=after, head=head, events=[_event(n) for n in notifications])


def _event(n: Notification) -> pb.Event:
    resource, commit_time, position = header(n.state)
    return pb.Event(notification_id=n.id, originator_id=str(n.originator_id), originator_version=n.originator_version,
                    topic=n.topic, state=n.state, resource=resource or "", operation=operation(n.topic),
                    commit_time=commit_time or 0.0,
                    source_position=position if position is not None and 0 <= position <= MAX_ID else 0)


def commit_time_of(event: pb.Event) -> float | None:
    """The event's source commit time (Unix): its envelope's, else its state's (senders without envelopes)."""
    return event.commit_time or header(event.state).commit_time


def checked_resource(event: pb.Event) -> str | None:
    """The resource the event's state names, for decisions that must hold whatever the sender claims: the
    state is read (envelope or not), and an envelope naming another resource is refused (MalformedEvent)."""
    resource = header(event.state).resource
    if event.resource and event.resource != resource:
        raise MalformedEvent(f"event {event.notification_id}: its envelope names resource {excerpt(event.resource)}, "
                             f"its state {excerpt(resource or 'none')}")
    return resource


def from_wire_all(events: Sequence[pb.Event]) -> list[StoredEvent]:
    """The stored forms of wire events, as ``from_wire`` gives each but with each originator id as the hex text
    of its UUID (``UUID.hex``: what stores write, read without making a UUID), made in one pass; raises
    MalformedEvent naming the first malformed one."""
    try:
        stored = [StoredEvent(hex_id(e.originator_id), e.originator_version, e.topic, e.state) for e in events]
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
