"""Event stores for nodes and the hub, opened from a store URL.

One store holds the events of one or more agencies, each in its own
notification log (table ``events_<agency>``), so that replaying or serving
one agency never scans another's history.  Positions are kept with the
library's tracking records, written in the same transaction as the events.

Backends: ``sqlite:///PATH`` (exchange.store.sqlite) and
``postgresql://USER@HOST:PORT/DB`` (exchange.store.postgres).  Both give
recorders with the same methods:

- ``insert_events(stored_events, tracking=..., states=..., expected_position=...)``:
  one transaction; refuses a gap in any record's versions (VersionGapError,
  nothing written) and, with ``expected_position``, a tracked position that
  another writer moved (PositionMoved; on PostgreSQL the check holds a
  transaction-scoped advisory lock on the position's name, so writers of one
  position take turns whichever process they run in);
- ``read(after, limit)``, the library's ``select_notifications`` and
  ``select_events``, ``count_after(position)``, ``max_notification_id()``,
  ``max_versions(hex ids)``: each record's highest stored version;
- ``position(name)`` / ``insert_tracking(Tracking)``: tracked positions;
- node recorders also ``record_states(oids)``: each record's latest state,
  ``live_records(table_id, mark, after, limit)``: a page of a table's live
  records not marked with ``mark`` (truncates and re-snapshots), and
  ``unfiled_records`` / ``file_records``: the one-time filing of states
  written before states named their table and key.

Besides the agencies' logs, a store holds logs of its own (``log(name)``:
the hub's catalog and sharing logs).  Every log of a store opened with a
cipher is sealed at rest (exchange.store.at_rest).
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, NamedTuple, Protocol, Sequence
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent, Tracking

from exchange.contracts.agency import check_agency
from exchange.contracts.errors import ExchangeError, OperationFailed

if TYPE_CHECKING:
    from exchange.store.at_rest import StateCipher

_log = logging.getLogger(__name__)

OWN_LOG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StoreError(ExchangeError):
    """A store URL or store content problem, described for the operator."""


class VersionGapError(IntegrityError, OperationFailed):
    """A batch would leave a gap in a record's versions."""

    def __init__(self, originator_id: UUID | str, expected: int, got: int):
        originator_id = str(UUID(str(originator_id)))
        self.originator_id = originator_id
        self.expected = expected
        self.got = got
        super().__init__(f"record {originator_id}: expected version {expected}, got {got}")


class PositionMoved(OperationFailed):
    """A tracked position is no longer the one a batch was prepared against:
    another writer (a second hub, a second publisher) stored events meanwhile."""

    def __init__(self, name: str, expected: int, actual: int):
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(f"position {name} is {actual}, not the expected {expected}")


def expected_position(read: Callable[[str], int | None], kwargs: dict[str, Any]) -> None:
    """Inside an insert's transaction: raise PositionMoved unless the tracked position
    is the ``expected_position`` the caller passed with its ``tracking`` (no check without one).
    ``read`` reads a tracked position in that transaction."""
    expected, tracking = kwargs.get("expected_position"), kwargs.get("tracking")
    if expected is None or tracking is None:
        return
    actual = read(tracking.application_name) or 0
    if actual != expected:
        raise PositionMoved(tracking.application_name, expected, actual)


class StoredNotification(NamedTuple):
    """A notification as replay reads it: the originator id as the store holds it (text or UUID), the
    state in plaintext; a tuple, quicker to make by the thousand than the library's Notification."""

    id: int
    originator_id: UUID | str
    originator_version: int
    topic: str
    state: bytes

    @classmethod
    def of(cls, n: Notification) -> StoredNotification:
        """The tuple of one of the library's notifications."""
        return cls(n.id, n.originator_id, n.originator_version, n.topic, n.state)


