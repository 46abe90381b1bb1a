"""Positions of PostgreSQL capture: a WAL location (LSN) and an index packed into one integer.

All positions stay below 2**63, as the node stores them in a 64-bit integer:

* A streamed transaction whose commit record starts at LSN ``L`` gives its
  changes positions ``(L << 16) + 1, + 2, ...``; one with more changes than
  that LSN's 65,536 positions goes on past them, and later transactions
  start after its last position (extents.py).  LSNs must stay below 2**47
  (128 TiB of WAL).
* Snapshot rows get positions inside a *gap*: before each snapshot session
  the source writes a 4 KiB non-transactional logical message (the marker).
  No commit record starts inside the marker's WAL span ``[M, M_end)``, so
  ``(M_end - 4096) << 16 ...`` (268 million positions) belong to no
  transaction: the stream's commits before the marker come before the
  session's rows, commits after it come after them.  A session that fills
  its gap ends early and the next session goes on.  A gap starts after the
  last position of the transactions before the marker (extents.py).

Acknowledging a position confirms its transaction's commit LSN, or an LSN
inside the marker for snapshot rows (``Extents.safe_lsn``).
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
