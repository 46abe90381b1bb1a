"""PostgreSQL re-snapshot passes: requested through the stream, concurrent with writes, resumable; lost slots."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from test_postgres_adapter import AGENCY, App, app, drain, people, sources  # noqa: F401  (fixtures)

from adapters.postgres.source import PostgresSource
from exchange.contracts import changes as ch
from exchange.contracts.changes import PositionLost
from exchange.contracts.events import RecordCreated, RecordUpdated, make_mapper
from exchange.store import EventStore
from exchange.tools.replay import replay
from exchange.tools.verify import verify
from node.capture import Capture

TIMEOUT = 180


class Node:
    """A node's capture into its own store, restarted like a process: a new source each time."""

    def __init__(self, app: App, tables: list[str], store_url: str, **options):
        self.app, self.tables, self.options = app, tables, options
        self.store_url = store_url
        self.store = EventStore(store_url)
        self.recorder = self.store.node_recorder(AGENCY)
        self.source: PostgresSource | None = None
        self.capture: Capture | None = None

    def start(self) -> "Node":
        self.source = PostgresSource(self.app.url, self.tables, **self.options)
        self.source.prepare()
        self.capture = Capture(AGENCY, self.source, self.recorder, batch_size=100)
        return self

    def stop(self) -> None:
        if self.source is not None:
            self.source.close()
        self.source = self.capture = None

    def catch_up(self) -> None:
        while self.capture.step():
            pass

    def events(self, after: int = 0) -> list:
        mapper, found = make_mapper(), []
        while batch := self.recorder.read(after, 1000):
            found += [mapper.to_domain_event(n) for n in batch]
            after = batch[-1].id
        return found

    def close(self) -> None:
        self.stop()
        self.store.close()


@pytest.fixture
def node_factory(app, tmp_path):
    made = []

    def make(tables=("people",), **options) -> Node:
        node = Node(app, list(tables), f"sqlite:///{tmp_path / 'node.db'}", **options)
        made.append(node)
        return node.start()

    yield make
    for node in made:
        node.close()


