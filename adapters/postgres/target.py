"""PostgresTarget: rebuilds tables from replayed row operations (replay and consumer replicas)."""

from __future__ import annotations

import io
from itertools import groupby
from typing import Sequence

import psycopg2.extras

from adapters import sql
from adapters.postgres.catalog import load_table
from adapters.postgres.dialect import (
    BOOKKEEPING,
    CHECKPOINTS,
    PLACEHOLDER,
    alter_sql,
    create_sql,
    open_database,
    qualified,
    quote,
    split,
)
from adapters.postgres.types import to_text
from exchange.contracts import changes as ch
from exchange.contracts.changes import RowOp, TableSchema

COPY_MIN = 500  # runs of at least this many inserts are written with COPY


class PostgresTarget:
    """Rebuilds tables from replayed row operations in the database at ``url``."""

    def __init__(self, url: str):
        self._db = open_database(url)

    def apply_schema(self, schema: TableSchema, renames: dict[str, str] | None = None) -> None:
        """Create the table, or alter it to match ``schema``, first renaming the
        columns ``renames`` names (old -> new), so their values are kept."""
        try:
            with self._db.cursor() as cur:
                current = load_table(cur, schema.name)
                if current is None:
                    schema_name, _ = split(schema.name)
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema_name)}")
                    cur.execute(create_sql(schema))
                else:
                    renaming = sql.rename_sql(qualified(schema.name), [c.name for c in current.columns], renames,
                                             schema.column_names)
                    for statement in renaming:
                        cur.execute(statement)
                    current = load_table(cur, schema.name) if renaming else current
                    for statement in alter_sql(current, schema):
                        cur.execute(statement)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def drop_table(self, table: str, checkpoint: str | None = None) -> None:
        """Drop ``table`` when it exists and forget the checkpoint named
        ``checkpoint`` with it, in one transaction."""
        try:
            with self._db.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {qualified(table)}")
                if checkpoint is not None and self._has_checkpoints(cur):
                    cur.execute(f"DELETE FROM {CHECKPOINTS} WHERE name = %s", (checkpoint,))
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction (large insert runs
        with COPY); a ``checkpoint`` (name, position) is recorded in the same
        transaction."""
        try:
            with self._db.cursor() as cur:
                for (table, op, columns, key, nulls), run in groupby(ops, key=sql.shape):
                    run = list(run)
                    if op == ch.INSERT and len(run) >= COPY_MIN:
                        _copy_in(cur, table, columns, run)
                    elif op != ch.UPDATE or columns:
                        statement = sql.row_sql(qualified(table), op, columns, key, nulls, PLACEHOLDER)
                        psycopg2.extras.execute_batch(cur, statement, [sql.params(o, to_text) for o in run],
                                                      page_size=200)
                if checkpoint is not None:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING}")
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name text PRIMARY KEY, position bigint)")
                    cur.execute(f"INSERT INTO {CHECKPOINTS} VALUES (%s, %s) "
                                "ON CONFLICT (name) DO UPDATE SET position = excluded.position", checkpoint)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""
        try:
            with self._db.cursor() as cur:
                if not self._has_checkpoints(cur):
                    return None
                cur.execute(f"SELECT position FROM {CHECKPOINTS} WHERE name = %s", (name,))
                found = cur.fetchone()
                return found[0] if found else None
        finally:
            self._db.rollback()

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _has_checkpoints(cur) -> bool:
        cur.execute("SELECT to_regclass(%s)", (CHECKPOINTS,))
        return cur.fetchone()[0] is not None


def _copy_in(cur, table: str, columns: tuple[str, ...], run: list[RowOp]) -> None:
    data = io.StringIO()
    for op in run:
        data.write("\t".join(_copy_field(to_text(v)) for v in op.values.values()) + "\n")
    data.seek(0)
    cur.copy_expert(f"COPY {qualified(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN", data)


def _copy_field(text: str | None) -> str:
    if text is None:
        return "\\N"
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
