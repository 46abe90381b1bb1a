"""MySQLTarget: rebuilds tables from replayed row operations in MariaDB/MySQL (replay and consumer replicas)."""

from __future__ import annotations

from itertools import groupby
from typing import Sequence

from adapters import sql
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
)
from adapters.mysql.row_values import to_param
from adapters.mysql.tables import load_table
from exchange.contracts.changes import RowOp, TableSchema

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
        INSERTs); a ``checkpoint`` (name, position) is recorded in the same transaction."""
        try:
            with self._db.cursor() as cur:
                for (table, op, columns, key, nulls), run in groupby(ops, key=sql.shape):
                    statement = sql.row_sql(quote(table), op, columns, key, nulls, PLACEHOLDER, quote)
                    if statement:
                        cur.executemany(statement, [sql.params(o, to_param) for o in run])
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
