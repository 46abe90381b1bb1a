"""Copy numbers of rows in tables without a key (adapters/keyless.py), stored in bookkeeping table
``copies`` by source name, content digest and position.

A table without a key is captured this way only when the node config asks
for it with an empty key: ``[source] keys = { visits = [] }``; the binlog's
full row images carry every column, so updates and deletes say which
content they hit.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from adapters import keyless
from adapters.mysql.bookkeeping import BOOKKEEPING
from exchange.contracts.changes import Position


class CopyCounts(keyless.CopyCounts):
    """Copy counts of the source named ``source``; ``db`` returns the source's connection."""

    def __init__(self, source: str, db: Callable[[], Any]):
        super().__init__()
        self.source = source
        self._db = db

    def _fetch(self, resource: str, digests: list[str]) -> Iterable[tuple[str, int | None]]:
        marks = ", ".join(["%s"] * len(digests))
        with self._db().cursor() as cur:
            cur.execute(f"SELECT digest, n FROM {BOOKKEEPING}.copies c WHERE source = %s AND resource = %s AND "
                        f"digest IN ({marks}) AND position = (SELECT MAX(position) FROM {BOOKKEEPING}.copies d "
                        "WHERE d.source = c.source AND d.resource = c.resource AND d.digest = c.digest)",
                        (self.source, resource, *digests))
            return cur.fetchall()

    def _store(self, rows: list[tuple[str, str, int, int]]) -> None:
        with self._db().cursor() as cur:
            cur.executemany(f"INSERT IGNORE INTO {BOOKKEEPING}.copies (source, resource, digest, position, n) "
                            "VALUES (%s, %s, %s, %s, %s)", [(self.source, *row) for row in rows])

    def _emptied(self, resource: str, position: Position) -> None:
        with self._db().cursor() as cur:
            cur.execute(f"INSERT IGNORE INTO {BOOKKEEPING}.copies (source, resource, digest, position, n) "
                        f"SELECT source, resource, digest, %s, 0 FROM {BOOKKEEPING}.copies c WHERE source = %s "
                        f"AND resource = %s AND n > 0 AND position = (SELECT MAX(position) FROM {BOOKKEEPING}.copies d "
                        "WHERE d.source = c.source AND d.resource = c.resource AND d.digest = c.digest "
                        "AND d.position < %s)", (position, self.source, resource, position))

    def _forget(self, low: int, high: int) -> None:
        with self._db().cursor() as cur:
            cur.execute(f"DELETE c FROM {BOOKKEEPING}.copies c JOIN {BOOKKEEPING}.copies d ON c.source = d.source "
                        "AND c.resource = d.resource AND c.digest = d.digest AND c.position < d.position "
                        "WHERE d.source = %s AND d.position > %s AND d.position <= %s", (self.source, low, high))
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies WHERE source = %s AND n = 0 AND position > %s "
                        "AND position <= %s", (self.source, low, high))
