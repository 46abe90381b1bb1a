"""Transactions larger than a read, a store batch and one commit LSN's positions, on a real cluster:
read in pieces, numbered past their commit LSN, resumed exactly; rolled-back work never captured."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.extensions
import pytest

from adapters import keyless
from adapters.postgres.dialect import COPY_COLUMN
from adapters.postgres.position import SHIFT, lsn_int, pack
from adapters.postgres.source import PostgresSource
from exchange.contracts import changes as ch
from exchange.contracts.events import make_mapper
from exchange.store import EventStore
from node.capture import Capture

AGENCY = "91310000MB2F31887X"
ROWS = 70_000  # more changes than the 65,536 positions of one LSN


@pytest.fixture
def db(postgres, request):
    """A fresh database with table ``items`` whose walsenders spill transactions beyond 64 kB."""
    name = postgres.create_database(request.node.name[5:45])
    postgres.execute(f"ALTER DATABASE {name} SET logical_decoding_work_mem = '64kB'")
    url = postgres.url(name)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id integer PRIMARY KEY, n integer)")
    return url


def run(url: str, *statements: str) -> None:
    """``statements`` in one transaction."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def confirmed(url: str, slot: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        return lsn_int(cur.fetchone()[0])


def streamed(url: str, slot: str, at_least: int) -> int:
    """How many transactions the server streamed to the slot before they ended (waiting a little
    for the statistics to reach ``at_least``)."""
    deadline = time.monotonic() + 10
    while True:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = %s", (slot,))
            found = cur.fetchone()
        count = found[0] if found else 0
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def read_until(source: PostgresSource, after: int, count: int, limit: int = 5000,
               timeout: float = 120.0) -> list[ch.Change]:
    """Changes after ``after``, read ``limit`` at a time, until ``count`` of them (or none came for
    ``timeout`` seconds: a busy server may send the transaction late)."""
    found: list[ch.Change] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        batch = source.read(after, limit)
        if batch:
            found += batch
            after = batch[-1].position
            deadline = time.monotonic() + timeout
    return found


def test_a_transaction_beyond_its_commit_lsn_positions_is_read_in_pieces_and_resumes_exactly(db):
    first = PostgresSource(db, ["items"])
    try:
        first.prepare()
        start = read_until(first, 0, 1)[-1].position  # the table's schema
        run(db, f"INSERT INTO items SELECT g, 0 FROM generate_series(1, {ROWS}) g")
        run(db, "INSERT INTO items VALUES (0, 1)")
        stored = read_until(first, start, 66_000)
        assert all(len(c.txid) and c.txid == stored[0].txid for c in stored)  # pieces of one transaction
        commit_lsn = stored[0].position >> SHIFT
        assert stored[-1].position >> SHIFT > commit_lsn  # past the commit LSN's positions
        first.acknowledge(stored[-1].position)  # the node stored them (and the hub holds them)
        assert confirmed(db, first.slot) <= commit_lsn  # the slot sends the transaction again
    finally:
        first.close()  # the node dies inside the transaction
    again = PostgresSource(db, ["items"])
    try:
        rest = read_until(again, stored[-1].position, ROWS + 1 - len(stored))
        again.acknowledge(rest[-1].position)
        assert confirmed(db, again.slot) > commit_lsn  # all of it stored: the slot moves on
    finally:
        again.close()
    changes = stored + rest
    assert [c.after["id"] for c in changes] == [*range(1, ROWS + 1), 0]  # each row once, in order
    assert all(a.position < b.position for a, b in zip(changes, changes[1:]))
    assert [c.position for c in changes[:ROWS]] == [pack(commit_lsn, i) for i in range(1, ROWS + 1)]  # as before
    assert {c.txid for c in changes[:ROWS]} == {stored[0].txid} and changes[-1].txid != stored[0].txid


def stored_rows(store: EventStore) -> list[int]:
    mapper = make_mapper()
    recorder = store.node_recorder(AGENCY)
    return [e.row["id"] for e in map(mapper.to_domain_event, recorder.read(0, 100_000)) if hasattr(e, "row")]


