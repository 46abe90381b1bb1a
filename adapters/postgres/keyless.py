"""Copy numbers of rows in tables without a key.

Tables without a key (REPLICA IDENTITY FULL, no primary key, no configured
key) get a synthetic column ``_exchange_copy``: identical rows are copies
0, 1, 2 ... and the key is every column plus the copy number.  pgoutput
cannot say which of two identical rows an update or delete hit (and it does
not matter), so the source counts the copies of each row content (table
``exchange_capture.copies``, by content digest and position): an insert adds
the next copy, a delete removes the last one.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import psycopg2.extras

from adapters.postgres.catalog import Table
from adapters.postgres.dialect import BOOKKEEPING, COPY_COLUMN
from exchange.contracts.changes import Position
from exchange.contracts.events import canonical_json


def digest(row: dict[str, Any]) -> str:
    """The digest a row content is counted under."""
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


CACHED = 100_000  # copy counts kept in memory between reads (more are read again as needed)


class CopyCounts:
    """Copy counts of keyless tables' row contents for the slot ``slot``; ``db`` returns the source's connection."""

    def __init__(self, slot: str, db: Callable[[], Any]):
        self.slot = slot
        self._db = db
        self._copies: dict[tuple[str, str], int] = {}
        self._log: dict[tuple[str, str, int], int] = {}  # (resource, digest, position) -> copies, not stored yet
        self._pruned = 0  # stored counts are pruned up to here

    def clear(self) -> None:
        """Forget what is held in memory (the stored counts are read again as needed)."""
        self._copies, self._log = {}, {}

    def number(self, table: Table, image: dict | None, delta: int, position: Position,
               after: Position) -> dict | None:
        """``image`` with its copy number (keyless tables), counting the copies of its content
        (+1 for a new row, -1 for a removed one); changes at or before ``after`` count nothing."""
        if image is None or not table.keyless or position <= after:
            return image
        content = digest(image)
        count = self._copies[(table.resource, content)]
        copy = count if delta > 0 else max(count - 1, 0)
        self.set(table.resource, content, position, max(count + delta, 0))
        return {**image, COPY_COLUMN: copy}

    def load(self, images: list[tuple[str, dict[str, Any]]]) -> None:
        """Fetch the copy counts of row contents not counted yet, one query per table."""
        wanted: dict[str, set[str]] = {}
        for resource, image in images:
            content = digest(image)
            if (resource, content) not in self._copies:
                wanted.setdefault(resource, set()).add(content)
        with self._db().cursor() as cur:
            for resource, digests in wanted.items():
                # One index probe per digest: a plain `digest = ANY(...)` scans the whole
                # slot's range until the table has been analysed.
                cur.execute(f"SELECT d, (SELECT n FROM {BOOKKEEPING}.copies WHERE slot = %s AND resource = %s "
                            "AND digest = d ORDER BY position DESC LIMIT 1) FROM unnest(%s::text[]) d",
                            (self.slot, resource, list(digests)))
                self._copies.update(((resource, d), n or 0) for d, n in cur.fetchall())

    def set(self, resource: str, content: str, position: Position, count: int) -> None:
        """``count`` copies of the content with digest ``content`` as of ``position``."""
        self._copies[(resource, content)] = count
        self._log[(resource, content, position)] = count  # an update may count the same content twice

    def truncate(self, resource: str, position: Position) -> None:
        """The table was emptied at ``position``: no content has a copy left."""
        self.save()
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.copies SELECT slot, resource, digest, %s, 0 FROM "
                        f"(SELECT DISTINCT ON (digest) * FROM {BOOKKEEPING}.copies WHERE slot = %s AND resource = %s "
                        "AND position < %s ORDER BY digest, position DESC) latest WHERE n > 0 ON CONFLICT DO NOTHING",
                        (position, self.slot, resource, position))
        self._copies.update({key: 0 for key in self._copies if key[0] == resource})

    def prune(self, position: Position) -> None:
        """Forget the copy counts that counts stored up to ``position`` replace."""
        with self._db().cursor() as cur:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies c USING {BOOKKEEPING}.copies d WHERE d.slot = %s "
                        "AND d.position > %s AND d.position <= %s AND c.slot = d.slot AND c.resource = d.resource "
                        "AND c.digest = d.digest AND c.position < d.position", (self.slot, self._pruned, position))
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies WHERE slot = %s AND n = 0 AND position > %s "
                        "AND position <= %s", (self.slot, self._pruned, position))
        self._pruned = position

    def trim(self) -> None:
        """Forget the counts held in memory once they are many (all are stored: call after ``save``)."""
        if len(self._copies) > CACHED and not self._log:
            self._copies = {}

    def save(self) -> None:
        """Store the copy counts of what a read returns (before the node can store it)."""
        if self._log:
            with self._db().cursor() as cur:
                psycopg2.extras.execute_values(
                    cur, f"INSERT INTO {BOOKKEEPING}.copies VALUES %s ON CONFLICT DO NOTHING",
                    [(self.slot, *key, count) for key, count in self._log.items()])
            self._log = {}
