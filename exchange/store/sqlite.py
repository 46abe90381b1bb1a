"""SQLite event stores (see exchange.store for the shared interface)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
    SQLiteTransaction,
)

from exchange.common.urls import sqlite_path
from exchange.store import (
    AgencyLogs,
    RecordState,
    StoredNotification,
    StoreError,
    check_continuity,
    chunks,
    expected_position,
)
from exchange.store.at_rest import MARK, CipheredStates, StateCipher, open_events, open_key, seal_key


class SQLiteAgencyRecorder(CipheredStates, SQLiteProcessRecorder):
    """An agency's notification log that refuses version gaps."""

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any):
        # The write transaction began IMMEDIATE: it holds the database's one write lock already.
        expected_position(lambda name: self._max_tracking_id(name, c), kwargs)
        check_continuity(stored_events, lambda oids: self._max_versions(c, oids))
        return super()._insert_events(c, stored_events, **kwargs)

    def _max_versions(self, c: SQLiteCursor, oids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in chunks(oids):
            c.execute(
                f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                f"WHERE originator_id IN ({','.join('?' * len(chunk))}) GROUP BY originator_id",
                list(chunk),
            )
            found.update({row[0]: row[1] for row in c.fetchall()})
        return found

    def position(self, name: str) -> int:
        """A tracked position (0 when none is recorded yet)."""
        return self.max_tracking_id(name) or 0

    def max_versions(self, oids: Sequence[str]) -> dict[str, int]:
        """The highest stored version of each of the given records (hex ids) that has one."""
        with self.datastore.transaction(commit=False) as c:
            return self._max_versions(c, oids)

    def count_after(self, position: int = 0) -> int:
        """How many notifications have an id > ``position``."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT COUNT(*) FROM {self.events_table_name} WHERE rowid > ?", (position,))
            return c.fetchone()[0]

    def read_stored(self, after: int, limit: int) -> Sequence[StoredNotification]:
        """As ``read``, as tuples with originator ids as the text stored (turning each into a UUID
        costs more than reading it)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name} "
                      "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit))
            found = [StoredNotification(*row) for row in c.fetchall()]
        return open_events(found, self.cipher, self.events_table_name)

    def _plaintext_states(self, c: SQLiteCursor, after: int, limit: int) -> list[tuple[int, bytes]]:
        c.execute(f"SELECT rowid, state FROM {self.events_table_name} WHERE rowid > ? AND substr(state, 1, ?) != ? "
                  "ORDER BY rowid LIMIT ?", (after, len(MARK), MARK, limit))
        return [(row[0], row[1]) for row in c.fetchall()]

    def _replace_states(self, c: SQLiteCursor, rows: list[tuple[int, bytes, bytes]]) -> None:
        c.executemany(f"UPDATE {self.events_table_name} SET state = ? WHERE rowid = ? AND state = ?",
                      [(new, i, old) for i, old, new in rows])

    def advance_notification_ids(self, beyond: int) -> None:
        """Make the next notification id greater than ``beyond``.

        Ids here are rowids, one more than the largest, so the latest event
        is moved to id ``beyond`` (a gap before it, as a PostgreSQL sequence
        may leave); an empty log cannot be advanced."""
        latest = self.max_notification_id() or 0
        if latest >= beyond:
            return
        if not latest:
            raise StoreError(f"{self.events_table_name}: next notification id would not exceed {beyond}")
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"UPDATE {self.events_table_name} SET rowid = ? WHERE rowid = ?", (beyond, latest))


