"""Tables as MariaDB's and MySQL's ``information_schema`` describes them, for capture.

A resource is a table of the captured database, named as the table is
(``[source] tables`` entries match it as adapters/selection.py says: an
entry without a dot names a table of the source's database).  Column types
are ``COLUMN_TYPE`` as the server prints it (``decimal(65,30)``,
``bigint(20) unsigned``, ``enum('a','b')``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

from adapters.keyless import COPY_COLUMN
from exchange.contracts.changes import Column, TableSchema


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    data_type: str  # DATA_TYPE, lower case: int, varchar, decimal, timestamp, ...
    column_type: str  # COLUMN_TYPE: decimal(65,30), set('a','b'), ...
    notnull: bool = False
    default: str | None = None  # COLUMN_DEFAULT as the server reports it
    collation: str | None = None
    extra: str = ""  # EXTRA: auto_increment, ...

    @property
    def binary(self) -> bool:
        """Whether string values are bytes (BINARY, VARBINARY, BLOB)."""
        return self.data_type in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")

    @cached_property
    def members(self) -> tuple[str, ...]:
        """The members of an ENUM or SET column, in declaration order."""
        if self.data_type not in ("enum", "set"):
            return ()
        body = self.column_type[self.column_type.index("(") + 1:self.column_type.rindex(")")]
        members, current, quoted, i = [], [], False, 0
        while i < len(body):
            char = body[i]
            if char == "'" and quoted and body[i + 1:i + 2] == "'":
                current.append("'")
                i += 1
            elif char == "'":
                quoted = not quoted
                if not quoted:
                    members.append("".join(current))
                    current = []
            elif quoted:
                current.append(char)
            i += 1
        return tuple(members)


@dataclass(frozen=True)
class Table:
    """What capture needs to know about one table."""

    resource: str
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...] = ()  # the columns of each unique index without NULLable columns
    configured_key: tuple[str, ...] = ()
    keyless: bool = False  # no key: rows are keyed by all their columns and a copy number (adapters/keyless.py)

    @property
    def key(self) -> tuple[str, ...]:
        return self.configured_key or self.primary_key

    def column(self, name: str) -> CatalogColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @cached_property
    def schema(self) -> TableSchema:
        columns = tuple(Column(c.name, c.column_type, c.notnull, c.default) for c in self.columns)
        if self.keyless:
            columns += (Column(COPY_COLUMN, "int", True),)
            return TableSchema(self.resource, columns, tuple(c.name for c in columns))
        return TableSchema(self.resource, columns, self.key)


def user_tables(cur, database: str) -> list[str]:
    """The base tables of ``database``, sorted."""
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')", (database,))
    return sorted(row[0] for row in cur.fetchall())


def load_table(cur, database: str, resource: str, configured_key: Sequence[str] | None = None) -> Table | None:
    """The table ``resource`` of ``database`` as the catalog describes it now; None when missing.
    ``configured_key`` empty (not None) captures a table without a primary key as keyless."""
    cur.execute("SELECT COLUMN_NAME, LOWER(DATA_TYPE), COLUMN_TYPE, IS_NULLABLE = 'NO', COLUMN_DEFAULT, "
                "COLLATION_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                "ORDER BY ORDINAL_POSITION", (database, resource))
    columns = tuple(CatalogColumn(name, data_type, column_type, bool(notnull), _default(default), collation,
                                  extra or "")
                    for name, data_type, column_type, notnull, default, collation, extra in cur.fetchall())
    if not columns:
        return None
    cur.execute("SELECT INDEX_NAME, COLUMN_NAME, NULLABLE FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (database, resource))
    indexes: dict[str, list[tuple[str, bool]]] = {}
    for index, column, nullable in cur.fetchall():
        indexes.setdefault(index, []).append((column, nullable == "YES"))
    primary = tuple(c for c, _ in indexes.pop("PRIMARY", []))
    unique = tuple(tuple(c for c, _ in cols) for cols in indexes.values() if not any(n for _, n in cols))
    keyless = configured_key is not None and not configured_key and not primary
    return Table(resource, columns, primary, unique, tuple(configured_key or ()), keyless)


def _default(default: str | None) -> str | None:
    """COLUMN_DEFAULT as one form: MariaDB reports NULL defaults as the text 'NULL', MySQL as NULL."""
    return None if default is None or default == "NULL" else default


def estimated_rows(cur, database: str, resource: str) -> int:
    """The server's row count estimate of a table (at least 1: it is still to be read)."""
    cur.execute("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (database, resource))
    found = cur.fetchone()
    return max(1, int(found[0] or 0) if found else 1)
