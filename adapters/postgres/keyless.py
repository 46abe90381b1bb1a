"""Copy numbers of rows in tables without a key (adapters/keyless.py), stored in table
``exchange_capture.copies`` by slot, content digest and position.

Tables without a key here are those with REPLICA IDENTITY FULL, no primary
key and no configured key: pgoutput sends their whole old rows.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import psycopg2.extras

from adapters import keyless
from adapters.keyless import digest
from adapters.postgres.dialect import BOOKKEEPING
from exchange.contracts.changes import Position

__all__ = ["CopyCounts", "digest"]


class CopyCounts(keyless.CopyCounts):
    """Copy counts of keyless tables' row contents for the slot ``slot``; ``db`` returns the source's connection."""

    def __init__(self, slot: str, db: Callable[[], Any]):
        super().__init__()
        self.slot = slot
        self._db = db

    def _fetch(self, resource: str, digests: list[str]) -> Iterable[tuple[str, int | None]]:
        with self._db().cursor() as cur:
            # One index probe per digest: a plain `digest = ANY(...)` scans the whole
            # slot's range until the table has been analysed.
            cur.execute(f"SELECT d, (SELECT n FROM {BOOKKEEPING}.copies WHERE slot = %s AND resource = %s "
                        "AND digest = d ORDER BY position DESC LIMIT 1) FROM unnest(%s::text[]) d",
                        (self.slot, resource, digests))
            return cur.fetchall()

    def _emptied(self, resource: str, position: Position) -> None:
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.copies SELECT slot, resource, digest, %s, 0 FROM "
                        f"(SELECT DISTINCT ON (digest) * FROM {BOOKKEEPING}.copies WHERE slot = %s AND resource = %s "
                        "AND position < %s ORDER BY digest, position DESC) latest WHERE n > 0 ON CONFLICT DO NOTHING",
                        (position, self.slot, resource, position))

    def _forget(self, low: int, high: int) -> None:
        with self._db().cursor() as cur:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies c USING {BOOKKEEPING}.copies d WHERE d.slot = %s "
                        "AND d.position > %s AND d.position <= %s AND c.slot = d.slot AND c.resource = d.resource "
                        "AND c.digest = d.digest AND c.position < d.position", (self.slot, low, high))
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies WHERE slot = %s AND n = 0 AND position > %s "
                        "AND position <= %s", (self.slot, low, high))

    def _store(self, rows: list[tuple[str, str, int, int]]) -> None:
        with self._db().cursor() as cur:
            psycopg2.extras.execute_values(cur, f"INSERT INTO {BOOKKEEPING}.copies VALUES %s ON CONFLICT DO NOTHING",
                                           [(self.slot, *row) for row in rows])
