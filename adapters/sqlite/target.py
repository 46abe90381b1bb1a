"""SQLiteTarget: rebuilds tables from replayed row operations (replay and consumer replicas)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence
from uuid import UUID

from adapters import sql
from adapters.sqlite.dialect import (
    CHECKPOINTS,
    PLACEHOLDER,
    column_sql,
    connect,
    create_sql,
    has_table,
    quote,
    read_schema,
    transaction,
)
from exchange.common.urls import sqlite_path
from exchange.contracts.changes import RowOp, Run, TableSchema


class SQLiteTarget:
    """Rebuilds tables from replayed row operations (the file is created if missing)."""

    def __init__(self, url: str):
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(path)

    def apply_schema(self, schema: TableSchema, renames: dict[str, str] | None = None) -> None:
        """Create the table, or alter it to match ``schema``, first renaming the
        columns ``renames`` names (old -> new), so their values are kept."""
        current = read_schema(self._db, schema.name)
        if current == schema:
            return
        with transaction(self._db):
            if current is None:
                self._db.execute(create_sql(schema))
                return
            renaming = sql.rename_sql(quote(schema.name), current.column_names, renames, schema.column_names)
            for statement in renaming:
                self._db.execute(statement)
            current = read_schema(self._db, schema.name) if renaming else current
            if current != schema and not self._alter(current, schema):
                self._rebuild(current, schema)

    def drop_table(self, table: str, checkpoint: str | None = None) -> None:
        """Drop ``table`` when it exists and forget the checkpoint named
        ``checkpoint`` with it, in one transaction."""
        with transaction(self._db):
            self._db.execute(f"DROP TABLE IF EXISTS {quote(table)}")
            if checkpoint is not None and has_table(self._db, CHECKPOINTS):
                self._db.execute(f"DELETE FROM {CHECKPOINTS} WHERE name = ?", (checkpoint,))

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction; a ``checkpoint``
        (name, position) is recorded in the same transaction."""
        self.apply_runs(sql.runs(ops), checkpoint)

    def apply_runs(self, runs: Sequence[Run], checkpoint: tuple[str, int] | None = None) -> None:
        """As ``apply``, for operations already grouped in runs of one shape."""
        with transaction(self._db):
            for run in runs:
                statement = sql.row_sql(quote(run.table), run.op, run.columns, run.key, run.nulls, PLACEHOLDER)
                if statement:
                    self._db.executemany(statement, sql.converted(run.rows, bindable, BOUND_AS_IS))
            if checkpoint is not None:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name TEXT PRIMARY KEY, position INTEGER)")
                self._db.execute(f"INSERT OR REPLACE INTO {CHECKPOINTS} VALUES (?, ?)", checkpoint)

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""
        if not has_table(self._db, CHECKPOINTS):
            return None
        row = self._db.execute(f"SELECT position FROM {CHECKPOINTS} WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()

    def _alter(self, current: TableSchema, schema: TableSchema) -> bool:
        """ADD/DROP COLUMN to reach ``schema``; False (nothing changed) when that cannot."""
        names = set(schema.column_names)
        kept = [c for c in current.columns if c.name in names]
        added = [c for c in schema.columns if c.name not in set(current.column_names)]
        if tuple(kept + added) != schema.columns or current.primary_key != schema.primary_key:
            return False
        table = quote(schema.name)
        self._db.execute("SAVEPOINT alter_columns")
        try:
            for column in added:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column_sql(column)}")
            for column in current.columns:
                if column.name not in names:
                    self._db.execute(f"ALTER TABLE {table} DROP COLUMN {quote(column.name)}")
            done = True
        except sqlite3.OperationalError:  # e.g. NOT NULL without a default, a non-constant default
            self._db.execute("ROLLBACK TO alter_columns")
            done = False
        self._db.execute("RELEASE alter_columns")
        return done

    def _rebuild(self, current: TableSchema, schema: TableSchema) -> None:
        temporary = "_exchange_rebuild"
        common = ", ".join(quote(c) for c in schema.column_names if c in current.column_names)
        self._db.execute(create_sql(schema, temporary))
        self._db.execute(f"INSERT INTO {temporary} ({common}) SELECT {common} FROM {quote(schema.name)}")
        self._db.execute(f"DROP TABLE {quote(schema.name)}")
        self._db.execute(f"ALTER TABLE {temporary} RENAME TO {quote(schema.name)}")


BOUND_AS_IS = frozenset((str, int, float, bool, type(None), bytes))  # the types ``bindable`` leaves alone


def bindable(value: Any) -> Any:
    """``value`` as SQLite can bind it: exact decimals and UUIDs as text, arrays and JSON as JSON text.

    (A NUMERIC column turns decimal text into a number where that loses nothing.)"""
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value
