"""Positions of MariaDB/MySQL capture across a change of server: the origin's base (adapters/mysql/position.py)."""

from __future__ import annotations

import pytest

from adapters.mysql.position import SHIFT, Frame, UnsupportedChange, coordinate, rebase

OLD = [(coordinate("binlog.000009", offset), 3) for offset in (400, 900, 5000)]  # (start, changes)
NEW = [(coordinate("binlog.000002", offset), 2) for offset in (300, 700, 1200)]  # smaller coordinates
NEW_ORIGIN = coordinate("binlog.000002", 256)


def read(frame: Frame, origin: int, transactions: list[tuple[int, int]], after: int) -> list[int]:
    """The positions a source reading ``transactions`` from ``origin`` hands out after ``after``."""
    start = max(frame.unpack(after), origin)
    return [p for begin, count in transactions if begin >= start
            for p in (frame.pack(begin, i) for i in range(1, count + 1)) if p > after]


def test_a_frame_packs_and_unpacks_with_its_base():
    frame = Frame(1000)
    coord = coordinate("binlog.000003", 77)
    assert frame.pack(coord, 4) == ((coord + 1000) << SHIFT) + 4 and frame.unpack(frame.pack(coord, 4)) == coord
    assert Frame().pack(coord) == coord << SHIFT
    assert Frame(None).unpack(123456) < 0  # before every coordinate while the base is unset
    with pytest.raises(RuntimeError, match="base"):
        Frame(None).pack(coord)
    with pytest.raises(UnsupportedChange, match="2\\*\\*53"):
        Frame(1 << 53).pack(coord)


def test_after_a_switch_positions_are_above_every_old_one():
    old = read(Frame(), 0, OLD, 0)
    base = rebase(old[-1], NEW_ORIGIN)
    new = read(Frame(base), NEW_ORIGIN, NEW, old[-1])
    assert base > 0 and len(new) == 6 and old + new == sorted(set(old + new))
    assert Frame(base).unpack(old[-1]) < NEW_ORIGIN  # an old position resumes at the new origin
    assert rebase(Frame(base).pack(NEW_ORIGIN), NEW_ORIGIN) == base + 1  # never below what was handed out
    assert rebase(0, NEW_ORIGIN) == 0 and rebase(old[-1], old[-1] >> SHIFT) == 1


@pytest.mark.parametrize("kill", range(-1, 7))
def test_a_kill_between_any_two_steps_of_the_recovery_neither_duplicates_nor_loses(kill):
    """Steps: the repair records the new origin (base unset); the first read computes the base (-1: killed
    before it is kept) and reads; the node stores one change at a time (``kill``: killed before storing
    that batch).  A kill forgets what the node had not stored and a base not kept."""
    stored = read(Frame(), 0, OLD, 0)
    kept_base: int | None = None  # the bookkeeping's base, NULL after the repair
    steps = 0
    while True:
        after = stored[-1]
        frame = Frame(kept_base)
        if frame.base is None:
            frame.base = rebase(after, NEW_ORIGIN)
            if kill == -1 and steps == 0:
                steps = 1  # killed before the base was kept
                continue
            kept_base = frame.base
        batch = read(frame, NEW_ORIGIN, NEW, after)
        if not batch:
            break
        steps += 1
        if steps == kill:
            continue  # killed before storing: a new source reads after the same position
        stored.append(batch[0])
    expected = read(Frame(rebase(read(Frame(), 0, OLD, 0)[-1], NEW_ORIGIN)), NEW_ORIGIN, NEW, 0)
    assert stored == sorted(set(stored)) and stored[len(read(Frame(), 0, OLD, 0)):] == expected
