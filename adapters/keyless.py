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
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from exchange.contracts.changes import Position
from exchange.contracts.events import canonical_json

COPY_COLUMN = "_exchange_copy"  # the copy number of rows of tables without a key


def digest(row: dict[str, Any]) -> str:
    """The digest a row content is counted under."""
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


class CopyCounts:
    """Copy counts of keyless tables' row contents; subclasses store them (``_fetch``, ``_store``,
    ``_emptied``, ``_forget``)."""

    def __init__(self) -> None:
        self._copies: dict[tuple[str, str], int] = {}
        self._log: dict[tuple[str, str, int], int] = {}  # (resource, digest, position) -> copies, not stored yet
        self._pruned = 0  # stored counts are pruned up to here

    def clear(self) -> None:
        """Forget what is held in memory (the stored counts are read again as needed)."""
        self._copies, self._log = {}, {}

    def number(self, table: Any, image: dict | None, delta: int, position: Position,
               after: Position) -> dict | None:
        """``image`` with its copy number (``table.keyless`` tables), counting the copies of its
        content (+1 for a new row, -1 for a removed one); changes at or before ``after`` count nothing."""
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
        for resource, digests in wanted.items():
            found = dict(self._fetch(resource, sorted(digests)))
            self._copies.update(((resource, d), found.get(d) or 0) for d in digests)

    def set(self, resource: str, content: str, position: Position, count: int) -> None:
        """``count`` copies of the content with digest ``content`` as of ``position``."""
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

    def save(self) -> None:
        """Store the copy counts of what a read returns (before the node can store it)."""
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
