"""PostgreSQL event stores (see exchange.store for the shared interface).

Notification ids come from a sequence and may have gaps after a rolled-back
insert; they never go backwards, because inserts lock the events table.
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from exchange.common.urls import redact_url
from exchange.store import (
    AgencyLogs,
    RecordState,
    StoreError,
    check_continuity,
    expected_position,
    hex_id,
    stored_signal,
)
from exchange.store.at_rest import MARK, CipheredStates, StateCipher, open_key, seal_key

LOCK_TIMEOUT_SECONDS = 30


CONNECTION_KEYS = ("dbname", "host", "port", "user", "password")


def _parsed(url: str) -> dict[str, Any]:
    """The libpq parameters of a ``postgresql://`` URL (StoreError naming a bad one)."""
    expected = ("expected postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]...]/DATABASE"
                "[?target_session_attrs=read-write&...]")
    if not url.startswith(("postgresql://", "postgres://")):
        raise StoreError(f"unsupported URL {redact_url(url)!r}: {expected}")
    try:
        parsed = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise StoreError(f"unsupported URL {redact_url(url)!r}: {e}; {expected}") from None
    if not parsed.get("dbname"):
        raise StoreError(f"unsupported URL {redact_url(url)!r}: no database named; {expected}")
    return parsed


def connection_settings(url: str) -> dict[str, Any]:
    """Database name, host, port, user and password of a ``postgresql://`` URL.

    A URL naming several servers (``postgresql://hub@pg1:5432,pg2:5432/hub``) gives their
    hosts and ports as comma-separated lists, as libpq takes them: it tries each in turn."""
    parsed = _parsed(url)
    return {
        "dbname": parsed["dbname"],
        "host": parsed.get("host") or "localhost",
        "port": parsed.get("port") or 5432,
        "user": parsed.get("user") or "postgres",
        "password": parsed.get("password") or "",
    }


def connection_options(url: str) -> dict[str, Any]:
    """The URL's other libpq parameters, e.g. ``target_session_attrs=read-write`` (connect only to a
    server that accepts writes: after a standby is promoted, new connections find it) or ``sslmode``."""
    return {k: v for k, v in _parsed(url).items() if k not in CONNECTION_KEYS}


def position_lock_key(name: str) -> str:
    """The text whose ``hashtextextended(text, 0)`` is the advisory lock key of tracked position ``name``."""
    return "exchange.position:" + name


def lock_position(curs: Cursor[DictRow], name: str) -> None:
    """Take the transaction-scoped advisory lock of tracked position ``name`` (held until commit or rollback):
    every process writing that position waits here for its turn."""
    advisory_lock(curs, position_lock_key(name))


def advisory_lock(curs: Cursor[DictRow], text: str) -> None:
    """Take the transaction-scoped advisory lock keyed by ``hashtextextended(text, 0)``."""
    curs.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (text,))


def _one(curs: Cursor[DictRow]) -> DictRow:
    """The one row a query returns."""
    row = curs.fetchone()
    assert row is not None
    return row


COPY_PIECE = 64 * 1024
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\0" + bytes(8)  # no flags, no header extension
_COPY_TRAILER = b"\xff\xff"
# Per row: 5 fields; notification id (8 bytes), originator id (16), version (8), the topic's length.
_ROW_HEAD = struct.Struct("!hiqi16siqi")
_LENGTH = struct.Struct("!i")


