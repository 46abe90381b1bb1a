"""Event stores for nodes and the hub, opened from a store URL.

One store holds the events of one or more agencies, each in its own
notification log (table ``events_<agency>``), so that replaying or serving
one agency never scans another's history.  Positions are kept with the
library's tracking records, written in the same transaction as the events.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent, Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteProcessRecorder

AGENCY_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_CHUNK = 500  # SQLite host-parameter chunk size


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


def _ids(ids: Iterable[UUID | str]) -> list[str]:
    return [i.hex if isinstance(i, UUID) else i for i in ids]


def _chunks(seq: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), _CHUNK):
        yield seq[i : i + _CHUNK]


class AgencyRecorder(SQLiteProcessRecorder):
    """An agency's notification log that refuses version gaps.

    ``insert_events`` checks, inside its transaction, that each record's
    versions follow on from what is stored; a gap raises VersionGapError and
    nothing of the batch is written.
    """

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any):
        self._check_continuity(c, stored_events)
        return super()._insert_events(c, stored_events, **kwargs)

    def _check_continuity(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> None:
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for s in stored_events:
            oid = _ids([s.originator_id])[0]
            if oid in last and s.originator_version != last[oid] + 1:
                raise VersionGapError(s.originator_id, last[oid] + 1, s.originator_version)
            first.setdefault(oid, s.originator_version)
            last[oid] = s.originator_version
        stored = self._max_versions(c, list(first))
        for oid, version in first.items():
            expected = stored.get(oid, 0) + 1
            if version != expected:
                raise VersionGapError(oid, expected, version)

    def _max_versions(self, c: SQLiteCursor, oids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(oids):
            c.execute(
                f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                f"WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY originator_id",
                list(chunk),
            )
            found.update({row[0]: row[1] for row in c.fetchall()})
        return found

    def read(self, after: int, limit: int, stop: int | None = None) -> Sequence[Notification]:
        """Notifications with id > ``after``, oldest first."""
        return self.select_notifications(after, limit, stop=stop, inclusive_of_start=False)

    def position(self, name: str) -> int:
        """A tracked position (0 when none is recorded yet)."""
        return self.max_tracking_id(name) or 0

    def count_after(self, position: int = 0) -> int:
        """How many notifications have an id > ``position``."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT COUNT(*) FROM {self.events_table_name} WHERE rowid > ?", (position,))
            return c.fetchone()[0]


@dataclass(frozen=True)
class RecordState:
    version: int
    image_hash: str
    live: bool


class NodeRecorder(AgencyRecorder):
    """The node's recorder: also keeps each record's latest version and image
    digest, written in the same transaction as its events, so capture can
    number versions and skip snapshot rows it already holds."""

    def __init__(self, datastore: SQLiteDatastore, *, events_table_name: str):
        self.state_table_name = "record_state_" + events_table_name.removeprefix("events_")
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + [
            f"CREATE TABLE IF NOT EXISTS {self.state_table_name} ("
            "originator_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
            "image_hash TEXT, live INTEGER NOT NULL) WITHOUT ROWID"
        ]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any):
        returning = super()._insert_events(c, stored_events, **kwargs)
        states: dict[str, RecordState] = kwargs.get("states") or {}
        c.executemany(
            f"INSERT OR REPLACE INTO {self.state_table_name} VALUES (?,?,?,?)",
            [(oid, s.version, s.image_hash, int(s.live)) for oid, s in states.items()],
        )
        return returning

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]:
        found: dict[str, RecordState] = {}
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(list(oids)):
                c.execute(
                    f"SELECT originator_id, version, image_hash, live FROM {self.state_table_name} "
                    f"WHERE originator_id IN ({','.join('?' * len(chunk))})",
                    list(chunk),
                )
                for row in c.fetchall():
                    found[row[0]] = RecordState(row[1], row[2], bool(row[3]))
        return found


class EventStore:
    """A store of agencies' notification logs, opened from a URL."""

    def __init__(self, url: str, *, create: bool = True, lock_timeout: int = 30):
        self.url = url
        path = sqlite_path(url)
        if not create and not Path(path).exists():
            raise StoreError(f"store {url!r} does not exist")
        if create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.datastore = SQLiteDatastore(db_name=path, lock_timeout=lock_timeout)
        self._recorders: dict[tuple[str, type], AgencyRecorder] = {}
        self._lock = threading.Lock()  # creating two recorders at once races on the tracking table

    def recorder(self, agency: str, kind: type[AgencyRecorder] = AgencyRecorder) -> AgencyRecorder:
        """The notification log of ``agency`` (created when missing)."""
        check_agency(agency)
        key = (agency, kind)
        with self._lock:
            if key not in self._recorders:
                recorder = kind(self.datastore, events_table_name="events_" + agency)
                recorder.create_table()
                self._recorders[key] = recorder
            return self._recorders[key]

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'events\\_%' ESCAPE '\\'")
            return sorted(row[0].removeprefix("events_") for row in c.fetchall())

    def close(self) -> None:
        self.datastore.close()


__all__ = [
    "AgencyRecorder",
    "EventStore",
    "NodeRecorder",
    "RecordState",
    "StoreError",
    "Tracking",
    "VersionGapError",
    "check_agency",
    "sqlite_path",
]
