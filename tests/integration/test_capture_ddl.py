"""DDL and TRUNCATE at the source, through the node store into replay and a consumer's replica.

Each source kind (PostgreSQL, SQLite, file drops) is captured by the node's
Capture into a real node store; the store is then replayed into a fresh
database and projected as the hub serves it to a consumer (all columns
entitled) into a replica, and both are compared with the source.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

import adapters
from consumer.replica import Replica
from exchange.contracts.events import (
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    SchemaChanged,
    TableTruncated,
    make_mapper,
)
from exchange.store import EventStore
from exchange.tools.replay import replay
from exchange.tools.verify import verify
from hub.sharing.projection import project
from node.capture import Capture

AGENCY = "91310000MB2F31887X"


def capture_all(source, store_url: str, batch_size: int = 1000) -> list:
    """Capture everything the source holds now into the node store; the domain events stored so far."""
    store = EventStore(store_url)
    try:
        recorder = store.node_recorder(AGENCY)
        capture = Capture(AGENCY, source, recorder, batch_size=batch_size)
        while capture.step():
            pass
        mapper = make_mapper()
        return [mapper.to_domain_event(n) for n in recorder.read(0, 100_000)]
    finally:
        store.close()


def to_replica(store_url: str, replica_url: str, resource: str, items: list[str]) -> None:
    """Deliver the resource's events as the hub does (projected to ``items``), in small batches."""
    store = EventStore(store_url, create=False)
    replica = Replica(replica_url)
    mapper = make_mapper()
    try:
        log = store.recorder(AGENCY)
        after = replica.position(AGENCY, resource)
        while notifications := log.read(after, 7):
            events = [(n.id, mapper.to_domain_event(n)) for n in project(notifications, resource, items)]
            replica.apply(AGENCY, resource, events, after, notifications[-1].id)
            after = notifications[-1].id
    finally:
        replica.close()
        store.close()


def rows(url: str, table: str) -> list[dict]:
    reader = adapters.open_reader(url)
    try:
        return list(reader.rows(table)) if table in reader.tables() else []
    finally:
        reader.close()


def assert_equal(source_url: str, target_url: str, tables: list[str]) -> None:
    report = verify(source_url, target_url, tables=tables)
    assert report.equal, report.render()


