"""PostgresTarget: rebuilds tables from replayed row operations (replay and consumer replicas)."""

from __future__ import annotations

import io
import re
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
from exchange.contracts.changes import RowOp, Run, TableSchema
from exchange.store.postgres import advisory_lock

COPY_MIN = 50  # runs of at least this many rows are written with COPY (updates and deletes: _joined)
RUN_TABLE = "pg_temp._exchange_run"


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
                    advisory_lock(cur, "exchange.target:schemas")  # replays in parts may create one together
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
        """Apply row operations in order, in one transaction (large runs with
        COPY); a ``checkpoint`` (name, position) is recorded in the same
        transaction."""
        self.apply_runs(sql.runs(ops), checkpoint)

    def apply_runs(self, runs: Sequence[Run], checkpoint: tuple[str, int] | None = None) -> None:
        """As ``apply``, for operations already grouped in runs of one shape."""
        try:
            with self._db.cursor() as cur:
                for table, op, columns, key, nulls, rows in runs:
                    texts = sql.converted(rows, to_text, AS_TEXT)
                    if op == ch.INSERT and len(rows) >= COPY_MIN:
                        _copy_in(cur, qualified(table), columns, texts)
                    elif len(rows) >= COPY_MIN and not nulls and (op == ch.DELETE or columns) \
                            and set(columns).isdisjoint(key):
                        _joined(cur, table, op, columns, key, texts)
                    elif op != ch.UPDATE or columns:
                        statement = sql.row_sql(qualified(table), op, columns, key, nulls, PLACEHOLDER)
                        psycopg2.extras.execute_batch(cur, statement, texts, page_size=200)
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


def _joined(cur, table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...],
            rows: list[Sequence[str | None]]) -> None:
    """A run of updates (of ``columns``) or deletes by ``key``: its rows copied into a temporary table with the
    table's column types, then one statement joining the two by key, instead of a statement a row."""
    fields = (*columns, *key) if op == ch.UPDATE else key
    cur.execute(f"CREATE TEMPORARY TABLE {RUN_TABLE} AS SELECT {', '.join(quote(f) for f in fields)} "
                f"FROM {qualified(table)} WITH NO DATA")
    _copy_in(cur, RUN_TABLE, fields, rows)
    on = " AND ".join(f"t.{quote(k)} = r.{quote(k)}" for k in key)
    if op == ch.UPDATE:
        assignments = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in columns)
        cur.execute(f"UPDATE {qualified(table)} AS t SET {assignments} FROM {RUN_TABLE} AS r WHERE {on}")
    else:
        cur.execute(f"DELETE FROM {qualified(table)} AS t USING {RUN_TABLE} AS r WHERE {on}")
    cur.execute(f"DROP TABLE {RUN_TABLE}")


def _copy_in(cur, table: str, columns: tuple[str, ...], rows: list[Sequence[str | None]]) -> None:
    """COPY ``rows`` (text as ``to_text`` gives it) into ``table`` (already quoted)."""
    data = io.StringIO("\n".join(_copy_line(row) for row in rows) + "\n")
    cur.copy_expert(f"COPY {table} ({', '.join(quote(c) for c in columns)}) FROM STDIN", data)


def _copy_line(texts: Sequence[str | None]) -> str:
    """One row of COPY text; most rows hold nothing to escape, which one search over them tells."""
    if _COPY_SPECIAL.search("".join(filter(None, texts))):
        return "\t".join(["\\N" if t is None else t.translate(_COPY_ESCAPES) for t in texts])
    if None in texts:
        return "\t".join(["\\N" if t is None else t for t in texts])
    return "\t".join(texts)  # type: ignore[arg-type]  # no None in it


AS_TEXT = frozenset((str, type(None)))  # the types ``to_text`` returns as they are
_COPY_SPECIAL = re.compile("[\\\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
