"""Hub ingest: stores each agency's published batches exactly once.

The hub's position for an agency is the node notification id recorded as
tracking ``node:<agency>`` in the agency's notification log.  A batch that
starts after that position would leave a gap and is refused; events at or
below it are already stored and are dropped; the rest are written together
with the new position in one transaction.  So a re-sent or overlapping batch
changes nothing, and a crash can never separate events from their position.

Several hubs may serve one PostgreSQL store.  Each transaction states the
position its events were chosen against, and the store checks it under a
lock on the agency's position (exchange.store: ``expected_position``): when
another hub or publisher stored events of the agency meanwhile, the batch is
refused (ConcurrentPublish) and nothing of it is written; the publisher
re-reads the position and resends.  Ingest is also the hub's one way into
agency logs for reading, because opening a log may create its table.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

from eventsourcing.persistence import Notification, StoredEvent

from exchange.common.metrics import commit_timestamp
from exchange.common.stall import Watchdog
from exchange.contracts.agency import check_agency
from exchange.contracts.errors import OperationFailed
from exchange.store import AgencyLogs, AgencyRecorder, PositionMoved, Tracking, check_distinct, hex_id
from exchange.transport.wire import MalformedEvent, from_wire_all
from protos.exchange.v1 import exchange_pb2 as pb

TRACKING_PREFIX = "node:"
ROW_BYTES = 48  # what an event's ids and version take in the store, about (for batch_bytes)


class PositionGap(OperationFailed):
    """A batch starts after the hub's durable position: events would be missing."""

    def __init__(self, agency: str, after: int, position: int):
        self.after = after
        self.position = position
        super().__init__(
            f"agency {agency}: batch starts after node notification id {after}, "
            f"but the hub has stored only up to {position}; resend from {position}"
        )


class ConcurrentPublish(OperationFailed):
    """Another publisher stored events of the agency while this batch was being stored."""

    def __init__(self, agency: str, expected: int, actual: int):
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"agency {agency}: the hub's position moved to node notification id {actual} while this batch "
            f"expected {expected}: another publisher of this agency (a second node, or this node through "
            f"another hub) stored events meanwhile; nothing of the batch was stored; resend from {actual}"
        )


class NotHeld(OperationFailed):
    """A batch re-sends events at or below the hub's position that the hub does not hold."""

    def __init__(self, agency: str, position: int, event: pb.Event):
        super().__init__(
            f"agency {agency}: the hub holds the agency's events up to node notification id {position}, but not "
            f"record {event.originator_id} version {event.originator_version}, which this batch sends as id "
            f"{event.notification_id}: another node of this agency publishes other events (one node per agency), "
            "or this node's store was replaced (restore it with exchange node restore); nothing of the batch "
            "was stored"
        )


class _Agency:
    """In-memory state of one agency's log."""

    def __init__(self) -> None:
        self.recorder: AgencyRecorder | None = None
        self.write_lock = threading.Lock()
        self.changed = threading.Condition()
        self.head = 0  # latest hub notification id written by this process