@pytest.fixture
def app(postgres, request):
    """A fresh source database: (url, run(sql))."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    postgres.create_database(name)

    def run(sql: str, params=None) -> None:
        postgres.execute(sql, dbname=name) if params is None else postgres.execute(sql, params, dbname=name)

    return postgres.url(name), run


def fresh(postgres, name: str) -> str:
    return postgres.url(postgres.create_database(name))


# -- PostgreSQL ---------------------------------------------------------------

@pytest.mark.parametrize("following", [False, True], ids=["capture-behind", "capture-following"])
def test_postgres_rename_add_drop_and_type_changes_mid_workload_replay_equal(app, postgres, tmp_path, following):
    """Captured once the statements are all done (the catalog has moved on: names are placed by their
    neighbours), or after each one."""
    url, sql = app
    sql("CREATE TABLE r (id integer PRIMARY KEY, val text, n integer, note text)")
    sql("INSERT INTO r SELECT g, 'v' || g, g, 'x' FROM generate_series(1, 10) g")
    source = adapters.open_source(url, ["r"], snapshot_chunk=4)
    store_url = f"sqlite:///{tmp_path / 'node.db'}"

    def run(statement: str) -> None:
        sql(statement)
        if following:
            capture_all(source, store_url, batch_size=5)

    try:
        capture_all(source, store_url, batch_size=5)
        run("ALTER TABLE r RENAME COLUMN val TO v2")
        run("UPDATE r SET v2 = 'changed' WHERE id = 3")
        run("ALTER TABLE r ADD COLUMN extra integer")  # existing rows hold NULL
        run("INSERT INTO r (id, v2, n, extra) VALUES (11, 'new', 11, 1)")
        run("ALTER TABLE r ADD COLUMN flag boolean NOT NULL DEFAULT true")  # existing rows hold true
        run("UPDATE r SET extra = 2 WHERE id = 4")
        run("ALTER TABLE r DROP COLUMN note")
        run("DELETE FROM r WHERE id = 5")
        run("ALTER TABLE r ALTER COLUMN n TYPE text USING (n * 10)::text")  # a cast would give other values
        run("UPDATE r SET v2 = 'after type' WHERE id = 6")
        run("ALTER TABLE r RENAME COLUMN v2 TO val")
        run("INSERT INTO r (id, val, n) VALUES (12, 'last', 'twelve')")
        events = capture_all(source, store_url, batch_size=5)
    finally:
        source.close()

    renames = [e.renames for e in events if isinstance(e, SchemaChanged) and e.renames]
    assert renames == [{"val": "v2"}, {"v2": "val"}]
    replayed = fresh(postgres, f"ddl_replayed_{following}".lower())
    replay(store_url, AGENCY, replayed, progress=False)
    assert_equal(url, replayed, ["r"])
    assert [(r["id"], r["val"], r["n"]) for r in rows(replayed, "r")][:3] == [(1, "v1", "10"), (2, "v2", "20"),
                                                                               (3, "changed", "30")]
    replica = fresh(postgres, f"ddl_replica_{following}".lower())
    to_replica(store_url, replica, "r", ["id", "val", "v2", "n", "extra", "flag", "note"])
    assert_equal(url, replica, ["r"])


def test_postgres_a_renamed_column_keeps_its_values_in_replay_and_replica(app, postgres, tmp_path):
    url, run = app
    run("CREATE TABLE r (id integer PRIMARY KEY, val text)")
    run("INSERT INTO r SELECT g, 'v' || g FROM generate_series(1, 10) g")
    source = adapters.open_source(url, ["r"])
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    try:
        capture_all(source, store_url)
        run("ALTER TABLE r RENAME COLUMN val TO v2")
        run("UPDATE r SET v2 = 'changed' WHERE id = 3")
        events = capture_all(source, store_url)
    finally:
        source.close()
    assert sum(isinstance(e, (RecordUpdated, RecordCreated)) for e in events) == 11  # no table read again
    replayed = fresh(postgres, "rename_replayed")
    replay(store_url, AGENCY, replayed, progress=False)
    assert_equal(url, replayed, ["r"])
    replica = fresh(postgres, "rename_replica")
    to_replica(store_url, replica, "r", ["id", "val", "v2"])
    assert_equal(url, replica, ["r"])


@pytest.fixture(params=["sqlite", "postgresql"])
def node_store(request, postgres, tmp_path):
    """A fresh node store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    return fresh(postgres, "store_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[-40:])


def test_postgres_truncate_deletes_every_record_in_stream_order(app, postgres, node_store):
    url, run = app
    run("CREATE TABLE t (id integer PRIMARY KEY, v text); CREATE TABLE u (id integer PRIMARY KEY)")
    run("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 30) g; INSERT INTO u VALUES (1), (2)")
    source = adapters.open_source(url, ["t", "u"])
    store_url = node_store
    try:
        capture_all(source, store_url)
        run("BEGIN; UPDATE t SET v = 'before' WHERE id = 1; INSERT INTO t VALUES (31, 'gone'); TRUNCATE t, u; "
            "INSERT INTO t VALUES (1, 'again'), (40, 'kept'); COMMIT")
        run("INSERT INTO u VALUES (3)")
        events = capture_all(source, store_url, batch_size=4)  # the deletes span several store transactions
    finally:
        source.close()

    after = events[[i for i, e in enumerate(events) if isinstance(e, TableTruncated)][0] - 2:]
    kinds = [(type(e).__name__, e.resource) for e in after]
    assert kinds[:3] == [("RecordUpdated", "t"), ("RecordCreated", "t"), ("TableTruncated", "t")]
    assert kinds[3:34] == [("RecordDeleted", "t")] * 31
    assert kinds[34:] == [("TableTruncated", "u"), ("RecordDeleted", "u"), ("RecordDeleted", "u"),
                          ("RecordCreated", "t"), ("RecordCreated", "t"), ("RecordCreated", "u")]
    replayed = fresh(postgres, "truncate_replayed")
    replay(store_url, AGENCY, replayed, progress=False)
    assert_equal(url, replayed, ["t", "u"])
    assert [r["id"] for r in rows(replayed, "t")] == [1, 40]
    replica = fresh(postgres, "truncate_replica")
    to_replica(store_url, replica, "t", ["id", "v"])
    assert_equal(url, replica, ["t"])


# -- SQLite -------------------------------------------------------------------

def test_sqlite_emptied_renamed_and_recreated_tables_reach_replay_and_replica(tmp_path):
    path = tmp_path / "agency.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, val TEXT, n INTEGER)")
    db.executemany("INSERT INTO r VALUES (?, ?, ?)", [(i, f"v{i}", i) for i in range(1, 11)])
    db.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO s VALUES (?, ?)", [(i, f"s{i}") for i in range(1, 6)])
    url, store_url = f"sqlite:///{path}", f"sqlite:///{tmp_path / 'node.db'}"
    source = adapters.open_source(url, ["r", "s"], snapshot_chunk=3)
    try:
        capture_all(source, store_url, batch_size=4)
        db.execute("ALTER TABLE r RENAME COLUMN val TO v2")
        db.execute("UPDATE r SET v2 = 'changed' WHERE id = 3")
        db.execute("DELETE FROM s")  # emptied
        db.execute("INSERT INTO s VALUES (9, 'new')")
        capture_all(source, store_url, batch_size=4)
        db.execute("DROP TABLE s")  # dropped and created again: its rows go without a trigger firing
        db.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO s VALUES (10, 'recreated')")
        events = capture_all(source, store_url, batch_size=4)
    finally:
        source.close()

    assert [e.renames for e in events if isinstance(e, SchemaChanged) and e.renames] == [{"val": "v2"}]
    replayed = f"sqlite:///{tmp_path / 'replayed.db'}"
    replay(store_url, AGENCY, replayed, progress=False)
    assert_equal(url, replayed, ["r", "s"])
    assert rows(replayed, "s") == [{"id": 10, "v": "recreated"}]
    replica = f"sqlite:///{tmp_path / 'replica.db'}"
    to_replica(store_url, replica, "s", ["id", "v"])
    to_replica(store_url, replica, "r", ["id", "val", "v2", "n"])
    assert_equal(url, replica, ["r", "s"])


