"""PostgreSQL capture source, apply target and reader, on a real private cluster."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from datetime import time as clock
from decimal import Decimal

import psycopg2
import psycopg2.extras
import pytest

from adapters.postgres import stream
from adapters.postgres.dialect import COPY_COLUMN
from adapters.postgres.position import lsn_int
from adapters.postgres.reader import PostgresReader
from adapters.postgres.source import PostgresSource
from adapters.postgres.target import PostgresTarget
from adapters.postgres.types import to_text
from exchange.contracts import changes as ch
from exchange.contracts.changes import RowOp, SourceNotReady
from exchange.contracts.events import RecordCreated
from exchange.store import EventStore
from exchange.tools.replay import replay
from exchange.tools.verify import verify
from node.capture import Capture

AGENCY = "91310000MB2F31887X"
TYPES = """CREATE TABLE kinds (
    id integer PRIMARY KEY, amount numeric(12,2), ratio double precision, flag boolean, name text,
    code varchar(8), born date, at_local timestamp, at timestamptz, opens time, lasts interval,
    photo bytea, doc json, attrs jsonb, ref uuid, tags text[], grid integer[], big bigint)"""
ROW = {
    "id": 1, "amount": Decimal("1234567890.12"), "ratio": 0.1 + 0.2, "flag": True, "name": "张三 \"quoted\" \\",
    "code": "京A", "born": date(1990, 2, 28), "at_local": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "at": datetime(2024, 1, 2, 3, 4, 5, 654321, tzinfo=timezone.utc), "opens": clock(8, 30),
    "lasts": "P1Y2M3DT4H5M6.5S", "photo": b"\x00\xff\x10", "doc": '{"b": 1,  "a": [1, 2]}',
    "attrs": '{"a": "北京", "n": 1.50}', "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "tags": ["a b", None, "c,\"d\"", "e\\f", "NULL"], "grid": [[1, 2], [3, 4]], "big": 9007199254740993,
}


class App:
    """The agency application's own autocommit connection to its database."""

    def __init__(self, cluster, name: str):
        self.name = name
        self.url = cluster.url(name)
        self.conn = psycopg2.connect(self.url)
        self.conn.autocommit = True

    def run(self, sql: str, params=None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def rows(self, table: str) -> dict:
        reader = PostgresReader(self.url)
        try:
            key = reader.table_schema(table).primary_key
            return {tuple(r[k] for k in key): r for r in reader.rows(table)}
        finally:
            reader.close()


@pytest.fixture
def app(postgres, request):
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    postgres.create_database(name)
    application = App(postgres, name)
    yield application
    application.conn.close()


@pytest.fixture
def sources(app):
    """``sources(tables, url=app.url, **options)``: a prepared PostgresSource, closed after the test."""
    opened = []

    def make(tables=("people",), url=None, **options) -> PostgresSource:
        source = PostgresSource(url or app.url, list(tables), **options)
        opened.append(source)
        source.prepare()
        return source

    yield make
    for source in opened:
        source.close()


def people(app, rows: int = 0) -> None:
    app.run("CREATE TABLE people (id integer PRIMARY KEY, name text, score numeric)")
    app.run("INSERT INTO people SELECT g, 'p' || g, g FROM generate_series(1, %s) g", (rows,))


_reached: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def drain(source: PostgresSource, after: int | None = None, limit: int = 1000) -> list[ch.Change]:
    """Everything committed so far, read from ``after`` or else, like the node,
    from the last position read from ``source``.  (A read returns only once it
    has caught up with what the server has written.)"""
    after = _reached.get(source, 0) if after is None else after
    found = []
    while batch := source.read(after, limit):
        found += batch
        after = batch[-1].position
    _reached[source] = after
    return found


def fold(changes: list[ch.Change], key=("id",)) -> dict:
    """What the node holds after the changes: updates carry the columns that arrived."""
    held: dict = {}
    for c in changes:
        if c.op == ch.SCHEMA:
            continue
        if c.before is not None:
            old = tuple(c.before[k] for k in key)
            if c.op == ch.DELETE or old != tuple(c.after[k] for k in key):
                held.pop(old, None)
        if c.after is not None:
            new = tuple(c.after[k] for k in key)
            held[new] = {**held.get(new, {}), **c.after}
    return held


def params(row: dict) -> list:
    """psycopg2 parameters for a row (input text where psycopg2 would guess the type)."""
    return [to_text(v) if isinstance(v, (list, uuid.UUID, bytes)) else v for v in row.values()]


def positions_increase(changes: list[ch.Change]) -> bool:
    return all(a.position < b.position for a, b in zip(changes, changes[1:]))


# -- prepare ------------------------------------------------------------------

def test_prepare_refuses_a_missing_table_and_lists_the_tables(app, sources):
    people(app)
    app.run("CREATE SCHEMA reg; CREATE TABLE reg.cases (id int PRIMARY KEY)")
    with pytest.raises(SourceNotReady, match=r"'orders' does not exist.*tables are: people, reg\.cases"):
        sources(["people", "orders"])


def test_prepare_refuses_a_table_without_key_and_says_how_to_fix(app, sources):
    app.run("CREATE TABLE visits (person integer, day date)")
    with pytest.raises(SourceNotReady, match=r"'visits' has no primary key.*PRIMARY KEY.*REPLICA IDENTITY FULL.*"
                                             r"REPLICA IDENTITY USING INDEX.*keys"):
        sources(["visits"])
    with pytest.raises(SourceNotReady, match=r"not its replica identity.*REPLICA IDENTITY FULL"):
        sources(["visits"], keys={"visits": ["person", "day"]})


def test_a_configured_key_covered_by_the_replica_identity_is_used(app, sources):
    app.run("CREATE TABLE visits (person integer NOT NULL, day date NOT NULL, note text)")
    app.run("CREATE UNIQUE INDEX visits_key ON visits (person, day)")
    app.run("ALTER TABLE visits REPLICA IDENTITY USING INDEX visits_key")
    app.run("INSERT INTO visits VALUES (1, '2024-01-02', 'a')")
    source = sources(["visits"], keys={"visits": ["person", "day"]})
    assert source.schemas()["visits"].primary_key == ("person", "day")
    snapshot = drain(source)
    app.run("UPDATE visits SET note = 'b'")
    app.run("UPDATE visits SET day = '2024-01-03'")
    changes = drain(source)
    assert [c.op for c in snapshot + changes] == [ch.SCHEMA, ch.SNAPSHOT, ch.UPDATE, ch.UPDATE]
    assert changes[0].before == {"person": 1, "day": date(2024, 1, 2)}
    assert changes[1].before == {"person": 1, "day": date(2024, 1, 2)}
    assert changes[1].after == {"person": 1, "day": date(2024, 1, 3), "note": "b"}


def test_prepare_refuses_a_role_without_replication(app, postgres, sources):
    people(app)
    app.run("DROP ROLE IF EXISTS clerk; CREATE ROLE clerk LOGIN")
    with pytest.raises(SourceNotReady, match=r"role 'clerk' may not use replication: run ALTER ROLE \"clerk\" "
                                             r"REPLICATION"):
        sources(["people"], url=postgres.url(app.name, user="clerk"))


def test_prepare_refuses_to_change_a_publication_it_does_not_own(app, postgres, sources):
    people(app)
    app.run("CREATE TABLE cases (id int PRIMARY KEY)")
    app.run("DROP ROLE IF EXISTS capturer; CREATE ROLE capturer LOGIN REPLICATION")
    app.run(f'GRANT CREATE ON DATABASE "{app.name}" TO capturer')
    app.run(f"CREATE PUBLICATION exchange_{app.name} FOR TABLE people")
    with pytest.raises(SourceNotReady, match=rf'does not publish "public"."cases".*have its owner run '
                                             rf'ALTER PUBLICATION "exchange_{app.name}" ADD TABLE "public"."cases"'):
        sources(["people", "cases"], url=postgres.url(app.name, user="capturer"))


@pytest.fixture(scope="module")
def replica_cluster(postgres):
    """A second cluster with wal_level = replica (a copy of the initdb: cheap)."""
    cluster = postgres.copy(wal_level="replica")
    yield cluster
    cluster.stop()


def test_prepare_refuses_when_wal_level_is_not_logical(replica_cluster, sources):
    replica_cluster.execute("CREATE TABLE people (id int PRIMARY KEY)")
    with pytest.raises(SourceNotReady, match="set wal_level = logical in postgresql.conf and restart PostgreSQL"):
        sources(["people"], url=replica_cluster.url())


def test_prepare_is_idempotent_and_adds_tables_to_its_publication(app, sources):
    people(app, 2)
    app.run("CREATE TABLE cases (id int PRIMARY KEY)")
    first = sources(["people"])
    first.prepare()
    second = sources(["people", "cases"])
    second.prepare()
    assert app.run("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(1,)]
    assert app.run("SELECT tablename FROM pg_publication_tables ORDER BY 1") == [("cases",), ("people",)]
    assert [(c.op, c.table) for c in drain(second)] == [
        (ch.SCHEMA, "cases"), (ch.SCHEMA, "people"), (ch.SNAPSHOT, "people"), (ch.SNAPSHOT, "people")]


# -- row changes --------------------------------------------------------------

def test_row_changes_arrive_with_exact_values(app, sources):
    app.run(TYPES)
    source = sources(["kinds"])
    assert [c.op for c in drain(source)] == [ch.SCHEMA]
    columns = ", ".join(ROW)
    app.run(f"INSERT INTO kinds ({columns}) VALUES ({', '.join(['%s'] * len(ROW))})", params(ROW))
    app.run("INSERT INTO kinds (id) VALUES (2)")
    app.run("UPDATE kinds SET amount = -0.05, name = '李四', grid = '{}' WHERE id = 1")
    app.run("DELETE FROM kinds WHERE id = 2")

    insert, nulls, update, delete = changes = drain(source)

    assert [c.op for c in changes] == [ch.INSERT, ch.INSERT, ch.UPDATE, ch.DELETE]
    assert insert.after == ROW and insert.before is None
    assert all(type(insert.after[k]) is type(v) for k, v in ROW.items())
    assert nulls.after == {k: (2 if k == "id" else None) for k in ROW}
    assert update.before == {"id": 1}
    assert update.after == {**ROW, "amount": Decimal("-0.05"), "name": "李四", "grid": []}
    assert (delete.before, delete.after) == ({"id": 2}, None)
    assert positions_increase(changes)
    assert app.rows("kinds")[(1,)] == update.after  # the reader gives the very same values


def test_transactions_arrive_whole_in_commit_order_with_xid_and_time(app, postgres, sources):
    people(app)
    source = sources()
    drain(source)
    early = postgres.connect(app.name, autocommit=False)
    with early.cursor() as cur:
        cur.execute("INSERT INTO people (id, name) VALUES (1, 'first begun')")
        cur.execute("SELECT txid_current()")
        early_xid = cur.fetchone()[0]
    late = postgres.connect(app.name, autocommit=False)
    with late.cursor() as cur:
        cur.execute("INSERT INTO people (id, name) VALUES (2, 'first committed'), (3, 'x')")
        cur.execute("SELECT txid_current()")
        late_xid = cur.fetchone()[0]
    late.commit()
    late.close()
    before = datetime.now(timezone.utc)
    with early.cursor() as cur:
        cur.execute("INSERT INTO people (id, name) VALUES (4, 'second')")
    early.commit()
    early.close()

    changes = drain(source)

    assert [c.after["id"] for c in changes] == [2, 3, 1, 4]
    assert [c.txid for c in changes] == [str(late_xid)] * 2 + [str(early_xid)] * 2
    assert changes[0].commit_time == changes[1].commit_time < before <= changes[2].commit_time
    assert all(c.commit_time.tzinfo == timezone.utc for c in changes)
    assert positions_increase(changes)


def test_rolled_back_changes_are_not_captured(app, sources):
    people(app)
    source = sources()
    drain(source)
    app.run("BEGIN; INSERT INTO people (id, name) VALUES (1, 'gone'); ROLLBACK")
    app.run("INSERT INTO people (id, name) VALUES (2, 'kept')")
    assert [(c.op, c.after["id"]) for c in drain(source)] == [(ch.INSERT, 2)]


def test_a_large_transaction_is_split_only_beyond_the_limit_and_resumes(app, sources):
    people(app)
    source = sources()
    after = drain(source)[-1].position
    app.run("INSERT INTO people (id) VALUES (1)")
    app.run("INSERT INTO people (id) SELECT g FROM generate_series(10, 34) g")
    app.run("INSERT INTO people (id) VALUES (2)")
    first = source.read(after, 10)
    second = source.read(first[-1].position, 10)
    source.close()  # the node stored ``second`` and stopped before acknowledging it

    rest = drain(sources(), second[-1].position)

    assert [len(first), len(second)] == [1, 10]  # the big transaction does not fit after the first one
    ids = [c.after["id"] for c in first + second + rest]
    assert ids == [1, *range(10, 35), 2]


# -- resuming and acknowledging -----------------------------------------------

def test_a_new_source_resumes_after_the_stored_position(app, sources):
    people(app)
    source = sources()
    after = drain(source)[-1].position
    for i in range(1, 6):
        app.run("INSERT INTO people (id, name) VALUES (%s, 'a')", (i,))
    stored = source.read(after, 3)  # three transactions of one row each
    source.acknowledge(stored[-1].position)
    unstored = source.read(stored[-1].position, 100)
    source.close()  # crash: ``unstored`` never reached the node's store
    app.run("UPDATE people SET name = 'b' WHERE id = 1")

    resumed = drain(sources(), stored[-1].position)

    assert [c.after["id"] for c in stored] == [1, 2, 3]
    assert [c.position for c in resumed[:2]] == [c.position for c in unstored]
    assert [(c.op, c.after["id"]) for c in resumed] == [(ch.INSERT, 4), (ch.INSERT, 5), (ch.UPDATE, 1)]


def test_acknowledge_lets_the_slot_advance_and_a_quiet_stream_follows_the_server(app, sources):
    people(app)
    source = sources()
    drain(source)
    app.run("INSERT INTO people (id) VALUES (1)")
    [change] = drain(source)
    source.acknowledge(change.position)
    wait_for_slot(app, source, change.position >> 16)  # the commit LSN: the transaction is stored
    app.run("CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1)")  # WAL of no interest
    server = lsn_int(app.run("SELECT pg_current_wal_flush_lsn()::text")[0][0])
    assert drain(source) == [] and source.pending(change.position) == 0
    wait_for_slot(app, source, server)  # the heartbeat confirms what was read
    assert 0 <= source.slot_retained_wal_bytes() < 16 * 1024 * 1024


def hold_slot(source: PostgresSource):
    """A replication connection streaming ``source``'s slot, as another process would (once the
    server process of ``source``'s closed connection has let it go)."""
    deadline = time.monotonic() + 60
    with psycopg2.connect(source.url) as conn, conn.cursor() as cur:
        while True:
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (source.slot,))
            if not cur.fetchone()[0]:
                break
            assert time.monotonic() < deadline, "the closed source's connection still holds the slot"
            conn.rollback()
            time.sleep(0.05)
    holder = psycopg2.connect(source.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    holder.cursor().start_replication(slot_name=source.slot, decode=False, options={
        "proto_version": "2", "publication_names": source.publication})
    return holder


def test_a_slot_still_held_by_an_ended_connection_is_waited_for(app, sources, monkeypatch):
    people(app)
    source = sources()
    after = drain(source)[-1].position
    source.close()  # a node restarting: the server process of its old connection may still hold the slot
    app.run("INSERT INTO people (id) VALUES (1)")
    holder = hold_slot(source)
    retrying, connect, attempts = threading.Event(), stream.connect, []

    def attempt(*args, **kwargs):
        attempts.append(1)
        if len(attempts) > 1:
            retrying.set()
        return connect(*args, **kwargs)

    monkeypatch.setattr(stream, "connect", attempt)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(drain, source, after)
        assert retrying.wait(60), reading.exception(0) if reading.done() else "the source never retried"
        holder.close()
        assert [(c.op, c.after["id"]) for c in reading.result(60)] == [(ch.INSERT, 1)]


def test_a_slot_held_by_another_process_is_refused_naming_the_slot(app, sources, monkeypatch):
    people(app)
    source = sources()
    after = drain(source)[-1].position
    source.close()
    holder = hold_slot(source)
    monkeypatch.setattr(stream, "SLOT_RELEASE_WAIT", 0.5)
    try:
        with pytest.raises(SourceNotReady, match=rf"slot '{source.slot}' stays in use .*another node"):
            source.read(after, 10)
    finally:
        holder.close()


def wait_for_slot(app, source, lsn: int) -> None:
    """Wait until the slot's confirmed position reaches ``lsn``."""
    query = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s"
    deadline = time.monotonic() + 10
    while lsn_int(app.run(query, (source.slot,))[0][0]) < lsn:
        assert time.monotonic() < deadline, "the slot did not advance"
        time.sleep(0.02)


# -- snapshot -----------------------------------------------------------------

def test_existing_rows_arrive_in_chunks_without_gap_or_duplicate_despite_writes(app, sources):
    people(app, 60)
    source = sources(snapshot_chunk=10)
    changes = source.read(0, 15)
    assert source.pending(changes[-1].position) > 0
    app.run("UPDATE people SET name = 'early' WHERE id = 3")  # already read by the snapshot
    app.run("UPDATE people SET name = 'late' WHERE id = 45")  # not yet read
    app.run("DELETE FROM people WHERE id IN (4, 46)")
    app.run("INSERT INTO people (id, name) VALUES (100, 'new'), (0, 'low')")
    changes += drain(source, changes[-1].position, limit=15)

    snapshot = [c.after["id"] for c in changes if c.op == ch.SNAPSHOT]
    assert snapshot == list(range(1, 61))  # the snapshot's view, each row once, in key order
    assert [c.op for c in changes[:2]] == [ch.SCHEMA, ch.SNAPSHOT]
    assert positions_increase(changes)
    assert fold(changes) == app.rows("people")


def test_snapshot_rows_arrive_with_exact_values(app, sources):
    app.run(TYPES)
    awkward = ["tab\there", "line\nbreak\r\n", "back\\slash \\N", "\\N", "", "\b\f\v\x01 end"]
    rows = [ROW, {"id": 2}] + [{"id": 3 + i, "name": text, "tags": [text, None]} for i, text in enumerate(awkward)]
    for row in rows:
        app.run(f"INSERT INTO kinds ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})", params(row))
    changes = [c for c in drain(sources(["kinds"], snapshot_chunk=3)) if c.op == ch.SNAPSHOT]

    assert changes[0].after == ROW
    assert all(type(changes[0].after[k]) is type(v) for k, v in ROW.items())
    assert changes[1].after == {**{k: None for k in ROW}, "id": 2}
    assert [c.after["name"] for c in changes[2:]] == awkward
    assert [c.after["tags"] for c in changes[2:]] == [[text, None] for text in awkward]


def test_a_snapshot_logs_its_progress(app, sources, caplog):
    people(app, 25)
    with caplog.at_level("INFO", logger="adapters.postgres.snapshot"):
        drain(sources(snapshot_chunk=10))
    lines = [r.getMessage() for r in caplog.records if r.name == "adapters.postgres.snapshot"]
    assert lines[0].startswith("snapshot of people (pass 0): 10 of about ")
    assert lines[-1].startswith("snapshot of people (pass 0) done: 25 rows read, ")


def test_snapshot_rows_are_stored_up_to_snapshot_batch_size_at_a_time(app, sources, tmp_path):
    people(app, 100)
    app.run("CREATE TABLE other (id integer PRIMARY KEY)")
    store = EventStore(f"sqlite:///{tmp_path / 'node.db'}")
    recorder = store.node_recorder(AGENCY)
    stored, insert = [], recorder.insert_events
    recorder.insert_events = lambda events, **kwargs: stored.append(len(events)) or insert(events, **kwargs)
    capture = Capture(AGENCY, sources(["people", "other"], snapshot_chunk=10), recorder, batch_size=10,
                      snapshot_batch_size=50)
    while capture.step():
        pass
    app.run("INSERT INTO other SELECT generate_series(1, 30)")  # streamed: batch_size at a time
    while capture.step():
        pass

    assert stored == [50, 50, 2, 10, 10, 10]  # schemas and rows of people, the schema of other; inserts
    created = [e for e in map(capture.mapper.to_domain_event, recorder.read(0, 500)) if isinstance(e, RecordCreated)]
    assert len({e.originator_id for e in created}) == len(created) == 130
    store.close()


def test_an_interrupted_snapshot_resumes_from_the_last_stored_chunk(app, sources):
    people(app, 50)
    first = sources(snapshot_chunk=10)
    stored = first.read(0, 11)  # the schema and the first chunk
    stored += first.read(stored[-1].position, 10)
    first.read(stored[-1].position, 10)  # read, but the node crashed before storing it
    first.close()
    app.run("DELETE FROM people WHERE id IN (2, 25)")  # stored / not stored before the crash
    app.run("UPDATE people SET name = 'changed' WHERE id IN (3, 30)")
    app.run("INSERT INTO people (id, name) VALUES (0, 'gone'), (51, 'new')")
    app.run("DELETE FROM people WHERE id = 0")

    rest = drain(sources(snapshot_chunk=10), stored[-1].position)

    done = [c.after["id"] for c in stored if c.op == ch.SNAPSHOT]
    again = [c.after["id"] for c in rest if c.op == ch.SNAPSHOT]
    assert done == list(range(1, 21))
    assert again == [i for i in range(21, 52) if i != 25]  # only the rest, read at the new snapshot
    assert [c.op for c in stored + rest].count(ch.SCHEMA) == 1
    assert fold(stored + rest) == app.rows("people")


def test_a_table_added_later_is_snapshotted_between_streamed_transactions(app, sources):
    people(app, 2)
    app.run("CREATE SCHEMA reg; CREATE TABLE reg.cases (id int PRIMARY KEY, title text)")
    app.run("INSERT INTO reg.cases SELECT g, 'c' || g FROM generate_series(1, 25) g")
    first = sources(snapshot_chunk=10)
    stored = drain(first)
    app.run("INSERT INTO people (id) VALUES (3)")
    app.run("UPDATE reg.cases SET title = 'before' WHERE id = 20")
    first.close()
    second = sources(["people", "reg.cases"], snapshot_chunk=10)

    added = second.read(stored[-1].position, 12)  # the snapshot of reg.cases starts
    app.run("UPDATE reg.cases SET title = 'after' WHERE id IN (1, 21)")
    added += drain(second, added[-1].position, limit=12)

    assert [(c.op, c.table) for c in added[:3]] == [
        (ch.INSERT, "people"), (ch.SCHEMA, "reg.cases"), (ch.SNAPSHOT, "reg.cases")]
    assert [c.after["id"] for c in added if c.op == ch.SNAPSHOT] == list(range(1, 26))
    assert [(c.op, c.after["id"]) for c in added[-2:]] == [(ch.UPDATE, 1), (ch.UPDATE, 21)]
    assert positions_increase(stored + added)
    for table in ("people", "reg.cases"):
        assert fold([c for c in stored + added if c.table == table]) == app.rows(table)


# -- values the stream leaves out ----------------------------------------------

def test_an_unchanged_toasted_value_is_left_out_of_the_update(app, sources):
    app.run("CREATE TABLE files (id int PRIMARY KEY, title text, body text)")
    source = sources(["files"])
    drain(source)
    body = app.run("SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g")[0][0]  # 96 kB
    app.run("INSERT INTO files VALUES (1, 'a', %s)", (body,))
    app.run("UPDATE files SET title = 'b'")

    insert, update = changes = drain(source)

    assert insert.after["body"] == body
    assert "body" not in update.after and update.after["title"] == "b"
    assert fold(changes) == {(1,): {"id": 1, "title": "b", "body": body}}


def test_duplicate_rows_of_a_table_without_key_are_copies(app, sources):
    app.run("CREATE TABLE visits (person int, day date, note text)")
    app.run("ALTER TABLE visits REPLICA IDENTITY FULL")
    app.run("INSERT INTO visits VALUES (1, '2024-01-02', 'x'), (1, '2024-01-02', 'x'), (2, NULL, NULL)")
    source = sources(["visits"])
    key = tuple(source.schemas()["visits"].primary_key)
    changes = drain(source)
    app.run("INSERT INTO visits VALUES (1, '2024-01-02', 'x'), (2, NULL, NULL)")
    app.run("DELETE FROM visits WHERE ctid = (SELECT min(ctid) FROM visits WHERE person = 1)")
    app.run("UPDATE visits SET note = 'y' WHERE ctid = (SELECT min(ctid) FROM visits WHERE person = 1)")

    changes += drain(source)

    assert key == ("person", "day", "note", COPY_COLUMN)
    assert [(c.op, c.after and c.after[COPY_COLUMN]) for c in changes if c.op != ch.SCHEMA] == [
        (ch.SNAPSHOT, 0), (ch.SNAPSHOT, 1), (ch.SNAPSHOT, 0), (ch.INSERT, 2), (ch.INSERT, 1),
        (ch.DELETE, None), (ch.UPDATE, 0)]
    held = sorted(fold(changes, key))
    assert held == sorted(app.rows("visits"))
    assert sorted((p, n) for p, _, n, _ in held) == [(1, "x"), (1, "y"), (2, None), (2, None)]

    source.acknowledge(changes[-1].position)  # prunes the counts it replaced
    source.close()
    app.run("INSERT INTO visits VALUES (1, '2024-01-02', 'x')")
    app.run("DELETE FROM visits WHERE ctid = (SELECT min(ctid) FROM visits WHERE person = 2)")
    resumed = drain(sources(["visits"]), changes[-1].position)
    assert [(c.op, (c.after or c.before)[COPY_COLUMN]) for c in resumed] == [(ch.INSERT, 1), (ch.DELETE, 1)]
    assert sorted(fold(changes + resumed, key)) == sorted(app.rows("visits"))


def test_copy_counts_are_fetched_once_per_read_not_once_per_transaction(app, sources, monkeypatch):
    app.run("CREATE TABLE visits (person int, note text)")
    app.run("ALTER TABLE visits REPLICA IDENTITY FULL")
    source = sources(["visits"])
    drain(source)
    for i in range(20):  # twenty transactions, each a new content and a copy of the first
        app.run("INSERT INTO visits VALUES (%s, 'x'), (0, 'x')", (i + 1,))
    fetches, reads = [], []
    fetch, read = source._copies._fetch, source.read
    monkeypatch.setattr(source._copies, "_fetch", lambda *a: fetches.append(a) or fetch(*a))
    monkeypatch.setattr(source, "read", lambda *a: reads.append(a) or read(*a))

    changes = drain(source)

    assert len(changes) == 40 and len(fetches) <= len(reads) < 20
    assert [c.after[COPY_COLUMN] for c in changes if c.after["person"] == 0] == list(range(20))
    assert sorted(fold(changes, ("person", "note", COPY_COLUMN))) == sorted(app.rows("visits"))


def test_schema_changes_come_before_the_rows_they_shape(app, sources):
    people(app)
    source = sources()
    drain(source)
    app.run("ALTER TABLE people ADD COLUMN district text DEFAULT '东城'")
    app.run("INSERT INTO people (id, name) VALUES (1, 'a')")
    app.run("ALTER TABLE people DROP COLUMN score")
    app.run("INSERT INTO people (id, name) VALUES (2, 'b')")
    app.run("ALTER TABLE people ALTER COLUMN id TYPE bigint")
    app.run("UPDATE people SET name = 'c' WHERE id = 2")

    changes = drain(source)

    # A column added with a default, and a type change, have the table read again, as one snapshot pass.
    assert [c.op for c in changes] == [ch.SCHEMA, ch.INSERT, ch.SCHEMA, ch.INSERT, ch.SCHEMA, ch.UPDATE,
                                       ch.SNAPSHOT_BEGIN, ch.SNAPSHOT, ch.SNAPSHOT, ch.SNAPSHOT_END]
    assert [c.after for c in changes if c.op == ch.SNAPSHOT] == [{"id": 1, "name": "a", "district": "东城"},
                                                                  {"id": 2, "name": "c", "district": "东城"}]
    assert positions_increase(changes) and all(c.renames is None for c in changes)
    added, dropped, retyped = (c.schema for c in changes if c.op == ch.SCHEMA)
    assert added.column_names == ("id", "name", "score", "district")
    assert added.columns[-1].default == "'东城'::text"
    assert changes[1].after == {"id": 1, "name": "a", "score": None, "district": "东城"}
    assert dropped.column_names == ("id", "name", "district") and "score" not in changes[3].after
    assert retyped.columns[0].type == "bigint" and retyped.primary_key == ("id",)
    assert source.schemas()["people"] == retyped


def test_truncate_arrives_in_its_place_in_the_transaction(app, sources):
    people(app, 3)
    app.run("CREATE TABLE cases (id integer PRIMARY KEY)")
    source = sources(["people", "cases"])
    drain(source)
    app.run("BEGIN; INSERT INTO people (id) VALUES (4); TRUNCATE people, cases; INSERT INTO people (id) VALUES (5); "
            "COMMIT")
    changes = drain(source)
    assert [(c.op, c.table) for c in changes] == [(ch.INSERT, "people"), (ch.TRUNCATE, "people"),
                                                  (ch.TRUNCATE, "cases"), (ch.INSERT, "people")]
    assert positions_increase(changes) and len({c.txid for c in changes}) == 1
    assert all(c.before is None and c.after is None for c in changes if c.op == ch.TRUNCATE)


def test_a_renamed_column_is_named_as_renamed(app, sources):
    people(app, 2)
    source = sources()
    drain(source)
    app.run("ALTER TABLE people RENAME COLUMN name TO full_name")
    app.run("ALTER TABLE people RENAME COLUMN score TO name")  # the old name again, for another column
    app.run("UPDATE people SET full_name = 'x' WHERE id = 1")
    schema, update = drain(source)
    assert schema.op == ch.SCHEMA and schema.schema.column_names == ("id", "full_name", "name")
    assert schema.renames == {"name": "full_name", "score": "name"}
    assert update.op == ch.UPDATE and update.after["full_name"] == "x"


# -- apply target and reader --------------------------------------------------

def test_the_reader_hides_bookkeeping_and_streams_in_key_order(app, sources):
    people(app)
    app.run("INSERT INTO people (id, name) VALUES (3, 'c'), (1, 'a'), (2, 'b')")
    app.run("CREATE TABLE words (w text PRIMARY KEY); INSERT INTO words VALUES ('b'), ('B'), ('a')")
    sources()
    reader = PostgresReader(app.url)
    try:
        assert reader.tables() == ["people", "words"]
        assert [r["id"] for r in reader.rows("people")] == [1, 2, 3]
        assert [r["w"] for r in reader.rows("words")] == ["B", "a", "b"]  # code point order, as verify merges
        assert [r["id"] for r in reader.rows("people", order_by=["name"])] == [1, 2, 3]
    finally:
        reader.close()


def test_rows_replayed_through_the_target_verify_equal(app, postgres):
    app.run(TYPES)
    app.run(f"INSERT INTO kinds ({', '.join(ROW)}) VALUES ({', '.join(['%s'] * len(ROW))})",
            params(ROW))
    app.run("INSERT INTO kinds (id, name, ratio, tags) SELECT g, 'n' || g, g / 3.0, ARRAY['x' || g] "
            "FROM generate_series(2, 700) g")
    app.run("CREATE TABLE visits (person int, note text); ALTER TABLE visits REPLICA IDENTITY FULL")
    app.run("INSERT INTO visits VALUES (1, 'x'), (1, 'x'), (NULL, NULL)")
    target_name = postgres.create_database(app.name[:40] + "_target")
    reader, target = PostgresReader(app.url), PostgresTarget(postgres.url(target_name))
    try:
        for table in reader.tables():
            schema = reader.table_schema(table)
            target.apply_schema(schema)
            target.apply_schema(schema)
            target.apply([RowOp(table, ch.INSERT, {k: r[k] for k in schema.primary_key}, r)
                          for r in reader.rows(table)])  # 700 rows: COPY
        target.apply([RowOp("kinds", ch.UPDATE, {"id": 2}, {"name": "二", "attrs": '{"x": []}'}),
                      RowOp("kinds", ch.DELETE, {"id": 3}),
                      RowOp("visits", ch.DELETE, {"person": None, "note": None, COPY_COLUMN: 0})])
        app.run("UPDATE kinds SET name = '二', attrs = '{\"x\": []}' WHERE id = 2")
        app.run("DELETE FROM kinds WHERE id = 3")
        app.run("DELETE FROM visits WHERE person IS NULL")
    finally:
        reader.close()
        target.close()

    report = verify(app.url, postgres.url(target_name))

    assert report.equal, report.render()
    assert [t.source.rows for t in report.tables] == [699, 2]


def test_the_target_follows_schema_changes_and_maps_sqlite_types(app):
    target = PostgresTarget(app.url)
    reader = PostgresReader(app.url)
    try:
        schema = ch.TableSchema("cases", (ch.Column("no", "INTEGER", True), ch.Column("title", "TEXT"),
                                          ch.Column("score", "REAL"), ch.Column("scan", "BLOB"), ch.Column("x", "")),
                                ("no",))
        target.apply_schema(schema)
        target.apply([RowOp("cases", ch.INSERT, {"no": 1}, {"no": 1, "title": "a", "score": 0.5, "scan": b"\1",
                                                           "x": "?"})])
        assert [c.type for c in reader.table_schema("cases").columns] == [
            "bigint", "text", "double precision", "bytea", "text"]
        changed = ch.TableSchema("cases", (ch.Column("no", "bigint", True), ch.Column("title", "character varying(9)"),
                                           ch.Column("level", "integer", True, "3")), ("no",))
        target.apply_schema(changed)
        assert reader.table_schema("cases") == changed
        assert list(reader.rows("cases")) == [{"no": 1, "title": "a", "level": 3}]
        with pytest.raises(psycopg2.Error):
            target.apply([RowOp("cases", ch.INSERT, {}, {"no": 2, "title": "b"}),
                          RowOp("cases", ch.INSERT, {}, {"no": 2, "title": "b"})])
        assert len(list(reader.rows("cases"))) == 1  # the failed batch left nothing behind
    finally:
        target.close()
        reader.close()


# -- through the node ---------------------------------------------------------

def test_capture_store_replay_and_verify_through_the_node(app, postgres, sources, tmp_path):
    app.run(TYPES)
    app.run(f"INSERT INTO kinds ({', '.join(ROW)}) VALUES ({', '.join(['%s'] * len(ROW))})", params(ROW))
    app.run("INSERT INTO kinds (id, name) SELECT g, 'n' || g FROM generate_series(2, 30) g")
    app.run("CREATE TABLE files (id int PRIMARY KEY, title text, body text)")
    body = app.run("SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g")[0][0]
    app.run("INSERT INTO files VALUES (1, 'a', %s)", (body,))
    app.run("CREATE TABLE visits (person int, note text); ALTER TABLE visits REPLICA IDENTITY FULL")
    app.run("INSERT INTO visits VALUES (1, 'x'), (1, 'x'), (2, NULL)")
    source = sources(["kinds", "files", "visits"], snapshot_chunk=4)
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    store = EventStore(store_url)
    try:
        capture = Capture(AGENCY, source, store.node_recorder(AGENCY), batch_size=7)
        while capture.step():
            pass
        app.run("UPDATE files SET title = 'b'")  # the body is not sent again
        app.run("INSERT INTO visits VALUES (1, 'x'), (2, NULL)")
        app.run("DELETE FROM visits WHERE ctid = (SELECT min(ctid) FROM visits WHERE person = 1)")
        app.run("UPDATE kinds SET amount = amount * 2, tags = tags || ARRAY['新'] WHERE id = 1")
        app.run("DELETE FROM kinds WHERE id BETWEEN 5 AND 9")
        app.run("ALTER TABLE kinds ADD COLUMN rank smallint NOT NULL DEFAULT 7")
        app.run("INSERT INTO kinds (id, name) VALUES (100, '新')")
        while capture.step():
            pass
    finally:
        store.close()
    target = postgres.create_database(app.name[:40] + "_replayed")

    replay(store_url, AGENCY, postgres.url(target), progress=False)
    report = verify(app.url, postgres.url(target), tables=["files", "kinds", "visits"])

    assert report.equal, report.render()
    assert [t.target.rows for t in report.tables] == [1, 26, 4]


def test_the_target_drops_a_table_with_its_checkpoint_in_one_go(app):
    target = PostgresTarget(app.url)
    reader = PostgresReader(app.url)
    try:
        target.drop_table("records.cases", checkpoint="consumer:a:cases")  # neither exists yet
        schema = ch.TableSchema("records.cases", (ch.Column("no", "integer", True),), ("no",))
        target.apply_schema(schema)
        target.apply([RowOp("records.cases", ch.INSERT, {"no": 1}, {"no": 1})], checkpoint=("consumer:a:cases", 7))
        target.apply([], checkpoint=("consumer:a:other", 9))
        target.drop_table("records.cases", checkpoint="consumer:a:cases")
        assert reader.tables() == []
        assert (target.checkpoint("consumer:a:cases"), target.checkpoint("consumer:a:other")) == (None, 9)
    finally:
        target.close()
        reader.close()



def test_a_table_dropped_from_the_configuration_but_still_published_is_ignored(app, sources):
    people(app)
    app.run("CREATE TABLE cases (id integer PRIMARY KEY)")
    first = sources(["people", "cases"])  # the publication now holds both tables
    drain(first)
    first.close()
    source = sources(["people"])
    drain(source, after=0)
    app.run("INSERT INTO cases VALUES (1)")
    app.run("INSERT INTO people (id) VALUES (1)")
    changes = drain(source)
    assert [(c.table, c.op) for c in changes] == [("people", ch.INSERT)]
    source.acknowledge(changes[-1].position)  # knows the relation of cases as one it does not capture


@pytest.mark.parametrize("command", ["replay", "verify"])
def test_a_database_that_does_not_exist_is_named_not_a_traceback(postgres, tmp_path, command):
    missing = postgres.url("no_such_database")
    if command == "verify":
        args = ["verify", "--source", missing, "--target", f"sqlite:///{tmp_path / 'x.db'}"]
    else:
        store = f"sqlite:///{tmp_path / 'store.db'}"
        EventStore(store).node_recorder("A").insert_events([])
        args = ["replay", "--store", store, "--agency", "A", "--target", missing]
    done = subprocess.run([sys.executable, "-m", "exchange", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot open the database" in done.stderr and "no_such_database" in done.stderr
    assert "Traceback" not in done.stderr
