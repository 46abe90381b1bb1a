"""PostgreSQL event stores (see exchange.store for the shared interface).

Notification ids come from a sequence and may have gaps after a rolled-back
insert; they never go backwards, because inserts lock the events table.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from exchange.common.urls import redact_url
from exchange.store import AgencyLogs, RecordState, StoreError, check_continuity, hex_id
from exchange.store.at_rest import MARK, CipheredStates, StateCipher

LOCK_TIMEOUT_SECONDS = 30


def connection_settings(url: str) -> dict[str, Any]:
    """Host, port, user, password and database name of a ``postgresql://`` URL."""
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if parts.scheme not in ("postgresql", "postgres") or not dbname:
        raise StoreError(f"unsupported URL {redact_url(url)!r}: "
                         "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    return {
        "dbname": dbname,
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


class UnpipelinedRecorder(PostgresProcessRecorder):
    """The library's process recorder, inserting without pipeline mode.

    psycopg's pipeline stops sending once its command queue is empty even when
    libpq still holds unsent bytes of the last command, and then waits for
    results: a batch of a few megabytes hangs for ever, the client waiting for
    a result and the server for the rest of the statement.  Outside a
    pipeline every statement is sent whole before its result is awaited."""

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Tracking, hooks, table lock and events in one transaction (as the library's)."""
        with self.datastore.transaction(commit=True) as curs:
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)


class PostgresAgencyRecorder(CipheredStates, UnpipelinedRecorder):
    """An agency's notification log that refuses version gaps."""

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        check_continuity(stored_events, lambda oids: self._max_versions(curs, oids))
        super()._insert_events(curs, stored_events, **kwargs)

    def _max_versions(self, curs: Cursor[DictRow], oids: list[str]) -> dict[str, int]:
        curs.execute(
            SQL("SELECT originator_id, MAX(originator_version) AS version FROM {}.{} "
                "WHERE originator_id = ANY(%s::uuid[]) GROUP BY originator_id").format(
                Identifier(self.datastore.schema), Identifier(self.events_table_name)),
            (oids,),
        )
        return {hex_id(row["originator_id"]): row["version"] for row in curs.fetchall()}

    def position(self, name: str) -> int:
        """A tracked position (0 when none is recorded yet)."""
        return self.max_tracking_id(name) or 0

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
    """The node's recorder: also keeps each record's latest version and image
    digest, written in the same transaction as its events."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str, cipher: StateCipher | None):
        super().__init__(datastore, events_table_name=events_table_name, cipher=cipher)
        self.state_table = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier("record_state_" + events_table_name.removeprefix("events_")))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (originator_id uuid PRIMARY KEY, version bigint NOT NULL, "
            "image_hash text, live boolean NOT NULL)").format(self.state_table))

    def _insert_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        states: dict[str, RecordState] = kwargs.get("states") or {}
        if states:
            curs.execute(
                SQL("INSERT INTO {} SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::boolean[]) "
                    "ON CONFLICT (originator_id) DO UPDATE SET version = EXCLUDED.version, "
                    "image_hash = EXCLUDED.image_hash, live = EXCLUDED.live").format(self.state_table),
                ([*states], [s.version for s in states.values()], [s.image_hash for s in states.values()],
                 [s.live for s in states.values()]),
            )

    def record_states(self, oids: Sequence[str]) -> dict[str, RecordState]:
        """The latest state of each of the given records (hex ids) that has one."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT originator_id, version, image_hash, live FROM {} "
                             "WHERE originator_id = ANY(%s::uuid[])").format(self.state_table), (list(oids),))
            return {hex_id(row["originator_id"]): RecordState(row["version"], row["image_hash"], row["live"])
                    for row in curs.fetchall()}


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
        try:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute("SELECT 1")
        except PersistenceError as e:
            self.datastore.close()
            raise StoreError(f"cannot open store {redact_url(url)!r}: {e}") from None

    def agencies(self) -> list[str]:
        """Agencies that have a notification log in this store."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                         "AND table_name LIKE 'events\\_%%'", (self.datastore.schema,))
            return sorted(row["table_name"].removeprefix("events_") for row in curs.fetchall())
