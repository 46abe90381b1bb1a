"""Event stores for nodes and the hub, opened from a store URL.

One store holds the events of one or more agencies, each in its own
notification log (table ``events_<agency>``), so that replaying or serving
one agency never scans another's history.  Positions are kept with the
library's tracking records, written in the same transaction as the events.

Backends: ``sqlite:///PATH`` (exchange.store.sqlite) and
``postgresql://USER@HOST:PORT/DB`` (exchange.store.postgres).  Both give
recorders with the same methods:

- ``insert_events(stored_events, tracking=..., states=...)``: one transaction;
  refuses a gap in any record's versions (VersionGapError, nothing written);
- ``read(after, limit)``, ``count_after(position)``, ``max_notification_id()``;
- ``position(name)`` / ``insert_tracking(Tracking)``: tracked positions;
- node recorders also ``record_states(oids)``: each record's latest version.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent, Tracking

AGENCY_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class StoreError(Exception):
    """A store URL or store content problem, described for the operator."""


class VersionGapError(IntegrityError):
    """A batch would leave a gap in a record's versions."""

    def __init__(self, originator_id: UUID | str, expected: int, got: int):
        originator_id = str(UUID(str(originator_id)))
        self.originator_id = originator_id
        self.expected = expected
        self.got = got
        super().__init__(f"record {originator_id}: expected version {expected}, got {got}")


@dataclass(frozen=True)
class RecordState:
    """A record's latest version and image digest, as the node holds it."""

    version: int
    image_hash: str
    live: bool


class AgencyRecorder(Protocol):
    """An agency's notification log (what both backends provide)."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None: ...
    def read(self, after: int, limit: int) -> Sequence[Notification]: ...
    def count_after(self, position: int = 0) -> int: ...
    def max_notification_id(self) -> int | None: ...
    def position(self, name: str) -> int: ...
    def insert_tracking(self, tracking: Tracking) -> None: ...
    def advance_notification_ids(self, beyond: int) -> None: ...


class NodeRecorder(AgencyRecorder, Protocol):
    """A node's notification log, which also keeps each record's state."""

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]: ...


def check_agency(agency: str) -> str:
    if not isinstance(agency, str) or not AGENCY_PATTERN.match(agency):
        raise StoreError(f"invalid agency id {agency!r}: use 1-64 letters, digits or underscores")
    return agency


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(f"unsupported URL {url!r}: expected sqlite:///PATH")
    return url[len(prefix):]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def hex_id(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(originator_id).hex


def chunks(seq: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def check_continuity(stored_events: Sequence[StoredEvent],
                     max_versions: Callable[[list[str]], dict[str, int]]) -> None:
    """Raise VersionGapError unless each record's versions in the batch follow
    on, without a gap, from its stored version (``max_versions`` maps hex ids
    to the highest stored version)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for s in stored_events:
        oid = hex_id(s.originator_id)
        if oid in last and s.originator_version != last[oid] + 1:
            raise VersionGapError(oid, last[oid] + 1, s.originator_version)
        first.setdefault(oid, s.originator_version)
        last[oid] = s.originator_version
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

    def __init__(self, datastore: Any, create: bool, cipher: Any = None):
        self.datastore = datastore
        self.create = create  # False: only open logs that exist (readers never race a writer creating tables)
        self.cipher = cipher  # exchange.store.at_rest.StateCipher: event states encrypted at rest
        self._recorders: dict[tuple[str, type], Any] = {}
        self._lock = threading.Lock()

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
                if not self.create and agency not in self.agencies():
                    raise StoreError(f"the store holds no event log of agency {agency}")
                recorder = kind(self.datastore, events_table_name="events_" + agency)
                recorder.cipher = self.cipher
                if self.create:
                    recorder.create_table()
                recorder.read(0, 1)  # a wrong or missing cipher key fails here, when the log is opened
                self._recorders[key] = recorder
            return self._recorders[key]

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        raise NotImplementedError

    def close(self) -> None:
        self.datastore.close()


def EventStore(url: str, *, create: bool = True, cipher: Any = None):  # noqa: N802 - reads as a class at call sites
    """Open the store at ``url``: a SQLiteEventStore or a PostgresEventStore.

    ``cipher`` (exchange.store.at_rest.StateCipher) encrypts event states at rest."""
    if url.startswith("sqlite:"):
        from exchange.store.sqlite import SQLiteEventStore

        return SQLiteEventStore(url, create=create, cipher=cipher)
    if url.startswith(("postgresql://", "postgres://")):
        from exchange.store.postgres import PostgresEventStore

        return PostgresEventStore(url, create=create, cipher=cipher)
    raise StoreError(f"unsupported store URL {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


__all__ = [
    "AgencyRecorder",
    "EventStore",
    "NodeRecorder",
    "RecordState",
    "StoreError",
    "Tracking",
    "VersionGapError",
    "check_agency",
    "check_continuity",
    "sqlite_path",
]