# -- file drops ---------------------------------------------------------------

def test_an_emptied_drop_file_truncates_the_table_in_replay_and_replica(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "persons.csv").write_text("id,name\n1,Ann\n2,Bob\n3,Cy\n", encoding="utf-8")
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    source = adapters.open_source(f"files://{drops}", ["persons"], {"persons": ["id"]}, settle_seconds=0)
    try:
        capture_all(source, store_url)
        (drops / "persons-2.csv").write_text("id,name\n", encoding="utf-8")
        events = capture_all(source, store_url)
        (drops / "persons-3.csv").write_text("id,name\n4,Dee\n", encoding="utf-8")
        capture_all(source, store_url)
    finally:
        source.close()

    truncated = [i for i, e in enumerate(events) if isinstance(e, TableTruncated)]
    assert len(truncated) == 1
    assert [type(e) for e in events[truncated[0] + 1:]] == [RecordDeleted] * 3
    replayed = f"sqlite:///{tmp_path / 'replayed.db'}"
    replay(store_url, AGENCY, replayed, progress=False)
    assert rows(replayed, "persons") == [{"id": "4", "name": "Dee"}]
    replica = f"sqlite:///{tmp_path / 'replica.db'}"
    to_replica(store_url, replica, "persons", ["id", "name"])
    assert rows(replica, "persons") == [{"id": "4", "name": "Dee"}]


# -- node stores written before record states named their table ----------------

