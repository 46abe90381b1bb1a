"""MySQLReader: the tables of a MariaDB/MySQL database as ``exchange verify`` reads them."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pymysql.cursors

from adapters.mysql.dialect import open_database, quote, reading
from adapters.mysql.row_values import parser
from adapters.mysql.tables import load_table, user_tables
from adapters.mysql.target_types import TEXT, kind
from exchange.contracts.changes import TableSchema

_FETCH = 1000


class MySQLReader:
    """Reads the tables of a MariaDB/MySQL database, with the values capture produces (row_values.py)."""

    def __init__(self, url: str):
        self._url = url
        self._db = open_database(url)

    def tables(self) -> list[str]:
        """User tables, sorted; replay's bookkeeping excluded."""
        return reading(self._db, user_tables)

    def table_schema(self, table: str) -> TableSchema:
        found = reading(self._db, lambda cur: load_table(cur, table))
        if found is None:
            raise LookupError(f"table {table!r} does not exist")
        return found

    def rows(self, table: str, order_by: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` as dicts, streamed from a connection of their own (an unbuffered cursor,
        one consistent snapshot), ordered by ``order_by``, else by the key, else by every column:
        NULLs first, text by code point (as exchange.tools.verify compares)."""
        schema = self.table_schema(table)
        names = schema.column_names
        types = {c.name: c.type for c in schema.columns}
        order = [f"CAST({quote(n)} AS BINARY)" if kind(types.get(n, "")) == TEXT else quote(n)
                 for n in order_by or schema.primary_key or names]
        parsers = [parser(types[n]) for n in names]
        db = open_database(self._url, cursorclass=pymysql.cursors.SSCursor)
        try:
            with db.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute(f"SELECT {', '.join(map(quote, names))} FROM {quote(table)} ORDER BY {', '.join(order)}",
                            ())
                while batch := cur.fetchmany(_FETCH):
                    for values in batch:
                        yield {n: None if v is None else p(v) for n, p, v in zip(names, parsers, values)}
        finally:
            db.close()

    def close(self) -> None:
        if self._db.open:
            self._db.close()
