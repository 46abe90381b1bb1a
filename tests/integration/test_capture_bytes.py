"""Store transactions bounded by bytes: one large source transaction spans several, and a
crash between them resumes with nothing lost and nothing stored twice."""

from __future__ import annotations

import psycopg2
import pytest

from adapters.postgres.source import PostgresSource
from exchange.contracts import changes as ch
from exchange.contracts.events import make_mapper
from exchange.store import EventStore
from node.capture import Capture, byte_parts, change_bytes
from node.positions import SOURCE_TRACKING

AGENCY = "91310000MB2F31887X"
ROWS, WIDTH = 60, 4_000


class Crash(Exception):
    """Stands for the process dying between two store transactions."""


class CrashingRecorder:
    """A real node recorder whose ``insert_events`` raises instead of storing the ``at``-th time."""

    def __init__(self, recorder, at: int):
        self.recorder, self.at, self.inserts = recorder, at, 0

    def insert_events(self, *args, **kwargs):
        self.inserts += 1
        if self.inserts == self.at:
            raise Crash()
        return self.recorder.insert_events(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.recorder, name)


def rows_stored(recorder) -> list:
    """The row events (not schema events) in the node's log, in order."""
    mapper = make_mapper()
    return [e for e in map(mapper.to_domain_event, recorder.read(0, 10_000)) if hasattr(e, "row")]


@pytest.fixture
def source_url(postgres):
    url = postgres.url(postgres.create_database("capture_bytes"))
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
    return url


def test_a_large_source_transaction_spans_store_transactions_and_resumes_exactly(source_url, tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'node.db'}")
    recorder = store.node_recorder(AGENCY)
    first = PostgresSource(source_url, ["docs"])
    first.prepare()
    with psycopg2.connect(source_url) as conn, conn.cursor() as cur:  # one source transaction
        cur.executemany("INSERT INTO docs VALUES (%s, %s)", [(i, f"{i:05d}" + "x" * WIDTH) for i in range(ROWS)])
    try:
        crashing = CrashingRecorder(recorder, at=3)
        capture = Capture(AGENCY, first, crashing, batch_size=1000, batch_bytes=10 * WIDTH)
        with pytest.raises(Crash):
            while capture.step():
                pass
        assert 0 < len(rows_stored(recorder)) < ROWS  # the crash came inside the source transaction
    finally:
        first.close()
    again = PostgresSource(source_url, ["docs"])  # a restarted node: a new source, the stored position
    try:
        capture = Capture(AGENCY, again, recorder, batch_size=1000, batch_bytes=10 * WIDTH)
        assert capture.position == recorder.position(SOURCE_TRACKING)
        while capture.step():
            pass
    finally:
        again.close()
    rows = rows_stored(recorder)
    assert [e.row["id"] for e in rows] == list(range(ROWS))  # each row once, in the transaction's order
    assert len({e.txid for e in rows}) == 1
    assert all(e.originator_version == 1 for e in rows)
    store.close()


def test_byte_parts_keep_whole_changes_within_the_bound():
    changes = [ch.Change(ch.Position(i + 1), "t", ch.INSERT, after={"id": i, "body": "y" * 1000}) for i in range(10)]
    parts = byte_parts(changes, 3 * change_bytes(changes[0]))
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    assert [c for p in parts for c in p] == changes
    huge = ch.Change(ch.Position(11), "t", ch.INSERT, after={"id": 11, "body": "z" * 100_000})
    assert byte_parts([huge, *changes[:1]], 2000) == [[huge], changes[:1]]
    assert byte_parts([], 10) == []
