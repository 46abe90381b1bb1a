"""Positions of PostgreSQL capture for transactions of any size (adapters/postgres/extents.py)."""

from __future__ import annotations

from dataclasses import replace

from adapters.postgres.extents import Extent, Extents
from adapters.postgres.position import SHIFT, pack

L = 0x16_B374_D848  # a commit LSN (WAL records start at multiples of 8)
HUGE = 600_000  # more changes than the positions of the 9 LSNs up to the next commits


def number(extents: Extents, commit_lsn: int, count: int, after: int = 0) -> list[int]:
    """Positions of a transaction's ``count`` changes, as the decoder numbers them, those after ``after``."""
    base = extents.base(commit_lsn)
    positions = [extents.position(commit_lsn, base, i) for i in range(1, count + 1)]
    if count:
        extents.close(commit_lsn, positions[-1])
    return [p for p in positions if p > after]


def restart(extents: Extents, after: int) -> Extents:
    """A source started again at the node's position ``after``: the extents recorded, those
    beginning after ``after`` deleted (as prepare.forget does)."""
    again = Extents("slot", None)
    again.restore([replace(e) for e in extents.recorded if e.first <= after])
    return again


def stream(extents: Extents) -> list[int]:
    """A huge transaction, then others committed right after it, then one far later."""
    return (number(extents, L, HUGE) + number(extents, L + 8, 3) + number(extents, L + 16, 70_000)
            + number(extents, L + 24, 1) + number(extents, L + 8192, 2))


def test_positions_of_a_huge_transaction_and_those_after_it_strictly_increase():
    positions = stream(Extents("slot", None))
    assert len(positions) == HUGE + 3 + 70_000 + 1 + 2
    assert all(a < b for a, b in zip(positions, positions[1:]))
    assert positions[:HUGE] == [pack(L) + i for i in range(1, HUGE + 1)]  # as before extents existed
    assert positions[HUGE] == pack(L) + HUGE + 2  # the next transaction starts after the huge one (its base between)
    assert positions[-2:] == [pack(L + 8192) + 1, pack(L + 8192) + 2]  # far enough: its own LSN again


def test_small_transactions_keep_the_positions_nodes_already_stored():
    extents = Extents("slot", None)
    assert number(extents, L, 5) == [pack(L) + i for i in range(1, 6)]
    assert number(extents, L + 8, 65_535)[-1] == pack(L + 8) + 65_535
    assert extents.recorded == []  # nothing reached past its commit LSN: nothing recorded


def test_a_resume_inside_or_after_a_huge_transaction_numbers_it_the_same():
    extents = Extents("slot", None)
    positions = stream(extents)
    for stored in (HUGE // 2, HUGE + 1, HUGE + 3 + 50_000, len(positions) - 1):
        after = positions[stored - 1]
        resumed = restart(extents, after)
        rest = (number(resumed, L, HUGE, after) + number(resumed, L + 8, 3, after)
                + number(resumed, L + 16, 70_000, after) + number(resumed, L + 24, 1, after)
                + number(resumed, L + 8192, 2, after))
        assert rest == positions[stored:]  # nothing stored twice, nothing skipped


def test_a_stored_position_inside_a_transaction_confirms_its_commit_lsn():
    extents = Extents("slot", None)
    positions = stream(extents)
    assert extents.safe_lsn(positions[HUGE - 1]) == L  # its last change: past its own LSN's positions
    assert positions[HUGE - 1] >> SHIFT > L + 8  # (which would pass the next commits)
    assert extents.safe_lsn(positions[HUGE + 1]) == L + 8  # a moved-up transaction: its commit LSN too
    assert extents.safe_lsn(positions[HUGE + 3 + 69_999]) == L + 16
    assert extents.safe_lsn(positions[HUGE + 3] - 1) == L + 16  # the position before a transaction's first
    assert extents.safe_lsn(positions[-1]) == L + 8192
    assert extents.safe_lsn(pack(L - 4000) + 7) == L - 4000  # a snapshot row in a marker's gap


def test_an_extent_recorded_before_a_crash_keeps_the_slot_before_its_commit():
    extents = Extents("slot", None)
    base = extents.base(L)
    stored = [extents.position(L, base, i) for i in range(1, 100_001)]  # the process dies before the commit
    crashed = restart(extents, stored[-1])
    assert crashed.recorded == [Extent(L, pack(L), None)]
    assert crashed.safe_lsn(stored[-1]) == L


def test_a_marker_gap_starts_after_the_transactions_before_it():
    extents = Extents("slot", None)
    positions = number(extents, L, HUGE)
    assert extents.floor(L + 64) == positions[-1]
    assert extents.floor(L) == 0


def test_forgetting_keeps_the_last_extent_later_bases_follow():
    extents = Extents("slot", None)
    first = number(extents, L, HUGE)
    second = number(extents, L + 8, HUGE)
    extents.forget(second[-1])
    assert [e.commit_lsn for e in extents.recorded] == [L + 8]
    assert number(extents, L + 16, 1) == [second[-1] + 2]
    assert first[-1] < second[0]