def binary_copy(ids: Sequence[int], hex_ids: Sequence[str], stored_events: Sequence[StoredEvent],
                encoding: str) -> Iterator[bytes]:
    """The ``COPY ... (FORMAT BINARY)`` stream of the rows (notification id, originator id, version, topic,
    state), topics in the connection's ``encoding``: the bytes psycopg's ``write_row`` sends, made with one
    ``struct`` call per row instead of a dumper call per field.  In pieces of about ``COPY_PIECE`` bytes, so
    that the server stores one piece while the next is made."""
    topics: dict[str, bytes] = {}
    parts = [_COPY_SIGNATURE]
    size = 0
    append, head, length, fromhex = parts.append, _ROW_HEAD.pack, _LENGTH.pack, bytes.fromhex
    for i, oid, e in zip(ids, hex_ids, stored_events):
        topic = topics.get(e.topic)
        if topic is None:
            topic = topics[e.topic] = e.topic.encode(encoding)
        state = e.state
        append(head(5, 8, i, 16, fromhex(oid), 8, e.originator_version, len(topic)))
        append(topic)
        append(length(len(state)))
        append(state)
        size += len(state)
        if size >= COPY_PIECE:
            yield b"".join(parts)
            parts.clear()
            size = 0
    append(_COPY_TRAILER)
    yield b"".join(parts)


LastEvent = tuple[int, str, int]  # a log's last event: notification id, hex record id, version


class LatestVersions:
    """The latest version of each record a recorder stored, with the log's last event then: to be trusted
    only while that is still the log's last event, so that no other writer has stored since (events are never
    deleted, and ids come from a sequence, which no rolled-back batch gives back).  The event, not just its
    id: a standby promoted without this recorder's last commits may give that id to another writer's event.
    Used only under the log's table lock, which every inserter holds from before it reads versions until it
    commits."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit  # records remembered at most (some 100 bytes each); then all are forgotten
        self._versions: dict[str, int] = {}
        self._last: LastEvent | None = None

    def since(self, last: LastEvent | None) -> dict[str, int]:
        """The versions (hex id -> version) if ``last``, the log's last event now, is the one they were
        stored with; otherwise they are forgotten and none are given."""
        if last != self._last:
            self._versions.clear()
            self._last = last
        return self._versions

    def stored(self, hex_ids: Sequence[str], stored_events: Sequence[StoredEvent], last_id: int) -> None:
        """Note a batch stored in this transaction, its last event with notification id ``last_id``.  Should
        the transaction not commit, that event is never the log's last, and the versions are forgotten then."""
        if len(self._versions) > self.limit:
            self._versions.clear()
        self._versions.update(zip(hex_ids, [e.originator_version for e in stored_events]))
        self._last = (last_id, hex_ids[-1], stored_events[-1].originator_version)


class CopyRecorder(PostgresProcessRecorder):
    """The library's process recorder, storing each batch of events with one binary COPY.

    One transaction, as the library's: the hooks (``_insert_events``: tracking
    and what subclasses check), the lock of the events table, then
    notification ids for the whole batch from the table's sequence, in order,
    and one ``COPY`` of the events with those ids, whose list it returns.  The
    table lock (EXCLUSIVE, which readers do not wait for) keeps every other
    inserter's ids and commit either wholly before or wholly after this one's,
    so readers never see ids go backwards.  The library instead sends the
    batch as one array of composite values, which psycopg escapes field by
    field in Python and the server parses as text.  It also used pipeline
    mode, which psycopg leaves with unsent bytes of a large statement in
    libpq, and then waits for ever: nothing here is pipelined.

    With ``announces``, each transaction that stores events also signals it to
    the other processes on the store (exchange.store.stored_signal)."""

    announces = False

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._sequence: str | None = None  # the notification id sequence, once the table exists
        self._next_ids_statement = SQL("SELECT array_agg(nextval(%s::regclass)) AS ids FROM generate_series(1, %s)")
        self._copy_statement = SQL("COPY {} (notification_id, originator_id, originator_version, topic, state) "
                                   "FROM STDIN (FORMAT BINARY)").format(table)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Tracking, hooks, table lock and events in one transaction; the events' notification ids."""
        hex_ids = [hex_id(e.originator_id) for e in stored_events]  # read once, for the hooks and the COPY
        with self.datastore.transaction(commit=True) as curs:
            self._insert_events(curs, stored_events, hex_ids=hex_ids, **kwargs)
            if not stored_events:
                return None
            ids = self._copy_events(curs, stored_events, hex_ids)
            if self.announces:
                stored_signal.announce(curs, self.events_table_name, ids[-1])
            return ids

    def _copy_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                     hex_ids: Sequence[str]) -> list[int]:
        self._lock_table(curs)
        self._notify_channel(curs)
        if self._sequence is None:
            curs.execute("SELECT pg_get_serial_sequence(%s, 'notification_id') AS seq",
                         (f'{self.datastore.schema}."{self.events_table_name}"',))
            self._sequence = _one(curs)["seq"]
        curs.execute(self._next_ids_statement, (self._sequence, len(stored_events)), prepare=True)
        # Taken under the table lock, so no other inserter takes ids meanwhile: they increase (sorted anyway,
        # as ids must follow the batch's order).
        ids: list[int] = sorted(_one(curs)["ids"])
        with curs.copy(self._copy_statement) as copy:
            for piece in binary_copy(ids, hex_ids, stored_events, curs.connection.info.encoding):
                copy.write(piece)
        return ids