def test_rolled_back_large_transactions_and_savepoints_make_no_events(db, tmp_path):
    source = PostgresSource(db, ["items"])
    store = EventStore(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        capture = Capture(AGENCY, source, store.node_recorder(AGENCY), batch_size=500, batch_bytes=64 * 1024)
        while capture.step():
            pass
        conn = psycopg2.connect(db)
        with conn.cursor() as cur:  # spilled by the server (64 kB), then rolled back
            cur.execute("INSERT INTO items SELECT g, 0 FROM generate_series(1, 20000) g")
        conn.rollback()
        conn.close()
        run(db, "INSERT INTO items VALUES (1, 1)", "SAVEPOINT s",
            "INSERT INTO items SELECT g, 0 FROM generate_series(100, 20000) g", "ROLLBACK TO SAVEPOINT s",
            "INSERT INTO items VALUES (2, 2)")
        while capture.step():
            pass
        assert stored_rows(store) == [1, 2]
        assert streamed(db, source.slot, 2) >= 2  # both were streamed to the node while they ran
    finally:
        source.close()
        store.close()


def test_copies_of_a_keyless_table_are_counted_across_pieces_with_few_counts_in_memory(db, monkeypatch):
    monkeypatch.setattr(keyless, "CACHED", 5)  # counts are read again from the database between reads
    run(db, "CREATE TABLE visits (person int, note text)", "ALTER TABLE visits REPLICA IDENTITY FULL")
    source = PostgresSource(db, ["visits"])
    try:
        source.prepare()
        after = read_until(source, 0, 1)[-1].position
        run(db, "INSERT INTO visits SELECT g % 40, 'x' FROM generate_series(1, 400) g")  # 10 copies of 40 rows
        run(db, "DELETE FROM visits WHERE person < 20")
        changes = read_until(source, after, 400 + 200, limit=30)
    finally:
        source.close()
    inserted = [(c.after["person"], c.after[COPY_COLUMN]) for c in changes if c.op == ch.INSERT]
    assert sorted(inserted) == sorted((p, copy) for p in range(40) for copy in range(10))
    deleted = [(c.before["person"], c.before[COPY_COLUMN]) for c in changes if c.op == ch.DELETE]
    assert sorted(deleted) == sorted((p, copy) for p in range(20) for copy in range(10))


def test_a_transaction_streamed_while_it_runs_is_captured_whole_after_the_node_restarts(db):
    first = PostgresSource(db, ["items"])
    writer = psycopg2.connect(db)
    try:
        first.prepare()
        start = read_until(first, 0, 1)[-1].position
        first.acknowledge(start)  # all stored and at the hub: quiet reads let the slot follow the server
        with writer.cursor() as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            began = lsn_int(cur.fetchone()[0])
            cur.execute("INSERT INTO items SELECT g, 0 FROM generate_series(1, 20000) g")
        deadline = time.monotonic() + 30
        while streamed(db, first.slot, 1) < 1:  # the server streams it to the node while it runs
            assert not first.read(start, 1000) and time.monotonic() < deadline
        assert not first.read(start, 1000)  # nothing committed yet
        assert confirmed(db, first.slot) > began  # the slot followed the server past its start
        first.close()  # the node stops with the transaction streamed in part
        writer.commit()
        again = PostgresSource(db, ["items"])
        try:
            changes = read_until(again, start, 20_000)
        finally:
            again.close()
    finally:
        writer.close()
        first.close()
    assert [c.after["id"] for c in changes] == list(range(1, 20_001))
    assert len({c.txid for c in changes}) == 1


@pytest.mark.parametrize("work_mem", ["64MB", "64kB"], ids=["sent-at-commit", "streamed-while-it-runs"])
def test_a_transaction_read_more_slowly_than_the_server_waits_for_an_answer_is_read_once(db, postgres, work_mem):
    name = psycopg2.extensions.parse_dsn(db)["dbname"]
    postgres.execute(f"ALTER DATABASE {name} SET logical_decoding_work_mem = '{work_mem}'")
    postgres.execute(f"ALTER DATABASE {name} SET wal_sender_timeout = '3s'")
    source = PostgresSource(db, ["items"])
    try:
        source.prepare()
        after = read_until(source, 0, 1)[-1].position
        run(db, "INSERT INTO items SELECT g, 0 FROM generate_series(1, 5000) g")
        changes: list[ch.Change] = []
        while batch := source.read(after, 500):  # a node storing slowly: 5 s for the transaction
            changes += batch
            after = batch[-1].position
            time.sleep(0.5)
        run(db, "INSERT INTO items VALUES (0, 0)")
        changes += read_until(source, after, 1)  # the stream still runs
    finally:
        source.close()
    assert [c.after["id"] for c in changes] == [*range(1, 5001), 0]
