"""Snapshot passes as a source's bookkeeping reports them (``exchange node resnapshot`` follows them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pass:
    """A table's latest snapshot pass as the source's bookkeeping has it."""

    number: int  # 0: the first snapshot
    rows: int  # rows read so far
    estimate: int  # the server's row count estimate of the table
    done: bool