class PostgresAgencyRecorder(CipheredStates, CopyRecorder):
    """An agency's notification log that refuses version gaps, announcing what it stores.  The versions a
    batch follows on from are those it stored itself while no other writer has stored (LatestVersions), and
    the store's for the other records (one query)."""

    announces = True

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        self._latest = LatestVersions()
        self._last_event_statement = SQL(
            "SELECT notification_id, originator_id, originator_version FROM {}.{} "
            "ORDER BY notification_id DESC LIMIT 1").format(Identifier(self.datastore.schema),
                                                          Identifier(self.events_table_name))
        self._max_versions_statement = SQL(
            "SELECT array_agg(oid) AS oids, array_agg(version) AS versions "
            "FROM unnest(string_to_array(%s, ',')) AS oid, LATERAL (SELECT originator_version AS version FROM {}.{} "
            "WHERE originator_id = oid::uuid ORDER BY originator_version DESC LIMIT 1) AS latest").format(Identifier(self.datastore.schema), Identifier(self.events_table_name))

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        tracking = kwargs.get("tracking")
        if kwargs.get("expected_position") is not None and tracking is not None:
            lock_position(curs, tracking.application_name)
            expected_position(lambda name: self._max_tracking_id(name, curs), kwargs)
        check_continuity(stored_events, lambda oids: self._stored_versions(curs, oids), kwargs.get("hex_ids"))
        super()._insert_events(curs, stored_events, **kwargs)

    def _stored_versions(self, curs: Cursor[DictRow], oids: list[str]) -> dict[str, int]:
        """As ``_max_versions``, asking the store only about records this recorder has not stored since
        the last write of any other (it takes the table lock first, so none writes until this commits)."""
        if not oids:
            return {}
        self._lock_table(curs)
        curs.execute(self._last_event_statement, prepare=True)
        row = curs.fetchone()
        known = self._latest.since((row["notification_id"], hex_id(row["originator_id"]), row["originator_version"])
                                   if row else None)
        missing = [o for o in oids if o not in known]
        versions = self._max_versions(curs, missing) if missing else {}
        if len(missing) < len(oids):
            versions.update((o, known[o]) for o in oids if o in known)
        return versions

    def _copy_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent],
                     hex_ids: Sequence[str]) -> list[int]:
        ids = super()._copy_events(curs, stored_events, hex_ids)
        self._latest.stored(hex_ids, stored_events, ids[-1])
        return ids

    def _max_versions(self, curs: Cursor[DictRow], oids: list[str]) -> dict[str, int]:
        # The ids go as one text value (an array parameter is dumped element by element in Python) and come
        # back as sent, in one row; each record's latest version is one probe of the primary key.
        curs.execute(self._max_versions_statement, (",".join(oids),), prepare=True)
        row = _one(curs)
        return dict(zip(row["oids"], row["versions"])) if row["oids"] else {}

    def position(self, name: str) -> int:
        """A tracked position (0 when none is recorded yet)."""
        return self.max_tracking_id(name) or 0

    def max_versions(self, oids: Sequence[str]) -> dict[str, int]:
        """The highest stored version of each of the given records (hex ids) that has one."""
        with self.datastore.transaction(commit=False) as curs:
            return self._max_versions(curs, list(oids))

    def count_after(self, position: int = 0) -> int:
        """How many notifications have an id > ``position``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {}.{} WHERE notification_id > %s").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name)), (position,))
            return curs.fetchone()["n"]

    def _plaintext_states(self, curs: Cursor[DictRow], after: int, limit: int) -> list[tuple[int, bytes]]:
        curs.execute(SQL("SELECT notification_id, state FROM {}.{} WHERE notification_id > %s "
                         "AND substring(state FROM 1 FOR %s) <> %s ORDER BY notification_id LIMIT %s").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)), (after, len(MARK), MARK, limit))
        return [(row["notification_id"], bytes(row["state"])) for row in curs.fetchall()]

    def _replace_states(self, curs: Cursor[DictRow], rows: list[tuple[int, bytes, bytes]]) -> None:
        curs.executemany(SQL("UPDATE {}.{} SET state = %s WHERE notification_id = %s AND state = %s").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)),
            [(new, i, old) for i, old, new in rows])

    def advance_notification_ids(self, beyond: int) -> None:
        """Make the next notification id greater than ``beyond``."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), "
                         "GREATEST(%s, (SELECT last_value FROM pg_sequences WHERE schemaname = %s AND "
                         "sequencename = %s)))",
                         (f'{self.datastore.schema}."{self.events_table_name}"', beyond, self.datastore.schema,
                          f"{self.events_table_name}_notification_id_seq"))


