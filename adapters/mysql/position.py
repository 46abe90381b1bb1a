"""Positions of MariaDB/MySQL capture: a binlog coordinate and an index packed into one integer.

A binlog *coordinate* is ``(file number << 32) | offset``: the number of a
binlog file (``binlog.000042`` is 42) and a byte offset in it.  Files are
numbered upwards (a server restart or ``FLUSH BINARY LOGS`` opens the next
one), so coordinates grow along the binlog, across rotations and restarts.

A position is ``coordinate << SHIFT | index``:

* A transaction whose first event (its GTID event, or ``BEGIN``) starts at
  coordinate ``S`` and whose commit event ends at ``E`` gives its changes
  positions ``pack(S) + 1, + 2, ...``; no other transaction starts inside
  ``[S, E)``, so a transaction may hold ``(E - S) << SHIFT`` changes (a row
  takes at least a byte in the binlog: more than a thousand positions per
  row).
* Snapshot rows take positions inside the span of a *marker*: a transaction
  the source writes into its bookkeeping table (64 KiB of padding) before
  each snapshot session, which makes no change itself.  So commits before
  the marker come before the session's rows, commits after it after them.

The node stores only the position.  Reading resumes at the coordinate it
packs (the start of a transaction, or of a marker) and skips what is not
after it.  File numbers must stay below 2**21 and offsets below 2**32
(MariaDB and MySQL rotate files at 1 GiB at most).
"""

from __future__ import annotations

from exchange.contracts.changes import Position
from exchange.contracts.errors import OperationFailed

SHIFT = 10
FILE_LIMIT = 1 << 21


class UnsupportedChange(OperationFailed):
    """The binlog holds something positions cannot encode (a file number or a transaction too large)."""


def coordinate(file: str, offset: int) -> int:
    """The coordinate of ``offset`` in binlog file ``file`` (e.g. ``binlog.000042``)."""
    number = file_number(file)
    if offset >= 1 << 32:
        raise UnsupportedChange(f"binlog offset {offset} in {file} is beyond what positions can encode (2**32)")
    return (number << 32) | offset


def file_number(file: str) -> int:
    """The number of binlog file ``file``."""
    suffix = file.rpartition(".")[2]
    if not suffix.isdigit():
        raise UnsupportedChange(f"binlog file name {file!r} does not end in a number")
    number = int(suffix)
    if number >= FILE_LIMIT:
        raise UnsupportedChange(f"binlog file {file} is numbered beyond what positions can encode (2**21)")
    return number


def file_name(prefix: str, number: int, digits: int = 6) -> str:
    """The binlog file called ``prefix`` with ``number`` (``binlog``, 42: ``binlog.000042``)."""
    return f"{prefix}.{number:0{digits}d}"


def split(coord: int) -> tuple[int, int]:
    """(file number, offset) of a coordinate."""
    return coord >> 32, coord & 0xFFFFFFFF


def pack(coord: int, index: int = 0) -> Position:
    """The position of the ``index``-th change at ``coord``."""
    return Position((coord << SHIFT) + index)


def unpack(position: int) -> int:
    """The coordinate a position belongs to (where reading resumes)."""
    return position >> SHIFT


def describe(coord: int) -> str:
    """A coordinate as people read it: ``file 42, offset 1234``."""
    number, offset = split(coord)
    return f"binlog file {number}, offset {offset}"