def released(app: App) -> str:
    """The database's capture slot, once no walsender holds it any more (it exits after its client)."""
    deadline = time.monotonic() + TIMEOUT
    while found := app.run("SELECT slot_name FROM pg_replication_slots WHERE database = %s AND active",
                           (app.name,)):
        assert time.monotonic() < deadline, f"{found} still active"
        time.sleep(0.1)
    return app.run("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (app.name,))[0][0]


def skip_changes(app: App, node: Node, *statements: str) -> None:
    """Make changes capture never sees: with the node stopped, the slot is moved past them."""
    node.stop()
    for statement in statements:
        app.run(statement)
    app.run("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (released(app),))
    node.start()


def pass_done(app: App, table: str, number: int = 1) -> bool:
    requester = PostgresSource(app.url, [table])
    try:
        found = requester.resnapshot_progress([table])[table]
        return found.number >= number and found.done
    finally:
        requester.close()


def request(app: App, tables: list[str], captured: list[str] | None = None) -> None:
    """What ``exchange node resnapshot`` does: a source of its own (of the ``captured`` tables) writes the request."""
    requester = PostgresSource(app.url, captured or tables)
    try:
        requester.request_resnapshot(tables)
    finally:
        requester.close()


def replayed_equal(app: App, postgres, node: Node, tables: list[str]) -> str:
    target = postgres.create_database(app.name[:40] + "_replayed")
    replay(node.store_url, AGENCY, postgres.url(target), progress=False)
    report = verify(app.url, postgres.url(target), tables=tables)
    return "" if report.equal else report.render()


def workload(app: App, rounds: int, deletes: bool = False) -> threading.Thread:
    """Writes to ids 200..299 and new ids 2000..: updates, inserts and (with ``deletes``) deletes."""
    def run() -> None:
        conn = psycopg2.connect(app.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            for i in range(rounds):
                cur.execute("UPDATE people SET score = score + 1 WHERE id = %s", (200 + i % 100,))
                cur.execute("INSERT INTO people VALUES (%s, 'w', 0)", (2000 + i,))
                if deletes and i % 10 == 0:
                    cur.execute("DELETE FROM people WHERE id = %s", (250 + i // 10,))
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def run_until(node: Node, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        consumed = node.capture.step()
        if not consumed and done():
            return
        assert time.monotonic() < deadline, f"{what} not done"


def test_resnapshot_repairs_skipped_changes_with_only_the_difference_during_writes(app, postgres, node_factory):
    people(app, 300)
    node = node_factory(snapshot_chunk=40)
    node.catch_up()
    skip_changes(app, node, "UPDATE people SET name = 'skipped' WHERE id IN (10, 20, 30)",
                 "INSERT INTO people VALUES (1001, 'skipped', 0), (1002, 'skipped', 0)")
    node.catch_up()
    assert replayed_equal(app, postgres, node, ["people"])  # the node really missed them
    before = node.recorder.max_notification_id()
    writes = workload(app, 150)
    request(app, ["people"])
    run_until(node, lambda: not writes.is_alive() and pass_done(app, "people"), "the pass")
    writes.join()
    node.catch_up()

    assert replayed_equal(app, postgres, node, ["people"]) == ""
    repaired = [e for e in node.events(before) if e.txid == "" and e.resource == "people"]  # from the pass
    untouched = {e.key["id"]: type(e) for e in repaired if e.key["id"] < 200 or 1000 < e.key["id"] < 2000}
    assert untouched == {10: RecordUpdated, 20: RecordUpdated, 30: RecordUpdated,
                         1001: RecordCreated, 1002: RecordCreated}  # rows no writer touched: only the difference
    held: dict = {}
    for event in node.events():  # nothing duplicated: every event changes the record it belongs to
        if isinstance(event, RecordUpdated):
            assert any(held[event.originator_id].get(k) != v for k, v in event.changed.items()), event
            held[event.originator_id].update(event.changed)
        elif isinstance(event, RecordCreated):
            held[event.originator_id] = dict(event.row)


def test_resnapshot_deletes_rows_the_source_no_longer_holds(app, postgres, node_factory):
    # Rows deleted while the pass reads their chunk are only missing from the chunk: the node deletes them
    # at SNAPSHOT_END, as it does rows deleted while it did not look.
    people(app, 300)
    node = node_factory(snapshot_chunk=20)
    node.catch_up()
    skip_changes(app, node, "DELETE FROM people WHERE id IN (7, 8)", "UPDATE people SET name = 'x' WHERE id = 9")
    writes = workload(app, 150, deletes=True)
    request(app, ["people"])
    run_until(node, lambda: not writes.is_alive() and pass_done(app, "people"), "the pass")
    writes.join()
    node.catch_up()

    assert replayed_equal(app, postgres, node, ["people"]) == ""


def test_a_pass_resumes_after_a_restart_from_its_last_stored_chunk(app, sources):
    people(app, 100)
    source = sources(["people"], snapshot_chunk=10)
    stored = drain(source)[-1].position
    request(app, ["people"])
    first: list[ch.Change] = []
    deadline = time.monotonic() + TIMEOUT
    while sum(c.op == ch.SNAPSHOT for c in first) < 30:  # the node stores part of the pass, then dies
        assert time.monotonic() < deadline, first
        batch = source.read(stored, 25)
        first += batch
        stored = batch[-1].position if batch else stored
    source.close()
    app.run("UPDATE people SET name = 'changed' WHERE id = 95")
    rest = drain(sources(["people"], snapshot_chunk=10), after=stored)

    changes = first + rest
    ops = [c.op for c in changes]
    assert ops.count(ch.SNAPSHOT_BEGIN) == 1 and ops.count(ch.SNAPSHOT_END) == 1
    rows = [c.after for c in changes if c.op == ch.SNAPSHOT]
    assert ops.index(ch.SNAPSHOT_BEGIN) < ops.index(ch.SNAPSHOT) and ops[-1] == ch.SNAPSHOT_END
    assert sorted(r["id"] for r in rows) == list(range(1, 101))  # every row once: no chunk read twice
    assert next(r for r in rows if r["id"] == 95)["name"] == "changed"


def test_a_request_waits_in_the_stream_while_no_node_reads(app, sources):
    people(app, 5)
    source = sources(["people"])
    stored = drain(source)[-1].position
    source.close()
    request(app, ["people"])  # no node reading now
    app.run("UPDATE people SET name = 'later' WHERE id = 1")
    changes = drain(sources(["people"]), after=stored)
    assert [c.op for c in changes] == [ch.UPDATE, ch.SNAPSHOT_BEGIN, *[ch.SNAPSHOT] * 5, ch.SNAPSHOT_END]
    assert changes[2].after["name"] == "later"  # the pass reads the table as it is when it starts


# -- lost slots ---------------------------------------------------------------------


def test_a_dropped_slot_is_a_lost_position_naming_the_repair(app, sources):
    people(app, 3)
    app.run("CREATE TABLE places (id int PRIMARY KEY)")
    source = sources(["people", "places"])
    drain(source)
    source.close()
    app.run("SELECT pg_drop_replication_slot(%s)", (released(app),))
    with pytest.raises(PositionLost, match=r"slot '.*' of database '.*' was dropped; .*Repair: exchange node "
                                           r"resnapshot --config NODE\.toml --all"):
        sources(["people", "places"])
    with pytest.raises(PositionLost, match="only a re-snapshot of every captured table repairs a lost slot"):
        request(app, ["people"], captured=["people", "places"])


@pytest.fixture
def small_slots(postgres):
    """A cluster whose slots are invalidated once they hold more than 1 MB of WAL."""
    cluster = postgres.copy(max_slot_wal_keep_size="1MB")
    yield cluster
    cluster.stop()


def invalidate(app: App, slot: str) -> None:
    """Write WAL until the server gives up the slot."""
    deadline = time.monotonic() + TIMEOUT
    while app.run("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)) != [("lost",)]:
        assert time.monotonic() < deadline, "the slot was never invalidated"
        app.run("CREATE TABLE IF NOT EXISTS filler (n int); INSERT INTO filler SELECT generate_series(1, 20000)")
        app.run("SELECT pg_switch_wal()")
        app.run("CHECKPOINT")


def test_an_invalidated_slot_is_lost_and_resnapshot_all_recovers(small_slots, tmp_path):
    name = small_slots.create_database("lost_slot")
    app = App(small_slots, name)
    node = None
    try:
        people(app, 120)
        node = Node(app, ["people"], f"sqlite:///{tmp_path / 'node.db'}", snapshot_chunk=25).start()
        node.catch_up()
        node.stop()
        app.run("UPDATE people SET name = 'while lost' WHERE id BETWEEN 10 AND 14")
        app.run("INSERT INTO people VALUES (500, 'while lost', 1)")
        invalidate(app, released(app))
        with pytest.raises(PositionLost, match="was invalidated: it kept more WAL than max_slot_wal_keep_size"):
            node.start()
        before = node.recorder.max_notification_id()
        request(app, ["people"])  # the one captured table: all of them
        app.run("UPDATE people SET name = 'after' WHERE id = 1")
        node.start()
        run_until(node, lambda: pass_done(app, "people"), "the recovery pass")

        assert replayed_equal(app, small_slots, node, ["people"]) == ""
        repaired = sorted(e.key["id"] for e in node.events(before) if e.resource == "people")
        assert repaired == [1, 10, 11, 12, 13, 14, 500]  # unchanged rows made no event
    finally:
        if node is not None:
            node.close()
        app.conn.close()


def test_a_table_restored_from_a_backup_is_published_again_and_read_again(app, postgres, node_factory):
    people(app, 40)
    app.run("CREATE TABLE people_backup AS SELECT * FROM people")
    node = node_factory(snapshot_chunk=15)
    node.catch_up()
    app.run("UPDATE people SET name = 'after the backup' WHERE id = 5; DELETE FROM people WHERE id = 6")
    node.catch_up()
    # Restored: dropped, created again (so it left the publication) and loaded, in one transaction.
    app.run("BEGIN; DROP TABLE people; CREATE TABLE people (id integer PRIMARY KEY, name text, score numeric); "
            "INSERT INTO people SELECT * FROM people_backup; COMMIT")
    app.run("INSERT INTO people VALUES (41, 'after the restore', 41)")
    run_until(node, lambda: pass_done(app, "people"), "the pass after the restore")

    assert replayed_equal(app, postgres, node, ["people"]) == ""


def test_a_slot_invalidated_while_capture_reads_stops_the_read_with_a_lost_position(small_slots):
    name = small_slots.create_database("lost_while_reading")
    app = App(small_slots, name)
    source = PostgresSource(app.url, ["people"])
    try:
        people(app, 10)
        source.prepare()
        stored = drain(source)[-1].position  # the stream stays open, holding the slot
        invalidate(app, source.slot)
        with pytest.raises(PositionLost, match="was invalidated"):
            source.read(stored, 100)
        with pytest.raises(PositionLost, match="was invalidated"):
            source.pending(stored)
    finally:
        source.close()
        app.conn.close()
