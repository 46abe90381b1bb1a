"""The schemas capture has emitted, by table and position, kept in the source database.

A SCHEMA change comes before a table's snapshot rows and before the first
change whose relation (columns, types) differs from the last schema
emitted.  The history is stored (table ``exchange_capture.schemas``) with
the position it was emitted at, so a source that starts again knows what the
node has seen.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from adapters.postgres.dialect import BOOKKEEPING
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, TableSchema


class SchemaHistory:
    """The schemas emitted for the slot ``slot``; ``db`` returns the source's connection."""

    def __init__(self, slot: str, db: Callable[[], Any]):
        self.slot = slot
        self._db = db
        self._schemas: dict[str, list[tuple[int, TableSchema]]] = {}  # emitted, by position

    def load(self, cur) -> None:
        """Read the stored history (after the rows beyond the node's position were deleted)."""
        cur.execute(f"SELECT resource, position, schema FROM {BOOKKEEPING}.schemas WHERE slot = %s "
                    "ORDER BY position", (self.slot,))
        self._schemas = {}
        for resource, position, schema in cur.fetchall():
            self._schemas.setdefault(resource, []).append((position, TableSchema.from_dict(json.loads(schema))))

    def before(self, resource: str, position: int) -> TableSchema | None:
        """The schema last emitted for ``resource`` before ``position``."""
        found = [schema for at, schema in self._schemas.get(resource, []) if at < position]
        return found[-1] if found else None

    def change(self, position: Position, resource: str, schema: TableSchema, at: datetime) -> ch.Change:
        """The SCHEMA change emitting ``schema`` at ``position``, recorded."""
        self.record(position, resource, schema)
        return ch.Change(position, resource, ch.SCHEMA, commit_time=at, schema=schema)

    def record(self, position: Position, resource: str, schema: TableSchema) -> None:
        """Remember (and store) that ``schema`` is emitted at ``position``."""
        history = self._schemas.setdefault(resource, [])
        if any(at == position for at, _ in history):
            return
        history.append((position, schema))
        history.sort(key=lambda entry: entry[0])
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.schemas VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (self.slot, resource, position, json.dumps(schema.to_dict(), ensure_ascii=False)))