class PostgresNodeRecorder(PostgresAgencyRecorder):
    """The node's recorder: also keeps each record's state (exchange.store.RecordState),
    written in the same transaction as its events."""

    _STATE_COLUMNS = SQL("originator_id, version, image_hash, live, table_id, key, mark")
    announces = False  # one node process per store: nobody listens

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str, cipher: StateCipher | None):
        super().__init__(datastore, events_table_name=events_table_name, cipher=cipher)
        name = "record_state_" + events_table_name.removeprefix("events_")
        self.state_table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(name))
        self.sql_create_statements += [
            SQL("CREATE TABLE IF NOT EXISTS {} (originator_id uuid PRIMARY KEY, version bigint NOT NULL, "
                "image_hash text, live boolean NOT NULL)").format(self.state_table),
            # Stores written before states named their table and key gain the columns here.
            SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS table_id uuid, ADD COLUMN IF NOT EXISTS key bytea, "
                "ADD COLUMN IF NOT EXISTS mark bigint").format(self.state_table),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (table_id, originator_id)").format(
                Identifier((name + "_by_table")[-63:]), self.state_table),
        ]

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        states: dict[str, RecordState] = kwargs.get("states") or {}
        if states:
            curs.execute(
                SQL("INSERT INTO {} ({}) SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], "
                    "%s::boolean[], %s::uuid[], %s::bytea[], %s::bigint[]) "
                    "ON CONFLICT (originator_id) DO UPDATE SET version = EXCLUDED.version, "
                    "image_hash = EXCLUDED.image_hash, live = EXCLUDED.live, table_id = EXCLUDED.table_id, "
                    "key = EXCLUDED.key, mark = EXCLUDED.mark").format(self.state_table, self._STATE_COLUMNS),
                ([*states], [s.version for s in states.values()], [s.image_hash for s in states.values()],
                 [s.live for s in states.values()], [s.table_id for s in states.values()],
                 [seal_key(self.cipher, s.key) for s in states.values()], [s.mark for s in states.values()]),
            )

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]:
        """The latest state of each of the given records (hex ids) that has one."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT {} FROM {} WHERE originator_id = ANY(%s::uuid[])").format(
                self._STATE_COLUMNS, self.state_table), (list(oids),))
            return dict(self._state(row) for row in curs.fetchall())

    def live_records(self, table_id: str, mark: int, after: str | None, limit: int) -> list[tuple[str, RecordState]]:
        """Up to ``limit`` live records of the table ``table_id`` with an id after ``after``, in id order,
        whose mark is not ``mark`` or later."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT {} FROM {} WHERE table_id = %s AND originator_id > %s AND live "
                             "AND key IS NOT NULL AND (mark IS NULL OR mark < %s) ORDER BY originator_id LIMIT %s"
                             ).format(self._STATE_COLUMNS, self.state_table),
                         (table_id, after or "00000000000000000000000000000000", mark, limit))
            return [self._state(row) for row in curs.fetchall()]

    def unfiled_records(self) -> bool:
        """Whether some state does not name its table yet (written before states did)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT 1 AS found FROM {} WHERE table_id IS NULL LIMIT 1").format(self.state_table))
            return curs.fetchone() is not None

    def file_records(self, filed: dict[str, tuple[str, bytes | None]]) -> None:
        """Name the table and key of records (hex id -> (table id, key)) whose state names none yet."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("UPDATE {} s SET table_id = f.table_id, key = f.key FROM unnest(%s::uuid[], "
                             "%s::uuid[], %s::bytea[]) f(oid, table_id, key) "
                             "WHERE s.originator_id = f.oid AND s.table_id IS NULL").format(self.state_table),
                         ([*filed], [t for t, _ in filed.values()],
                          [seal_key(self.cipher, k) for _, k in filed.values()]))

    def _state(self, row: DictRow) -> tuple[str, RecordState]:
        oid = hex_id(row["originator_id"])
        key = open_key(self.cipher, row["key"], f"the key of record {oid}")
        table_id = hex_id(row["table_id"]) if row["table_id"] is not None else None
        return oid, RecordState(row["version"], row["image_hash"], row["live"], table_id, key, row["mark"])


