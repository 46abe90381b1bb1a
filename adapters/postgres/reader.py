"""PostgresReader: the tables of a PostgreSQL database as ``exchange verify`` reads them."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from adapters.postgres.catalog import Table, load_table, user_tables
from adapters.postgres.dialect import COPY_COLUMN, open_database, qualified, quote, raw_text
from adapters.postgres.types import Types, text
from exchange.contracts.changes import TableSchema

_FETCH = 1000


class PostgresReader:
    """Reads the tables of a PostgreSQL database, with the values capture produces.

    Tables without a key show the copy column capture gives them
    (adapters/postgres/keyless.py), so ``exchange verify`` compares like with like.
    """

    def __init__(self, url: str):
        self._db = open_database(url)
        self._db.set_session(readonly=True)
        self._types = Types(lambda: self._db)
        self._streaming = 0  # rows() generators running: their named cursors need the transaction

    def tables(self) -> list[str]:
        """User tables (``table`` in schema public, else ``schema.table``), sorted;
        capture bookkeeping excluded."""
        try:
            with self._db.cursor() as cur:
                return user_tables(cur)
        finally:
            self._end_transaction()

    def table_schema(self, table: str) -> TableSchema:
        return self._table(table).schema

    def rows(self, table: str, order_by: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` as dicts, streamed, ordered by ``order_by``, else by
        the key: NULLs first, text by code point (as exchange.tools.verify compares)."""
        t = self._table(table)
        schema = t.schema
        names = list(schema.column_names)
        source = f"{qualified(table)} t"
        if t.keyless:
            source = (f"(SELECT t.*, row_number() OVER (PARTITION BY t::text) - 1 AS {COPY_COLUMN} "
                      f"FROM {qualified(table)} t) t")
        order = [self._order_sql(t, name) for name in order_by or schema.primary_key or names]
        cursor = self._db.cursor(name=f"exchange_rows_{self._streaming}")
        self._streaming += 1
        try:
            raw_text(cursor)
            cursor.execute(f"SELECT {', '.join(f't.{quote(n)}' for n in names)} FROM {source} "
                           f"ORDER BY {', '.join(order)}")
            parsers = [self._types.parser(c.type_oid) for c in t.columns] + ([int] if t.keyless else [])
            while batch := cursor.fetchmany(_FETCH):
                for values in batch:
                    yield {n: None if v is None else p(v) for n, p, v in zip(names, parsers, values)}
        finally:
            self._streaming -= 1
            if not self._db.closed:
                cursor.close()
                self._end_transaction()

    def close(self) -> None:
        self._db.close()

    def _end_transaction(self) -> None:
        if not self._streaming:
            self._db.rollback()

    def _table(self, table: str) -> Table:
        try:
            with self._db.cursor() as cur:
                found = load_table(cur, table)
        finally:
            self._end_transaction()
        if found is None:
            raise LookupError(f"table {table!r} does not exist")
        return found

    def _order_sql(self, table: Table, name: str) -> str:
        column = table.column(name)
        expression = f"t.{quote(name)}"
        if column is not None and column.collation:
            expression += ' COLLATE "C"'
        elif column is not None and self._types.parser(column.type_oid) is text:
            expression += '::text COLLATE "C"'  # kept as text (interval, json, ...): sort as text
        return expression + " NULLS FIRST"
