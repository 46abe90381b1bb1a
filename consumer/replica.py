"""A consumer's replica database: the entitled resources of other agencies, applied by the replay path.

Rows go in through ``adapters.apply.apply_events`` and the database's
ApplyTarget, each batch in one transaction with its checkpoint
(``consumer:<provider>:<resource>``: the hub position reached).  Beside
that, the replica remembers the data items (and the row filter, if any)
each resource was projected to; when they change, or the entitlement is lost, the resource is withdrawn:
its table and checkpoint removed in one transaction (``drop_table``), then
its items, so the replica never holds more than the consumer is entitled
to.  Stopped in between, the replica holds no rows and asks the hub afresh.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

import adapters
from adapters.apply import apply_events
from adapters.mysql import dialect as mysql
from adapters.postgres import dialect as postgres
from adapters.sqlite import dialect as sqlite
from exchange.common.urls import sqlite_path
from exchange.contracts.changes import ApplyTarget
from exchange.contracts.events import RecordEvent

Projection = list[str] | dict[str, Any]


def projection(items: Sequence[str], rows: str = "") -> Projection:
    """What a resource is projected to, as the replica records it: its items, with the row filter when it has one."""
    return list(items) if not rows else {"items": list(items), "rows": rows}


def checkpoint_name(provider: str, resource: str) -> str:
    return f"consumer:{provider}:{resource}"


class Replica:
    """The replica database at ``url`` (SQLite, PostgreSQL or MariaDB/MySQL)."""

    def __init__(self, url: str):
        self.url = url
        self.target: ApplyTarget = adapters.open_target(url)
        books = {"postgresql": _postgres_books, "mysql": _mysql_books}.get(url.partition("://")[0], _SQLiteBooks)
        self.books = books(url)

    def position(self, provider: str, resource: str) -> int:
        """The hub position up to which the resource is applied (0: nothing yet)."""
        return self.target.checkpoint(checkpoint_name(provider, resource)) or 0

    def items(self, provider: str, resource: str) -> Projection | None:
        """The ``projection`` the resource was received with (None: never received)."""
        return self.books.items(checkpoint_name(provider, resource))

    def set_items(self, provider: str, resource: str, items: Projection) -> None:
        self.books.set_items(checkpoint_name(provider, resource), items)

    def withdraw(self, provider: str, resource: str, items: Projection | None = None) -> None:
        """Remove the resource's table, checkpoint and items; with ``items``, start over with those."""
        name = checkpoint_name(provider, resource)
        self.target.drop_table(resource, checkpoint=name)
        self.books.set_items(name, items)

    def apply(self, provider: str, resource: str, events: Sequence[tuple[int, RecordEvent]], after: int,
              reached: int) -> int:
        """Apply one batch and move the checkpoint to ``reached``; the number of events applied."""
        return apply_events(self.target, checkpoint_name(provider, resource), events, after, reached).events

    def close(self) -> None:
        self.target.close()
        self.books.close()


class _SQLiteBooks:
    TABLE = "_exchange_replica"

    def __init__(self, url: str):
        self.db: sqlite3.Connection = sqlite.connect(sqlite_path(url))
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (name TEXT PRIMARY KEY, items TEXT NOT NULL)")

    def items(self, name: str) -> Projection | None:
        row = self.db.execute(f"SELECT items FROM {self.TABLE} WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_items(self, name: str, items: Projection | None) -> None:
        """Record the resource's ``items`` (None: forget them)."""
        with sqlite.transaction(self.db):
            self.db.execute(f"DELETE FROM {self.TABLE} WHERE name = ?", (name,))
            if items is not None:
                self.db.execute(f"INSERT INTO {self.TABLE} VALUES (?, ?)", (name, json.dumps(items)))

    def close(self) -> None:
        self.db.close()


class _ServerBooks:
    """The items book in a database server's replica, written through a DB-API connection ``db``
    after the ``setup`` statements made its table ``table`` (already quoted)."""

    def __init__(self, db: Any, table: str, setup: Sequence[str]):
        self.db, self.table = db, table
        try:
            with self.db.cursor() as cur:
                for statement in setup:
                    cur.execute(statement)
            self.db.commit()
        except BaseException:
            self.db.close()
            raise

    def items(self, name: str) -> Projection | None:
        try:
            with self.db.cursor() as cur:
                cur.execute(f"SELECT items FROM {self.table} WHERE name = %s", (name,))
                row = cur.fetchone()
                return json.loads(row[0]) if row else None
        finally:
            self.db.rollback()

    def set_items(self, name: str, items: Projection | None) -> None:
        """Record the resource's ``items`` (None: forget them)."""
        try:
            with self.db.cursor() as cur:
                cur.execute(f"DELETE FROM {self.table} WHERE name = %s", (name,))
                if items is not None:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (name, json.dumps(items)))
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()


def _postgres_books(url: str) -> _ServerBooks:
    table = f"{postgres.BOOKKEEPING}.replica_items"
    return _ServerBooks(postgres.connect(url), table, (
        f"CREATE SCHEMA IF NOT EXISTS {postgres.BOOKKEEPING}",
        f"CREATE TABLE IF NOT EXISTS {table} (name text PRIMARY KEY, items text NOT NULL)"))


def _mysql_books(url: str) -> _ServerBooks:
    table = mysql.quote(f"{mysql.BOOKKEEPING}replica")
    return _ServerBooks(mysql.open_database(url), table, (
        f"CREATE TABLE IF NOT EXISTS {table} (name varchar(512) PRIMARY KEY, items longtext NOT NULL) "
        f"DEFAULT CHARSET=utf8mb4 COLLATE={mysql.COLLATION}",))
