"""SQLiteReader: the tables of a SQLite database as ``exchange verify`` reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from adapters.sqlite.dialect import connect, quote, read_schema, user_tables
from exchange.common.urls import sqlite_path
from exchange.contracts.changes import TableSchema

_FETCH = 500


class SQLiteReader:
    """Reads the tables of a SQLite database; a missing file reads as an empty database."""

    def __init__(self, url: str):
        path = sqlite_path(url)
        self._db = connect(path if Path(path).exists() else ":memory:")  # never create the file
        self._db.execute("PRAGMA query_only=ON")

    def tables(self) -> list[str]:
        """User tables, sorted (capture bookkeeping and SQLite's own tables excluded)."""
        return user_tables(self._db)

    def table_schema(self, table: str) -> TableSchema:
        schema = read_schema(self._db, table)
        if schema is None:
            raise LookupError(f"table {table!r} does not exist")
        return schema

    def rows(self, table: str, order_by: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` as dicts, streamed, ordered by ``order_by``, else
        by the primary key, else by rowid."""
        schema = self.table_schema(table)
        order = [quote(c) for c in order_by or schema.primary_key] or ["rowid"]
        columns = schema.column_names
        cursor = self._db.execute(
            f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)} ORDER BY {', '.join(order)}"
        )
        while batch := cursor.fetchmany(_FETCH):
            for values in batch:
                yield dict(zip(columns, values))

    def close(self) -> None:
        self._db.close()
