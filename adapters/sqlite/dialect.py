"""SQLite's side of the SQL both capture and apply write: connections, transactions, schemas, DDL."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator, Sequence

from adapters import sql
from adapters.sql import quote
from exchange.contracts.changes import Column, TableSchema

CHECKPOINTS = "_exchange_checkpoints"  # replay progress in a target
PLACEHOLDER = "?"


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) that waits for other writers."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return db


@contextmanager
def transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """One transaction on ``db``, rolled back when the block raises."""
    db.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def user_tables(db: sqlite3.Connection) -> list[str]:
    """Tables of the application, sorted (capture bookkeeping and SQLite's own tables excluded)."""
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' "
        "AND name NOT LIKE '\\_exchange\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )
    return [r[0] for r in rows]


def read_schema(db: sqlite3.Connection, table: str, key: Sequence[str] | None = None) -> TableSchema | None:
    """The table's schema (None when it does not exist); ``key`` overrides the declared primary key."""
    if not has_table(db, table):
        return None
    info = db.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    columns = tuple(Column(name, type_, bool(notnull), default) for _, name, type_, notnull, default, _ in info)
    declared = tuple(row[1] for row in sorted(info, key=lambda row: row[5]) if row[5])  # row[5]: position in the key
    return TableSchema(table, columns, tuple(key) if key else declared)


def key_sql(schema: TableSchema) -> str:
    """The key columns, for ORDER BY and row comparisons."""
    return ", ".join(quote(k) for k in schema.primary_key)


def column_sql(column: Column) -> str:
    # table_info reports defaults without their parentheses
    default = None if column.default is None else f"({column.default})"
    return sql.column_sql(column.name, column.type, column.notnull, default)


def create_sql(schema: TableSchema, name: str | None = None) -> str:
    """CREATE TABLE for ``schema`` (under another ``name`` if given)."""
    return sql.create_sql(quote(name or schema.name), map(column_sql, schema.columns), schema.primary_key)
