"""A consumer's replica database: the entitled resources of other agencies, applied by the replay path.

Rows go in through ``adapters.apply.apply_events`` and the database's
ApplyTarget, each batch in one transaction with its checkpoint
(``consumer:<provider>:<resource>``: the hub position reached).  Beside
that, the replica remembers the data items each resource was projected to;
when they change, or the entitlement is lost, the resource is withdrawn:
its table, checkpoint and items removed in one transaction, so the replica
never holds more than the consumer is entitled to.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Sequence

import adapters
from exchange.contracts.changes import ApplyTarget
from exchange.contracts.events import RecordEvent
from adapters.apply import apply_events
from exchange.store import sqlite_path


def checkpoint_name(provider: str, resource: str) -> str:
    return f"consumer:{provider}:{resource}"


class Replica:
    """The replica database at ``url`` (SQLite or PostgreSQL)."""

    def __init__(self, url: str):
        self.url = url
        self.target: ApplyTarget = adapters.open_target(url)
        self.books = _PostgresBooks(url) if url.startswith("postgresql") else _SQLiteBooks(url)

    def position(self, provider: str, resource: str) -> int:
        """The hub position up to which the resource is applied (0: nothing yet)."""
        return self.target.checkpoint(checkpoint_name(provider, resource)) or 0

    def items(self, provider: str, resource: str) -> list[str] | None:
        """The data items the resource was received with (None: never received)."""
        return self.books.items(checkpoint_name(provider, resource))

    def set_items(self, provider: str, resource: str, items: Sequence[str]) -> None:
        self.books.withdraw(checkpoint_name(provider, resource), None, list(items))

    def withdraw(self, provider: str, resource: str, items: Sequence[str] | None = None) -> None:
        """Remove the resource's table, checkpoint and items; with ``items``, start over with those."""
        self.books.withdraw(checkpoint_name(provider, resource), resource, None if items is None else list(items))

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
        from adapters.sqlite import CHECKPOINTS, _connect

        self.checkpoints = CHECKPOINTS
        self.db: sqlite3.Connection = _connect(sqlite_path(url))
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (name TEXT PRIMARY KEY, items TEXT NOT NULL)")

    def items(self, name: str) -> list[str] | None:
        row = self.db.execute(f"SELECT items FROM {self.TABLE} WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def withdraw(self, name: str, table: str | None, items: list[str] | None) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if table is not None:
                self.db.execute(f'DROP TABLE IF EXISTS "{table.replace(chr(34), chr(34) * 2)}"')
                if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (self.checkpoints,)).fetchone():
                    self.db.execute(f"DELETE FROM {self.checkpoints} WHERE name = ?", (name,))
            self.db.execute(f"DELETE FROM {self.TABLE} WHERE name = ?", (name,))
            if items is not None:
                self.db.execute(f"INSERT INTO {self.TABLE} VALUES (?, ?)", (name, json.dumps(items)))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


class _PostgresBooks:
    def __init__(self, url: str):
        from adapters.postgres import BOOKKEEPING, CHECKPOINTS, _connect

        self.table = f"{BOOKKEEPING}.replica_items"
        self.checkpoints = CHECKPOINTS
        self.db = _connect(url)
        with self.db.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (name text PRIMARY KEY, items text NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self.checkpoints} (name text PRIMARY KEY, position bigint)")
        self.db.commit()

    def items(self, name: str) -> list[str] | None:
        try:
            with self.db.cursor() as cur:
                cur.execute(f"SELECT items FROM {self.table} WHERE name = %s", (name,))
                row = cur.fetchone()
                return json.loads(row[0]) if row else None
        finally:
            self.db.rollback()

    def withdraw(self, name: str, table: str | None, items: list[str] | None) -> None:
        from adapters.postgres import _quote, _split

        try:
            with self.db.cursor() as cur:
                if table is not None:
                    schema, bare = _split(table)
                    cur.execute(f"DROP TABLE IF EXISTS {_quote(schema)}.{_quote(bare)}")
                    cur.execute(f"DELETE FROM {self.checkpoints} WHERE name = %s", (name,))
                cur.execute(f"DELETE FROM {self.table} WHERE name = %s", (name,))
                if items is not None:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (name, json.dumps(items)))
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()