class PostgresEventStore(AgencyLogs):
    """Agencies' notification logs in one PostgreSQL database (schema public)."""

    agency_recorder_class = PostgresAgencyRecorder
    node_recorder_class = PostgresNodeRecorder

    def __init__(self, url: str, *, create: bool = True, cipher: StateCipher | None = None):
        self.url = url
        super().__init__(PostgresDatastore(
            # No pool_open_timeout: with one, every checkout waits for a full pool,
            # which psycopg_pool does not allow from two threads at once.
            **connection_settings(url), pool_size=2, max_overflow=6, lock_timeout=LOCK_TIMEOUT_SECONDS,
            connect_timeout=5,
        ), create, cipher)
        self.datastore.pool.kwargs.update(connection_options(url))  # applies to every connection the pool opens
        try:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT 1")
        except PersistenceError as e:
            self.datastore.close()
            raise StoreError(f"cannot open store {redact_url(url)!r}: {e}") from None

    @contextmanager
    def creating(self) -> Iterator[None]:
        """Hold the store's table-creation advisory lock: two hubs creating one agency's tables at
        the same moment would otherwise both try to create them, and one would fail."""
        with self.datastore.transaction(commit=False) as curs:
            advisory_lock(curs, "exchange.create-tables")
            yield

    def failover_risk(self) -> str | None:
        """Why a promoted standby could lack commits this store acknowledged, when the URL names several
        servers (standbys to fail over to) and the server does not wait for a synchronous standby;
        None otherwise (docs/scaling.md §3)."""
        if "," not in str(connection_settings(self.url)["host"]):
            return None
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT current_setting('synchronous_commit') AS sc, "
                         "current_setting('synchronous_standby_names') AS names")
            row = curs.fetchone()
        if not row["names"].strip():
            return "synchronous_standby_names is empty: commits do not wait for any standby"
        if row["sc"] not in ("on", "remote_apply"):
            return f"synchronous_commit is {row['sc']}: commits do not wait for the standby to flush them"
        return None

    def listen_stored(self, on_stored: Callable[[str, int], None]) -> stored_signal.StoredListener:
        """Call ``on_stored(log name, last notification id)`` for each batch any process stores."""
        return stored_signal.StoredListener(self.url, on_stored)

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                         "AND table_name LIKE 'events\\_%%'", (self.datastore.schema,))
            return sorted(row["table_name"].removeprefix("events_") for row in curs.fetchall())