class SQLiteNodeRecorder(SQLiteAgencyRecorder):
    """The node's recorder: also keeps each record's state (exchange.store.RecordState),
    written in the same transaction as its events, so capture can number
    versions, skip snapshot rows it already holds and page through a table's
    live records."""

    _STATE_COLUMNS = "originator_id, version, image_hash, live, table_id, key, mark"

    def __init__(self, datastore: SQLiteDatastore, *, events_table_name: str, cipher: StateCipher | None):
        self.state_table_name = "record_state_" + events_table_name.removeprefix("events_")
        super().__init__(datastore, events_table_name=events_table_name, cipher=cipher)

    def construct_create_table_statements(self) -> list[str]:
        return super().construct_create_table_statements() + [
            f"CREATE TABLE IF NOT EXISTS {self.state_table_name} ("
            "originator_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
            "image_hash TEXT, live INTEGER NOT NULL, table_id TEXT, key BLOB, mark INTEGER) WITHOUT ROWID"
        ]

    def _create_table(self, c: SQLiteCursor) -> None:
        super()._create_table(c)
        c.execute(f"PRAGMA table_info({self.state_table_name})")
        present = {row[1] for row in c.fetchall()}
        for column, type_ in (("table_id", "TEXT"), ("key", "BLOB"), ("mark", "INTEGER")):
            if column not in present:  # a store written before states named their table
                c.execute(f"ALTER TABLE {self.state_table_name} ADD COLUMN {column} {type_}")
        c.execute(f"CREATE INDEX IF NOT EXISTS {self.state_table_name}_by_table "
                  f"ON {self.state_table_name} (table_id, originator_id)")

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any):
        # The library inserts event by event to learn each notification id; one executemany is several times
        # quicker, and in the write transaction the ids are the ones after the largest (SQLite's rowid rule).
        expected_position(lambda name: self._max_tracking_id(name, c), kwargs)
        check_continuity(stored_events, lambda oids: self._max_versions(c, oids))
        SQLiteAggregateRecorder._insert_events(self, c, stored_events)
        returning: list[int] = []
        if stored_events:
            c.execute(f"SELECT max(rowid) FROM {self.events_table_name}")
            last = c.fetchone()[0]
            returning = list(range(last - len(stored_events) + 1, last + 1))
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is not None:
            self._insert_tracking(c, tracking)
        states: dict[str, RecordState] = kwargs.get("states") or {}
        # In id order (the ids are random): consecutive rows land on the same index pages.
        c.executemany(
            f"INSERT OR REPLACE INTO {self.state_table_name} ({self._STATE_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
            [(oid, s.version, s.image_hash, int(s.live), s.table_id, seal_key(self.cipher, s.key), s.mark)
             for oid, s in sorted(states.items())],
        )
        return returning

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]:
        """The latest state of each of the given records (hex ids) that has one."""
        found: dict[str, RecordState] = {}
        with self.datastore.transaction(commit=False) as c:
            for chunk in chunks(list(oids)):
                c.execute(
                    f"SELECT {self._STATE_COLUMNS} FROM {self.state_table_name} "
                    f"WHERE originator_id IN ({','.join('?' * len(chunk))})",
                    list(chunk),
                )
                found.update(self._state(row) for row in c.fetchall())
        return found

    def live_records(self, table_id: str, mark: int, after: str | None, limit: int) -> list[tuple[str, RecordState]]:
        """Up to ``limit`` live records of the table ``table_id`` with an id after ``after``, in id order,
        whose mark is not ``mark`` or later."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {self._STATE_COLUMNS} FROM {self.state_table_name} WHERE table_id = ? "
                      "AND originator_id > ? AND live AND key IS NOT NULL AND (mark IS NULL OR mark < ?) "
                      "ORDER BY originator_id LIMIT ?", (table_id, after or "", mark, limit))
            return [self._state(row) for row in c.fetchall()]

    def unfiled_records(self) -> bool:
        """Whether some state does not name its table yet (written before states did)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {self.state_table_name} WHERE table_id IS NULL LIMIT 1")
            return c.fetchone() is not None

    def file_records(self, filed: dict[str, tuple[str, bytes | None]]) -> None:
        """Name the table and key of records (hex id -> (table id, key)) whose state names none yet."""
        with self.datastore.transaction(commit=True) as c:
            c.executemany(f"UPDATE {self.state_table_name} SET table_id = ?, key = ? "
                          "WHERE originator_id = ? AND table_id IS NULL",
                          [(table_id, seal_key(self.cipher, key), oid) for oid, (table_id, key) in filed.items()])

    def _state(self, row: Sequence[Any]) -> tuple[str, RecordState]:
        key = open_key(self.cipher, row[5], f"the key of record {row[0]}")
        return row[0], RecordState(row[1], row[2], bool(row[3]), row[4], key, row[6])


class SQLiteEventStore(AgencyLogs):
    """Agencies' notification logs in one SQLite file."""

    agency_recorder_class = SQLiteAgencyRecorder
    node_recorder_class = SQLiteNodeRecorder

    def __init__(self, url: str, *, create: bool = True, lock_timeout: int = 30, cipher: StateCipher | None = None):
        self.url = url
        try:
            path = sqlite_path(url)
        except ValueError as e:
            raise StoreError(str(e)) from None
        if not create and not Path(path).exists():
            raise StoreError(f"store {url!r} does not exist")
        if create:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(WaitingSQLiteDatastore(db_name=path, lock_timeout=lock_timeout), create, cipher)

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'events\\_%' ESCAPE '\\'")
            return sorted(row[0].removeprefix("events_") for row in c.fetchall())


# Pages each connection keeps in memory (KiB when negative; SQLite's default is 2 MiB): a batch of
# events with random record ids touches pages all over the events' and states' indexes, and a
# cache that holds them spares rereading them for every row.
CACHE_SIZE = -64 * 1024


class _Pool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection.cursor().execute(f"PRAGMA cache_size = {CACHE_SIZE}")
        return connection


class _WriteTransaction(SQLiteTransaction):
    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class WaitingSQLiteDatastore(SQLiteDatastore):
    """A datastore whose writing transactions take SQLite's write lock when they begin.

    A deferred transaction that reads first (the version checks before an
    insert) and writes later fails at once with "database is locked" when
    another connection wrote in between, whatever the busy timeout; one that
    begins IMMEDIATE waits up to ``lock_timeout`` for its turn instead.  The
    hub has several connections to its store (ingest, catalog, sharing, each
    agency's publisher), so concurrent writers must wait, never fail.

    Each connection keeps up to ``CACHE_SIZE`` of pages in memory."""

    def __init__(self, db_name: str, *, lock_timeout: int | None = None):
        super().__init__(db_name=db_name, lock_timeout=lock_timeout)
        self.pool.close()  # it has opened no connection yet
        self.pool = _Pool(db_name=db_name, lock_timeout=lock_timeout)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        if not commit:
            with super().transaction(commit=False) as cursor:
                yield cursor
            return
        with self.get_connection(commit=True) as connection, _WriteTransaction(connection, commit=True) as cursor, \
                cursor:
            yield cursor
