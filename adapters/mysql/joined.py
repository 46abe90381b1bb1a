"""Runs of updates and deletes by key in few statements: the table joined to the run's rows.

``UPDATE t JOIN (SELECT ... UNION ALL SELECT ...) v ON key SET ...`` and
``DELETE t FROM t JOIN (...) v ON key`` carry up to about a megabyte of
rows each (PyMySQL's limit for its multi-row INSERTs), instead of one
statement a row.  Key columns compare in the table's collation (the
column's, not the literals').
"""

from __future__ import annotations

from typing import Any, Sequence

from adapters.mysql.dialect import quote
from exchange.contracts import changes as ch

MAX_STATEMENT = 1024000


def statement(table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """The statement around the rows (``{rows}``): the run's changed ``columns`` (updates), then its key."""
    fields = (*columns, *key) if op == ch.UPDATE else key
    on = " AND ".join(f"t.{quote(k)} = v._v{fields.index(k, len(fields) - len(key))}" for k in key)
    if op == ch.UPDATE:
        assignments = ", ".join(f"t.{quote(c)} = v._v{i}" for i, c in enumerate(columns))
        return f"UPDATE {quote(table)} AS t JOIN ({{rows}}) AS v ON {on} SET {assignments}"
    return f"DELETE t FROM {quote(table)} AS t JOIN ({{rows}}) AS v ON {on}"


def execute(cur: Any, around: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``around`` (from ``statement``) over ``rows`` (each the parameters of an ``adapters.sql.Run``)."""
    width = len(rows[0])
    first = "SELECT " + ", ".join(f"%s AS _v{i}" for i in range(width))
    other = "SELECT " + ", ".join(["%s"] * width)
    selects: list[str] = []
    size = 0
    for row in rows:
        select = cur.mogrify(other if selects else first, row)
        if selects and size + len(select) > MAX_STATEMENT:
            _run(cur, around, selects)
            selects, size, select = [], 0, cur.mogrify(first, row)
        selects.append(select)
        size += len(select) + 11
    _run(cur, around, selects)


def _run(cur: Any, around: str, selects: list[str]) -> None:
    # The rows are SQL text already: their % signs are doubled for the formatting the names need.
    cur.execute(around.replace("{rows}", " UNION ALL ".join(selects).replace("%", "%%")), ())
