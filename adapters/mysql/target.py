"""MySQLTarget: rebuilds tables from replayed row operations in MariaDB/MySQL (replay and consumer replicas)."""

from __future__ import annotations

from typing import Any, Sequence

import pymysql

from adapters import sql
from adapters.apply import ApplyError
from adapters.mysql import joined
from adapters.mysql.dialect import (
    CHECKPOINTS,
    COLLATION,
    DROPS,
    PLACEHOLDER,
    alter_sql,
    create_sql,
    open_database,
    quote,
    reading,
    reason,
)
from adapters.mysql.row_values import BOUND_AS_IS, to_param
from adapters.mysql.tables import load_table
from exchange.common.urls import redact_url
from exchange.contracts import changes as ch
from exchange.contracts.changes import DatabaseUnavailable, RowOp, Run, TableSchema

_BOOKS = (f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name varchar(512) PRIMARY KEY, position bigint NOT NULL) "
          f"DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION}",
          f"CREATE TABLE IF NOT EXISTS {DROPS} (name varchar(512) PRIMARY KEY) "
          f"DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION}")


class MySQLTarget:
    """Rebuilds tables from replayed row operations in the database at ``url``.

    Replay's tables (checkpoints, drops under way) are made when the target
    is opened: DDL would end the transaction of a batch.  A drop interrupted
    after its checkpoint was forgotten is finished here too.
    """

    def __init__(self, url: str):
        self._db = open_database(url)
        try:
            with self._db.cursor() as cur:
                for statement in _BOOKS:
                    cur.execute(statement)
                cur.execute(f"SELECT name FROM {DROPS}")
                unfinished = [name for (name,) in cur.fetchall()]
            self._db.commit()
            for table in unfinished:
                self._drop(table)
        except pymysql.err.MySQLError as e:
            self._db.close()
            raise DatabaseUnavailable(f"cannot keep replay's tables in {redact_url(url)}: {reason(e)}") from None
        except BaseException:
            self._db.close()
            raise

    def apply_schema(self, schema: TableSchema, renames: dict[str, str] | None = None) -> None:
        """Create the table, or alter it to match ``schema``, first renaming the
        columns ``renames`` names (old -> new), so their values are kept; one statement."""
        try:
            with self._db.cursor() as cur:
                current = load_table(cur, schema.name)
                statement = create_sql(schema) if current is None else alter_sql(current, schema, renames)
                if statement:
                    cur.execute(statement, ())
            self._db.commit()
        except pymysql.err.MySQLError as e:
            self._db.rollback()
            raise ApplyError(f"cannot give the table {schema.name!r} its schema: {reason(e)}") from None
        except BaseException:
            self._db.rollback()
            raise

    def drop_table(self, table: str, checkpoint: str | None = None) -> None:
        """Drop ``table`` when it exists and forget the checkpoint named ``checkpoint`` with it: the
        checkpoint goes in one transaction with a note of the drop, which outlives an interruption."""
        quote(table)
        try:
            with self._db.cursor() as cur:
                if checkpoint is not None:
                    cur.execute(f"DELETE FROM {CHECKPOINTS} WHERE name = %s", (checkpoint,))
                cur.execute(f"INSERT IGNORE INTO {DROPS} VALUES (%s)", (table,))
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise
        self._drop(table)

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction (runs of inserts as multi-row
        INSERTs, of updates and deletes as joins: joined.py); a ``checkpoint`` (name, position)
        is recorded in the same transaction."""
        self.apply_runs(sql.runs(ops), checkpoint)

    def apply_runs(self, runs: Sequence[Run], checkpoint: tuple[str, int] | None = None) -> None:
        """As ``apply``, for operations already grouped in runs of one shape."""
        try:
            with self._db.cursor() as cur:
                for table, op, columns, key, nulls, rows in runs:
                    try:
                        _apply_run(cur, table, op, columns, key, nulls, sql.converted(rows, to_param, BOUND_AS_IS))
                    except pymysql.err.DataError as e:  # a value the column cannot hold
                        raise ApplyError(f"cannot {op} rows of the table {table!r}: {reason(e)}") from None
                if checkpoint is not None:
                    cur.execute(f"INSERT INTO {CHECKPOINTS} VALUES (%s, %s) "
                                "ON DUPLICATE KEY UPDATE position = VALUES(position)", checkpoint)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""
        def position(cur) -> tuple | None:
            cur.execute(f"SELECT position FROM {CHECKPOINTS} WHERE name = %s", (name,))
            return cur.fetchone()

        found = reading(self._db, position)
        return found[0] if found else None

    def close(self) -> None:
        if self._db.open:
            self._db.close()

    def _drop(self, table: str) -> None:
        with self._db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {quote(table)}", ())
            cur.execute(f"DELETE FROM {DROPS} WHERE name = %s", (table,))
        self._db.commit()


def _apply_run(cur, table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...], nulls: tuple[bool, ...],
               rows: list[Sequence[Any]]) -> None:
    statement = sql.row_sql(quote(table), op, columns, key, nulls, PLACEHOLDER, quote)
    if op != ch.INSERT and not nulls and len(rows) > 1 and statement:
        joined.execute(cur, joined.statement(table, op, columns, key), rows)
    elif statement:
        cur.executemany(statement, rows)
