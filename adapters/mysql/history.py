"""The schemas capture has emitted, by table and position (bookkeeping table ``schemas``).

A SCHEMA change comes before a table's first snapshot rows, at each DDL
statement that changes a captured table, and before a row change whose
columns (as the binlog's table map names them) differ from the schema last
emitted.  ``describe`` compares a new schema with the one before, given the
renames the statement made (ddl.py): whether the table must be read again
because the statement changed values the binlog does not show (a column's
type changed, a column added with a value for the existing rows).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from adapters.mysql.bookkeeping import BOOKKEEPING
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, TableSchema


class SchemaHistory:
    """The schemas emitted by source ``source``; ``db`` returns the source's connection."""

    def __init__(self, source: str, db: Callable[[], Any]):
        self.source = source
        self._db = db
        self._schemas: dict[str, list[tuple[int, TableSchema]]] = {}

    def load(self, cur) -> None:
        """Read the stored history (after the rows beyond the node's position were deleted)."""
        cur.execute(f"SELECT resource, position, `schema` FROM {BOOKKEEPING}.schemas WHERE source = %s "
                    "ORDER BY position", (self.source,))
        self._schemas = {}
        for resource, position, schema in cur.fetchall():
            self._schemas.setdefault(resource, []).append((int(position), TableSchema.from_dict(json.loads(schema))))

    def before(self, resource: str, position: int) -> TableSchema | None:
        """The schema last emitted for ``resource`` before ``position``."""
        found = [schema for at, schema in self._schemas.get(resource, []) if at < position]
        return found[-1] if found else None

    def change(self, position: Position, resource: str, schema: TableSchema, at: datetime | None,
               txid: str = "", renames: dict[str, str] | None = None) -> ch.Change:
        """The SCHEMA change emitting ``schema`` at ``position``, recorded."""
        history = self._schemas.setdefault(resource, [])
        if not any(at_ == position for at_, _ in history):
            history.append((position, schema))
            history.sort(key=lambda entry: entry[0])
            with self._db().cursor() as cur:
                cur.execute(f"INSERT IGNORE INTO {BOOKKEEPING}.schemas VALUES (%s, %s, %s, %s)",
                            (self.source, resource, position, json.dumps(schema.to_dict(), ensure_ascii=False)))
        return ch.Change(position, resource, ch.SCHEMA, commit_time=at, txid=txid, schema=schema,
                         renames=renames or None)


def needs_reread(previous: TableSchema | None, schema: TableSchema, renames: dict[str, str]) -> bool:
    """Whether going from ``previous`` to ``schema`` (with ``renames``) changed values the binlog does not
    carry: a kept column's type changed, or a column was added with a value for the existing rows
    (a default, or NOT NULL, which fills them with the type's zero)."""
    if previous is None:
        return False
    old = {c.name: c for c in previous.columns}
    new_to_old = {new: old_name for old_name, new in renames.items()}
    for column in schema.columns:
        before = old.get(new_to_old.get(column.name, column.name))
        if before is None:
            if column.default is not None or column.notnull:
                return True
        elif before.type != column.type:
            return True
    return False