class Ingest:
    """Stores published batches and reads agency logs for the hub."""

    def __init__(self, store: AgencyLogs, batch_bytes: int = 8 * 1024 * 1024, watchdog: Watchdog | None = None):
        self.store = store
        self.batch_bytes = batch_bytes  # a published batch larger than this is stored in several transactions
        self.watchdog = watchdog
        self._lock = threading.Lock()
        self._agencies: dict[str, _Agency] = {}
        # Called with (agency, new events) after each stored batch, e.g. to notice schema changes.
        self.listeners: list[Callable[[str, Sequence[pb.Event]], None]] = []
        # Called with (agency, new events) before a batch is stored; raising refuses the whole batch.
        self.guards: list[Callable[[str, Sequence[pb.Event]], None]] = []

    def recorder(self, agency: str, *, create: bool = True) -> AgencyRecorder | None:
        """The agency's log; None if it has none yet and ``create`` is false."""
        state = self._agency(agency)
        if state.recorder is None:
            # Creating tables (and the shared tracking table) is not safe to race.
            with self._lock:
                if state.recorder is None and (create or agency in self.store.agencies()):
                    state.recorder = self.store.recorder(agency)
        return state.recorder

    def position(self, agency: str) -> int:
        """The node notification id up to which the agency's events are stored."""
        recorder = self.recorder(agency, create=False)
        return recorder.position(TRACKING_PREFIX + agency) if recorder else 0

    def hub_position(self, agency: str) -> int:
        """The latest hub notification id in the agency's log (0 when empty)."""
        recorder = self.recorder(agency, create=False)
        return (recorder.max_notification_id() or 0) if recorder else 0

    def newest_commit(self, agency: str) -> float | None:
        """Source commit time (Unix) of the agency's newest event at the hub (None without one)."""
        latest = self.hub_position(agency)
        newest = self.read(agency, latest - 1, 1) if latest else []
        return commit_timestamp(newest[0].state) if newest else None

    def read(self, agency: str, after: int, limit: int) -> Sequence[Notification]:
        """Up to ``limit`` notifications of the agency's log after hub id ``after``."""
        recorder = self.recorder(agency, create=False)
        return recorder.read(after, limit) if recorder else []

    def ingest(self, agency: str, batch: pb.EventBatch) -> tuple[int, int]:
        """Store the new part of ``batch``; return (new position, events stored).

        A batch larger than ``batch_bytes`` (in the store) is stored in several
        transactions, each with the position of its last event.  Raises
        MalformedEvent (nothing written then), PositionGap, ConcurrentPublish,
        NotHeld or VersionGapError; nothing of the part that fails is written
        then (earlier parts stay stored, with their position).
        """
        _check_order(batch)
        state = self._agency(agency)
        recorder = self.recorder(agency)
        with state.write_lock:
            position = recorder.position(TRACKING_PREFIX + agency)
            if batch.after > position:
                raise PositionGap(agency, batch.after, position)
            # Ids increase (_check_order): the events at or below the position come first.
            held = bisect_right(batch.events, position, key=_notification_id) if batch.after < position else 0
            new = batch.events[held:] if held else batch.events
            _check_held(agency, recorder, batch.events[:held], position)
            if not new:
                return position, 0
            for guard in self.guards:
                guard(agency, new)
            stored = from_wire_all(new)
            for start, end in _byte_parts(stored, self.batch_bytes):
                # Each part with the node id of its last event: a crash between parts resumes after it.
                expected, position = position, new[end - 1].notification_id
                with self._watch(f"the hub store to take {end - start} events of agency {agency} up to node "
                                 f"notification id {position}"):
                    try:
                        ids = recorder.insert_events(
                            stored[start:end], tracking=Tracking(TRACKING_PREFIX + agency, position),
                            expected_position=expected,
                        )
                    except PositionMoved as e:
                        raise ConcurrentPublish(agency, e.expected, e.actual) from None
                with state.changed:
                    state.head = max(state.head, ids[-1])
                    state.changed.notify_all()
        for listener in self.listeners:
            listener(agency, new)
        return position, len(new)

    def _watch(self, what: str) -> ContextManager[None]:
        return self.watchdog.step("ingest", what) if self.watchdog is not None else nullcontext()

    def stored_elsewhere(self, log_name: str, last_id: int) -> None:
        """Wake the waiters of an agency's log that another process stored up to hub id ``last_id``
        (the store's stored-batch signal)."""
        state = self._agencies.get(log_name.removeprefix("events_")) if log_name.startswith("events_") else None
        if state is None:
            return  # no one here reads that log
        with state.changed:
            if last_id > state.head:
                state.head = last_id
                state.changed.notify_all()

    def wait(self, agency: str, after: int, timeout: float) -> bool:
        """Wait until this process, or another on the store, writes beyond hub id
        ``after`` for the agency, or ``timeout`` seconds pass; True if it did."""
        state = self._agency(agency)
        with state.changed:
            return state.changed.wait_for(lambda: state.head > after, timeout)

    def _agency(self, agency: str) -> _Agency:
        check_agency(agency)
        with self._lock:
            if agency not in self._agencies:
                opened = [a for a, state in self._agencies.items() if state.recorder is not None]
                check_distinct(agency, [*opened, *self.store.agencies()])  # ids merely asked about block nothing
                self._agencies[agency] = _Agency()
            return self._agencies[agency]


def _check_held(agency: str, recorder: AgencyRecorder, resent: Sequence[pb.Event], position: int) -> None:
    """NotHeld unless the hub holds every re-sent event's record at its version (one query; none
    without re-sent events).  What a second node of the agency sends under ids the first one used
    is refused here instead of being dropped as a duplicate."""
    if not resent:
        return
    try:
        oids = [hex_id(e.originator_id) for e in resent]
    except ValueError:
        raise MalformedEvent(f"a re-sent event's originator id is not a UUID: {resent[0].originator_id!r}") from None
    held = recorder.max_versions(list(dict.fromkeys(oids)))
    for oid, event in zip(oids, resent):
        if held.get(oid, 0) < event.originator_version:
            raise NotHeld(agency, position, event)


def _notification_id(event: pb.Event) -> int:
    return event.notification_id


def _byte_parts(events: Sequence[StoredEvent], limit: int) -> list[tuple[int, int]]:
    """(start, end) of the runs ``events`` are cut into, of about ``limit`` bytes in the store at most (a
    larger event alone): each event's state and topic, and ``ROW_BYTES`` for its ids and version."""
    parts: list[tuple[int, int]] = []
    start, size = 0, 0
    for i, event in enumerate(events):
        grown = len(event.state) + len(event.topic) + ROW_BYTES
        if i > start and size + grown > limit:
            parts.append((start, i))
            start, size = i, 0
        size += grown
    parts.append((start, len(events)))
    return parts


def _check_order(batch: pb.EventBatch) -> None:
    previous = batch.after
    for event in batch.events:
        if event.notification_id <= previous:
            raise MalformedEvent(
                f"batch after {batch.after}: notification id {event.notification_id} follows {previous}; "
                "ids must increase"
            )
        previous = event.notification_id