def test_a_node_store_written_before_opens_replays_and_truncates(app, postgres, node_store):
    url, run = app
    run("CREATE TABLE t (id integer PRIMARY KEY, v text)")
    run("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 12) g")
    store_url = node_store
    source = adapters.open_source(url, ["t"])
    try:
        capture_all(source, store_url)
        old_layout(store_url, postgres)
        replayed = fresh(postgres, "old_store_replayed")
        replay(store_url, AGENCY, replayed, progress=False)
        assert_equal(url, replayed, ["t"])
        run("DELETE FROM t WHERE id = 2; TRUNCATE t; INSERT INTO t VALUES (1, 'after')")
        capture_all(source, store_url, batch_size=5)
    finally:
        source.close()
    again = fresh(postgres, "old_store_replayed_again")
    replay(store_url, AGENCY, again, progress=False)
    assert_equal(url, again, ["t"])


def old_layout(store_url: str, postgres) -> None:
    """Turn the node store's record-state table into the layout of releases before it named tables and keys."""
    table = f"record_state_{AGENCY}"
    if store_url.startswith("sqlite"):
        db = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        db.execute(f"DROP INDEX {table}_by_table")
        for column in ("table_id", "key", "mark"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        db.close()
    else:
        dbname = store_url.rsplit("/", 1)[1]
        postgres.execute(f'ALTER TABLE "{table}" DROP COLUMN table_id, DROP COLUMN key, DROP COLUMN mark',
                         dbname=dbname)
        columns = [r[0] for r in postgres.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                  "table_name = %s ORDER BY ordinal_position", (table,),
                                                  dbname=dbname)]
    assert columns == ["originator_id", "version", "image_hash", "live"]


class _Crash(Exception):
    pass


def test_a_truncate_interrupted_between_its_store_transactions_is_finished_once(tmp_path):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "persons.csv").write_text("id,name\n" + "".join(f"{i},p{i}\n" for i in range(20)), encoding="utf-8")
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    source = adapters.open_source(f"files://{drops}", ["persons"], {"persons": ["id"]}, settle_seconds=0)
    try:
        capture_all(source, store_url)
        (drops / "persons-2.csv").write_text("id,name\n", encoding="utf-8")
        store = EventStore(store_url)
        try:
            recorder = store.node_recorder(AGENCY)
            writes = []

            def crash_on_the_third(*args, **kwargs):  # the process dies before its third store transaction
                writes.append(1)
                if len(writes) == 3:
                    raise _Crash()
                return type(recorder).insert_events(recorder, *args, **kwargs)

            recorder.insert_events = crash_on_the_third
            with pytest.raises(_Crash):
                Capture(AGENCY, source, recorder, batch_size=3).step()
        finally:
            store.close()
        (drops / "persons-3.csv").write_text("id,name\n7,again\n", encoding="utf-8")
        events = capture_all(source, store_url, batch_size=3)
    finally:
        source.close()
    assert sum(isinstance(e, TableTruncated) for e in events) == 1
    assert sum(isinstance(e, RecordDeleted) for e in events) == 20
    replayed = f"sqlite:///{tmp_path / 'replayed.db'}"
    replay(store_url, AGENCY, replayed, progress=False)
    assert rows(replayed, "persons") == [{"id": "7", "name": "again"}]


def test_a_publication_that_leaves_truncate_out_is_made_to_publish_it(app, tmp_path):
    url, run = app
    run("CREATE TABLE t (id integer PRIMARY KEY)")
    run("INSERT INTO t VALUES (1), (2)")
    run("CREATE PUBLICATION exchange_pub FOR TABLE t WITH (publish = 'insert, update, delete')")
    source = adapters.open_source(url, ["t"], publication="exchange_pub")
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    try:
        capture_all(source, store_url)
        run("TRUNCATE t")
        run("INSERT INTO t VALUES (3)")
        events = capture_all(source, store_url)
    finally:
        source.close()
    assert sum(isinstance(e, TableTruncated) for e in events) == 1
    assert sum(isinstance(e, RecordDeleted) for e in events) == 2
