"""Copy numbers of rows in tables without a key, as PostgreSQL and MariaDB/MySQL capture count them.

A table without a key (no primary key, no configured key) gets a synthetic
column ``_exchange_copy``: identical rows are copies 0, 1, 2 ... and the
key is every column plus the copy number.  A change stream cannot say which
of two identical rows an update or delete hit (and it does not matter), so
the source counts the copies of each row content, by content digest and
position: an insert adds the next copy, a delete removes the last one.
Where the counts are stored is the source's (``CopyCounts`` subclasses:
adapters/postgres/keyless.py, adapters/mysql/keyless.py); rows are tagged
with the position they were counted at.

Copy numbers are given when a read ends (``save``), not row by row: the
counts not held in memory are fetched with one query per table for the whole
read instead of one per source transaction, which made capture of a busy
keyless table (pgbench's history) wait on the source after every transaction.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from exchange.contracts.changes import Position
from exchange.contracts.events import canonical_json

COPY_COLUMN = "_exchange_copy"  # the copy number of rows of tables without a key
CACHED = 100_000  # copy counts kept in memory between reads (more are read again as needed)


def digest(row: dict[str, Any]) -> str:
    """The digest a row content is counted under."""
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


class CopyCounts:
    """Copy counts of keyless tables' row contents; subclasses store them (``_fetch``, ``_store``,
    ``_emptied``, ``_forget``)."""

    def __init__(self) -> None:
        self._copies: dict[tuple[str, str], int] = {}
        self._log: dict[tuple[str, str, int], int] = {}  # (resource, digest, position) -> copies, not stored yet
        # Images waiting for their copy number, in stream order: (resource, digest, delta, position, image).
        self._queue: list[tuple[str, str, int, Position, dict[str, Any]]] = []
        self._pruned = 0  # stored counts are pruned up to here

    def clear(self) -> None:
        """Forget what is held in memory (the stored counts are read again as needed)."""
        self._copies, self._log, self._queue = {}, {}, []

    def number(self, table: Any, image: dict | None, delta: int, position: Position,
               after: Position) -> dict | None:
        """``image`` with a copy number (``table.keyless`` tables), counting the copies of its
        content (+1 for a new row, -1 for a removed one); changes at or before ``after`` count nothing.

        The number is filled in by ``resolve`` (``save`` calls it): hand out no image before that."""
        if image is None or not table.keyless or position <= after:
            return image
        numbered = {**image, COPY_COLUMN: None}
        self._queue.append((table.resource, digest(image), delta, position, numbered))
        return numbered

    def resolve(self) -> None:
        """Give the images ``number`` returned their copy numbers, in stream order, fetching the
        counts not held in memory with one query per table."""
        if not self._queue:
            return
        wanted: dict[str, set[str]] = {}
        for resource, content, *_ in self._queue:
            if (resource, content) not in self._copies:
                wanted.setdefault(resource, set()).add(content)
        for resource, digests in wanted.items():
            found = dict(self._fetch(resource, sorted(digests)))
            self._copies.update(((resource, d), found.get(d) or 0) for d in digests)
        for resource, content, delta, position, image in self._queue:
            count = self._copies[(resource, content)]
            image[COPY_COLUMN] = count if delta > 0 else max(count - 1, 0)
            self._count(resource, content, position, max(count + delta, 0))
        self._queue = []

    def set(self, resource: str, content: str, position: Position, count: int) -> None:
        """``count`` copies of the content with digest ``content`` as of ``position``."""
        self.resolve()  # the images numbered before come first
        self._count(resource, content, position, count)

    def _count(self, resource: str, content: str, position: Position, count: int) -> None:
        self._copies[(resource, content)] = count
        self._log[(resource, content, position)] = count  # an update may count the same content twice

    def truncate(self, resource: str, position: Position) -> None:
        """The table was emptied at ``position``: no content has a copy left."""
        self.save()
        self._emptied(resource, position)
        self._copies.update({key: 0 for key in self._copies if key[0] == resource})

    def prune(self, position: Position) -> None:
        """Forget the copy counts that counts stored up to ``position`` replace."""
        self._forget(self._pruned, position)
        self._pruned = position

    def trim(self) -> None:
        """Forget the counts held in memory once they are many (all are stored: call after ``save``)."""
        if len(self._copies) > CACHED and not self._log and not self._queue:
            self._copies = {}

    def save(self) -> None:
        """Number the images of what a read returns and store the copy counts (before the node can
        store the read's changes)."""
        self.resolve()
        if self._log:
            self._store([(*key, count) for key, count in self._log.items()])
            self._log = {}

    # -- storage ------------------------------------------------------------------

    def _fetch(self, resource: str, digests: list[str]) -> Iterable[tuple[str, int | None]]:
        """(digest, latest stored count) of ``digests``."""
        raise NotImplementedError

    def _store(self, rows: list[tuple[str, str, int, int]]) -> None:
        """Store (resource, digest, position, count) rows, keeping rows stored before."""
        raise NotImplementedError

    def _emptied(self, resource: str, position: Position) -> None:
        """Store a count of 0 at ``position`` for every content of ``resource`` with copies before it."""
        raise NotImplementedError

    def _forget(self, low: int, high: int) -> None:
        """Delete the counts replaced by counts stored after ``low`` up to ``high``, and zero counts there."""
        raise NotImplementedError
