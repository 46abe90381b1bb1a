"""Positions of PostgreSQL capture: a WAL location (LSN) and an index packed into one integer.

All positions stay below 2**63, as the node stores them in a 64-bit integer:

* A streamed transaction whose commit record starts at LSN ``L`` and ends at
  ``E`` gives its changes positions ``(L << 16) + 1, + 2, ...``; no other
  commit record starts inside ``[L, E)``, so a transaction may hold
  ``(E - L) << 16`` changes (at least 2.6 million: a commit record is at
  least 40 bytes).  LSNs must stay below 2**47 (128 TiB of WAL).
* Snapshot rows get positions inside a *gap*: before each snapshot session
  the source writes a 4 KiB non-transactional logical message (the marker).
  No commit record starts inside the marker's WAL span ``[M, M_end)``, so
  ``(M_end - 4096) << 16 ...`` (268 million positions) belong to no
  transaction: the stream's commits before the marker come before the
  session's rows, commits after it come after them.  A session that fills
  its gap ends early and the next session goes on.

Acknowledging a position confirms the LSN it packs (``safe_lsn``): its
transaction's commit LSN, or an LSN inside the marker for snapshot rows.
"""

from __future__ import annotations

from exchange.contracts.changes import Position
from exchange.contracts.errors import OperationFailed

SHIFT = 16  # position = LSN << SHIFT + index
MAX_LSN = 1 << 47


class UnsupportedChange(OperationFailed):
    """The stream holds a change capture cannot represent (more changes or WAL than positions encode)."""


def lsn_text(lsn: int) -> str:
    """PostgreSQL's text form of an LSN, e.g. ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text_lsn: str) -> int:
    """The LSN written as ``16/B374D848``."""
    high, low = text_lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def check_lsn(lsn: int) -> None:
    """Refuse an LSN that positions cannot encode."""
    if lsn >= MAX_LSN:
        raise UnsupportedChange(f"LSN {lsn_text(lsn)} is beyond what positions can encode (2**47)")


def pack(lsn: int, index: int = 0) -> Position:
    """The position of the ``index``-th change at ``lsn``."""
    return Position((lsn << SHIFT) + index)


class Overflows:
    """Transactions with more changes than their commit LSN's positions hold
    (65,536): their later positions pack LSNs past the commit, so they are
    remembered until acknowledged, to confirm the commit LSN instead."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int, int]] = []  # (first, last position, commit LSN)

    def add(self, base: Position, count: int, commit_lsn: int) -> None:
        """Remember the transaction whose ``count`` changes follow ``base`` (its commit LSN's
        first position) when they spill past that LSN's positions."""
        if count >> SHIFT:
            self._spans.append((base + 1, base + count, commit_lsn))

    def safe_lsn(self, position: Position) -> int:
        """An LSN the slot may confirm once ``position`` is stored: the commit LSN
        of a streamed change (the transaction is sent again after a restart and
        skipped by position), an LSN inside the marker of a snapshot row."""
        for first, last, commit_lsn in self._spans:
            if first <= position <= last:
                return commit_lsn
        return position >> SHIFT

    def forget(self, position: Position) -> None:
        """Forget the transactions stored up to ``position``."""
        self._spans = [span for span in self._spans if span[1] > position]

    def clear(self) -> None:
        self._spans = []
