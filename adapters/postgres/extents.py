"""Positions of streamed transactions, however many changes they hold.

A transaction whose commit record starts at LSN ``L`` numbers its changes
``base + 1, base + 2, ...`` where ``base`` is ``pack(L)``, or one past the
last position of an earlier transaction when that reaches further.  A
transaction whose positions reach ``pack(L + 1)`` (65,536 changes or more,
or a base moved up by an earlier one) is an *extent*: its commit LSN and
base are recorded in the source database (``exchange_capture.extents``) as
soon as its positions leave ``L``, its last position when its commit is
read.  So:

* positions strictly increase in commit order: a later commit ``L' > L``
  starts at ``pack(L')`` or above, past every position of a transaction
  that is no extent, and past the last position of every extent before it;
* a transaction the slot sends again after a restart gets the same
  positions: its base depends only on extents before it, which stay
  recorded (rows of transactions after the node's position are deleted and
  made again);
* a transaction with fewer changes than its commit record's positions gets
  ``pack(L) + index``, as before extents existed, so positions nodes
  already stored keep their meaning and nothing needs migrating;
* acknowledging a position confirms its transaction's commit LSN (the
  extent's, else the LSN the position packs), so the slot sends a
  transaction again until all of it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from adapters.postgres.dialect import BOOKKEEPING
from adapters.postgres.position import SHIFT, UnsupportedChange, pack
from exchange.contracts.changes import Position

MAX_POSITION = (1 << 63) - 1


@dataclass
class Extent:
    commit_lsn: int
    first: int  # its base: the position before its first change (which acknowledging may name too)
    last: int | None  # its last position; None while its transaction is read


class Extents:
    """The extents of the slot ``slot``, in commit order; ``db`` returns the source's
    connection (None: kept in memory only)."""

    def __init__(self, slot: str, db: Callable[[], Any] | None):
        self.slot, self._db = slot, db
        self._extents: list[Extent] = []
        self._reading: int | None = None  # the commit LSN of the extent being read

    @property
    def recorded(self) -> list[Extent]:
        return list(self._extents)

    def load(self, cur) -> None:
        """Read the recorded extents (after the rows beyond the node's position were deleted)."""
        cur.execute(f"SELECT commit_lsn, position, last FROM {BOOKKEEPING}.extents WHERE slot = %s "
                    "ORDER BY commit_lsn", (self.slot,))
        self.restore([Extent(*row) for row in cur.fetchall()])

    def restore(self, extents: list[Extent]) -> None:
        """Start from ``extents``, as recorded."""
        self._extents = sorted(extents, key=lambda e: e.commit_lsn)
        self._reading = None

    def base(self, commit_lsn: int) -> Position:
        """The position before the first change of the transaction committed at ``commit_lsn``."""
        return Position(max(pack(commit_lsn), self.floor(commit_lsn) + 1))

    def floor(self, lsn: int) -> int:
        """The last position of the extents committed before ``lsn`` (0 without)."""
        ends = [e.last for e in self._extents if e.commit_lsn < lsn and e.last is not None]
        return max(ends, default=0)

    def position(self, commit_lsn: int, base: Position, index: int) -> Position:
        """The ``index``-th position of the transaction at ``commit_lsn`` numbered from ``base``,
        recording the transaction as an extent when that is the first to leave its LSN."""
        position = base + index
        if position > MAX_POSITION:
            raise UnsupportedChange(f"the transaction committed at LSN {commit_lsn} has more changes than "
                                    "positions can encode")
        if position >> SHIFT != commit_lsn and self._reading != commit_lsn:
            self._save(Extent(commit_lsn, base, None))
            self._reading = commit_lsn
        return Position(position)

    def close(self, commit_lsn: int, last: Position) -> None:
        """The transaction at ``commit_lsn`` ended at ``last`` (recorded when it is an extent)."""
        if self._reading == commit_lsn:
            extent = next(e for e in self._extents if e.commit_lsn == commit_lsn)
            self._save(Extent(commit_lsn, extent.first, last))
            self._reading = None

    def safe_lsn(self, position: Position) -> int:
        """The LSN the slot may confirm once ``position`` is stored: the commit LSN of its
        transaction, or the LSN it packs (inside the marker for snapshot rows)."""
        for e in self._extents:
            if e.first <= position and (e.last is None or position <= e.last):
                return e.commit_lsn
        return position >> SHIFT

    def forget(self, position: Position) -> None:
        """Forget the extents stored up to ``position`` but the last one (later bases follow it)."""
        done = [e for e in self._extents if e.last is not None and e.last <= position]
        if len(done) < 2:
            return
        keep = done[-1].commit_lsn
        self._extents = [e for e in self._extents if e not in done or e.commit_lsn == keep]
        if self._db is not None:
            with self._db().cursor() as cur:
                cur.execute(f"DELETE FROM {BOOKKEEPING}.extents WHERE slot = %s AND last <= %s AND commit_lsn < %s",
                            (self.slot, position, keep))

    def _save(self, extent: Extent) -> None:
        self._extents = sorted([e for e in self._extents if e.commit_lsn != extent.commit_lsn] + [extent],
                               key=lambda e: e.commit_lsn)
        if self._db is not None:
            with self._db().cursor() as cur:
                cur.execute(f"INSERT INTO {BOOKKEEPING}.extents (slot, commit_lsn, position, last) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (slot, commit_lsn) DO UPDATE "
                            "SET position = EXCLUDED.position, last = EXCLUDED.last",
                            (self.slot, extent.commit_lsn, extent.first, extent.last))
