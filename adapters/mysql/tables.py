"""Tables of a MariaDB/MySQL database as ``information_schema`` describes them (for apply and reading)."""

from __future__ import annotations

import pymysql

from adapters.mysql.dialect import BOOKKEEPING
from adapters.mysql.target_types import canonical
from exchange.contracts.changes import Column, TableSchema

# A name equal to a parameter: the first comparison lets MariaDB open only that table, the second
# tells case apart (information_schema compares names case-insensitively).
_NAMED = "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND BINARY TABLE_NAME = %s"


def user_tables(cur) -> list[str]:
    """The database's tables, sorted by code point; replay's bookkeeping (``_exchange_*``) left out."""
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                "AND TABLE_TYPE = 'BASE TABLE'")
    return sorted(name for (name,) in cur.fetchall() if not name.startswith(BOOKKEEPING))


def load_table(cur, table: str) -> TableSchema | None:
    """The table's columns (types as ``target_types.canonical`` writes them, JSON columns as ``json``),
    nullability, literal defaults and primary key; None when there is no such table."""
    cur.execute("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS "
                f"WHERE {_NAMED} ORDER BY ORDINAL_POSITION", (table, table))
    found = cur.fetchall()
    if not found:
        return None
    json = _json_columns(cur, table)
    columns = tuple(Column(name, "json" if name in json else canonical(type_), nullable == "NO",
                           None if default in (None, "NULL") else default)
                    for name, type_, nullable, default in found)
    cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                f"WHERE {_NAMED} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION", (table, table))
    return TableSchema(table, columns, tuple(name for (name,) in cur.fetchall()))


def _json_columns(cur, table: str) -> set[str]:
    """MariaDB's JSON columns: text checked by ``json_valid`` (MySQL reports the type ``json`` itself)."""
    try:
        cur.execute("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s AND BINARY TABLE_NAME = %s "
                    "AND LEVEL = 'Column'", (table, table))
    except pymysql.err.OperationalError:  # MySQL: no TABLE_NAME or LEVEL there
        return set()
    return {clause[len("json_valid(`"):-2].replace("``", "`") for (clause,) in cur.fetchall()
            if clause.startswith("json_valid(`") and clause.endswith("`)")}