@dataclass(frozen=True)
class RecordState:
    """A record's latest version and image digest, as the node holds it.

    ``table_id`` is the id of its table's schema aggregate, ``key`` its
    primary key as the event mapper encodes it (None for the schema aggregate
    itself; sealed at rest with the store's cipher), ``mark`` the number of
    the last snapshot pass of its table that read or changed it (for the
    schema aggregate: the table's current pass).  States written before these
    existed read as None until filed (``file_records``)."""

    version: int
    image_hash: str
    live: bool
    table_id: str | None = None
    key: bytes | None = None
    mark: int | None = None


class AgencyRecorder(Protocol):
    """An agency's notification log (what both backends provide)."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None: ...
    def read(self, after: int, limit: int) -> Sequence[Notification]: ...
    def read_stored(self, after: int, limit: int) -> Sequence[StoredNotification]: ...
    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *, inclusive_of_start: bool = True) -> Sequence[Notification]: ...
    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]: ...
    def count_after(self, position: int = 0) -> int: ...
    def max_versions(self, oids: Sequence[str]) -> dict[str, int]: ...
    def max_notification_id(self) -> int | None: ...
    def position(self, name: str) -> int: ...
    def insert_tracking(self, tracking: Tracking) -> None: ...
    def advance_notification_ids(self, beyond: int) -> None: ...


class NodeRecorder(AgencyRecorder, Protocol):
    """A node's notification log, which also keeps each record's state."""

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]: ...
    def live_records(self, table_id: str, mark: int, after: str | None,
                     limit: int) -> list[tuple[str, RecordState]]: ...
    def unfiled_records(self) -> bool: ...
    def file_records(self, filed: dict[str, tuple[str, bytes | None]]) -> None: ...


def hex_id(originator_id: UUID | str) -> str:
    """A record id as ``UUID.hex`` gives it, from a UUID or any text ``UUID()`` reads (ValueError otherwise)."""
    if isinstance(originator_id, UUID):
        return originator_id.hex
    digits = originator_id.replace("-", "")
    if len(digits) == 32:
        # Hex digits with dashes anywhere, the common case, read without making a UUID (several times quicker):
        # 16 bytes from 32 characters means every one was a hex digit (fromhex skips whitespace).
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raw = b""
        if len(raw) == 16:
            return raw.hex()
    return UUID(originator_id).hex


def chunks(seq: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def check_distinct(agency: str, held: Iterable[str]) -> None:
    """StoreError when ``agency`` differs from one of the ``held`` agency ids only in letter case
    (SQLite's table names ignore case: the two would share one log)."""
    same = [a for a in held if a.lower() == agency.lower() and a != agency]
    if same:
        raise StoreError(f"agency id {agency} differs from {same[0]}, whose log this store holds, only in letter "
                         "case; agency ids must differ in more than case")


def check_continuity(stored_events: Sequence[StoredEvent], max_versions: Callable[[list[str]], dict[str, int]],
                     hex_ids: Sequence[str] | None = None) -> None:
    """Raise VersionGapError unless each record's versions in the batch follow
    on, without a gap, from its stored version (``max_versions`` maps hex ids
    to the highest stored version).  ``hex_ids``: the events' ids as ``hex_id``
    gives them, when the caller has them already."""
    if hex_ids is None:
        hex_ids = [hex_id(s.originator_id) for s in stored_events]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for oid, s in zip(hex_ids, stored_events):
        version = s.originator_version
        previous = last.get(oid)
        if previous is None:
            first[oid] = version
        elif version != previous + 1:
            raise VersionGapError(oid, previous + 1, version)
        last[oid] = version
    stored = max_versions(list(first))
    for oid, version in first.items():
        expected = stored.get(oid, 0) + 1
        if version != expected:
            raise VersionGapError(oid, expected, version)


class AgencyLogs:
    """What both store backends share: one recorder per agency and kind,
    created once (creating two at a time races on the tracking table)."""

    agency_recorder_class: type
    node_recorder_class: type
    url: str

    def __init__(self, datastore: Any, create: bool, cipher: StateCipher | None = None):
        self.datastore = datastore
        self.create = create  # False: only open logs that exist (readers never race a writer creating tables)
        self.cipher = cipher  # event states encrypted at rest (None: plaintext)
        self._recorders: dict[tuple[str, type], Any] = {}
        self._lock = threading.RLock()  # log() opens agency logs while it holds it

    def recorder(self, agency: str) -> AgencyRecorder:
        """The notification log of ``agency`` (created when missing)."""
        return self._recorder(agency, self.agency_recorder_class)

    def node_recorder(self, agency: str) -> NodeRecorder:
        """The node's notification log of ``agency``, with record states."""
        return self._recorder(agency, self.node_recorder_class)

    def _recorder(self, agency: str, kind: type) -> Any:
        key = (check_agency(agency), kind)
        with self._lock:
            if key not in self._recorders:
                held = self.agencies()
                if not self.create and agency not in held:
                    raise StoreError(f"the store holds no event log of agency {agency}")
                check_distinct(agency, held)
                recorder = kind(self.datastore, events_table_name="events_" + agency, cipher=self.cipher)
                if self.create:
                    with self.creating():
                        recorder.create_table()
                recorder.read(0, 1)  # a wrong or missing cipher key fails here, when the log is opened
                self._recorders[key] = recorder
            return self._recorders[key]

    def log(self, name: str) -> AgencyRecorder:
        """The store's own log ``name`` (e.g. the hub's ``catalog_events``), created when missing.

        Its table name must not start with ``events_`` (agency logs).  With a
        cipher, states left in plaintext by releases that did not seal these
        logs are sealed in place when the log is opened, provided the agency
        logs are sealed with the same key (docs/audit-and-encryption.md)."""
        if not OWN_LOG_PATTERN.match(name) or name.startswith("events_"):
            raise StoreError(f"invalid log name {name!r}: use lower-case letters, digits and underscores, "
                             "not starting with events_ (agency logs)")
        key = (name, self.agency_recorder_class)
        with self._lock:
            if key not in self._recorders:
                recorder = self.agency_recorder_class(self.datastore, events_table_name=name, cipher=self.cipher)
                with self.creating():
                    recorder.create_table()
                if self.cipher is not None and recorder.has_plaintext():
                    for agency in self.agencies():
                        self.recorder(agency)  # refuses a store whose agency logs are not sealed with this key
                    sealed = recorder.seal_plaintext()
                    _log.warning("sealed %d events of log %s that were stored in plaintext", sealed, name,
                                 extra={"log": name, "sealed": sealed})
                recorder.read(0, 1)  # a wrong cipher key fails here, when the log is opened
                self._recorders[key] = recorder
            return self._recorders[key]

    def creating(self) -> ContextManager[None]:
        """Held while tables are created: other processes on the store wait (a no-op by default)."""
        return nullcontext()

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        raise NotImplementedError

    def listen_stored(self, on_stored: Callable[[str, int], None]) -> Any:
        """A listener (with ``close()``) calling ``on_stored(log name, last notification id)`` for
        each batch another process stores; None where one process serves the store (SQLite)."""
        return None

    def close(self) -> None:
        self.datastore.close()


def open_store(url: str, *, create: bool = True, cipher: StateCipher | None = None) -> AgencyLogs:
    """Open the store at ``url``: a SQLiteEventStore or a PostgresEventStore.

    ``create``: False opens only logs that exist; ``cipher`` (exchange.store.at_rest.StateCipher)
    seals event states at rest."""
    if url.startswith("sqlite:"):
        from exchange.store.sqlite import SQLiteEventStore

        return SQLiteEventStore(url, create=create, cipher=cipher)
    if url.startswith(("postgresql://", "postgres://")):
        from exchange.store.postgres import PostgresEventStore

        return PostgresEventStore(url, create=create, cipher=cipher)
    raise StoreError(f"unsupported store URL {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


EventStore = open_store  # the former name, for existing callers


__all__ = [
    "AgencyRecorder",
    "EventStore",
    "NodeRecorder",
    "PositionMoved",
    "RecordState",
    "StoreError",
    "Tracking",
    "VersionGapError",
    "check_continuity",
    "open_store",
]
