"""Streamed in-progress PostgreSQL transactions kept on disk (adapters/postgres/spill.py)."""

from __future__ import annotations

from adapters.postgres.spill import Spill

TOP, A, B, C = 100, 101, 102, 103


def test_messages_come_back_in_order_and_a_rolled_back_subtransaction_drops_its_own_and_later_ones():
    spill = Spill(TOP)
    try:
        spill.append(TOP, b"t1")
        spill.append(A, b"a1")  # SAVEPOINT a
        spill.append(B, b"b1")  # SAVEPOINT b (inside a)
        spill.append(B, b"b2")
        spill.abort(B)  # ROLLBACK TO b
        spill.append(C, b"c1")  # work after it, in a new subtransaction
        spill.abort(102_000)  # a subtransaction none of whose messages was streamed
        assert list(spill.replay()) == [b"t1", b"a1", b"c1"] and spill.messages == 3
        spill.abort(A)  # ROLLBACK TO a: a and everything after its first message
        spill.append(TOP, b"t2")
        assert list(spill.replay()) == [b"t1", b"t2"] and spill.messages == 2
    finally:
        spill.close()


def test_large_messages_are_kept_whole():
    spill = Spill(TOP)
    try:
        payloads = [bytes([i]) * (i * 10_000) for i in range(1, 30)]
        for payload in payloads:
            spill.append(TOP, payload)
        assert list(spill.replay()) == payloads
    finally:
        spill.close()
