"""SQLite capture source, apply target and reader, on real database files."""

from __future__ import annotations

import sqlite3
from datetime import timezone

import pytest

from adapters.sqlite.reader import SQLiteReader
from adapters.sqlite.source import SQLiteSource
from adapters.sqlite.target import SQLiteTarget
from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, RowOp, SourceNotReady, TableSchema

PEOPLE = "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB, note)"


@pytest.fixture
def app(tmp_path):
    """The agency application's own connection to its database."""
    db = sqlite3.connect(tmp_path / "agency.db", isolation_level=None)
    db.execute(PEOPLE)
    yield db
    db.close()


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'agency.db'}"


def source(url, tables=("people",), **options) -> SQLiteSource:
    s = SQLiteSource(url, list(tables), **options)
    s.prepare()
    return s


def snapshotted(url, tables=("people",)) -> SQLiteSource:
    """A prepared source whose (empty) initial snapshot is done."""
    s = source(url, tables)
    drain(s)
    return s


def rows_of(db, table="people", order="id"):
    cursor = db.execute(f"SELECT * FROM {table} ORDER BY {order}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def drain(s: SQLiteSource, after: int = 0) -> list[ch.Change]:
    """Read everything, including every pending snapshot chunk."""
    found = []
    while batch := s.read(after, 1000):
        found += batch
        after = batch[-1].position
    return found


def fold(changes: list[ch.Change], key: str = "id") -> dict:
    """What a consumer holds after applying the changes in order."""
    held = {}
    for c in changes:
        if c.op == ch.DELETE:
            held.pop(c.before[key], None)
        elif c.op != ch.SCHEMA:
            held[c.after[key]] = c.after
    return held


# -- prepare ------------------------------------------------------------------

def test_prepare_refuses_a_missing_database(tmp_path):
    missing = tmp_path / "nowhere.db"
    with pytest.raises(SourceNotReady, match="nowhere.db"):
        SQLiteSource(f"sqlite:///{missing}", ["people"]).prepare()
    assert not missing.exists()


def test_prepare_refuses_a_missing_table_and_lists_the_tables(app, url):
    with pytest.raises(SourceNotReady, match=r"'orders'.*people"):
        source(url, ["people", "orders"])


def test_prepare_refuses_a_table_without_key_and_says_how_to_fix(app, url):
    app.execute("CREATE TABLE visits (person INTEGER, day TEXT)")
    with pytest.raises(SourceNotReady, match=r"PRIMARY KEY.*keys = \{ visits"):
        source(url, ["visits"])


def test_configured_keys_stand_in_for_a_primary_key(app, url):
    app.execute("CREATE TABLE visits (person INTEGER, day TEXT)")
    app.execute("INSERT INTO visits VALUES (1, '2024-01-02')")
    s = source(url, ["visits"], keys={"visits": ["person", "day"]})
    assert s.schemas()["visits"].primary_key == ("person", "day")
    assert [c.op for c in drain(s)] == [ch.SCHEMA, ch.SNAPSHOT]


def test_prepare_is_idempotent(app, url):
    s = source(url)
    s.prepare()
    source(url).prepare()
    assert [c.op for c in drain(s)] == [ch.SCHEMA]


# -- row changes --------------------------------------------------------------

def test_row_changes_arrive_in_order_with_exact_images(app, url):
    s = snapshotted(url)
    app.execute("INSERT INTO people VALUES (1, '张三', 0.1, x'00ff10', NULL)")
    app.execute("INSERT INTO people VALUES (2, '李四', 1e-310, NULL, 9007199254740993)")
    inserted = rows_of(app)
    app.execute("UPDATE people SET score = 0.1 + 0.2, note = json_array(1, 2), photo = zeroblob(3) WHERE id = 1")
    updated = rows_of(app)[0]
    app.execute("DELETE FROM people WHERE id = 2")

    changes = drain(s)

    assert [(c.op, c.table) for c in changes] == [
        (ch.SCHEMA, "people"), (ch.INSERT, "people"), (ch.INSERT, "people"), (ch.UPDATE, "people"),
        (ch.DELETE, "people")]
    assert [c.position for c in changes] == sorted({c.position for c in changes})
    schema, first, second, update, delete = changes
    assert schema.schema.column_names == ("id", "name", "score", "photo", "note")
    assert (first.before, first.after) == (None, inserted[0])
    assert second.after == inserted[1]
    assert (update.before, update.after) == (inserted[0], updated)
    assert (delete.before, delete.after) == (inserted[1], None)
    assert type(updated["score"]) is float and update.after["score"] == 0.1 + 0.2
    assert update.after["note"] == "[1,2]" and update.after["photo"] == b"\0\0\0"
    assert all(c.commit_time.tzinfo == timezone.utc and c.txid == "" for c in changes)


def test_wide_tables_are_captured_whole(app, url):
    columns = [f"c{i}" for i in range(150)]
    app.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {', '.join(columns)})")
    s = snapshotted(url, ["wide"])
    app.execute(f"INSERT INTO wide VALUES (1, {', '.join(str(i) for i in range(150))})")
    assert drain(s)[-1].after == rows_of(app, "wide")[0]


def test_rolled_back_changes_are_not_captured(app, url):
    s = snapshotted(url)
    app.execute("BEGIN")
    app.execute("INSERT INTO people (id, name) VALUES (1, 'gone')")
    app.execute("ROLLBACK")
    app.execute("INSERT INTO people (id, name) VALUES (2, 'kept')")
    assert [(c.op, c.after) for c in drain(s)][1:] == [(ch.INSERT, rows_of(app)[0])]


def test_read_resumes_after_a_position(app, url):
    s = snapshotted(url)
    for i in range(10):
        app.execute("INSERT INTO people (id, name) VALUES (?, ?)", (i, f"p{i}"))
    everything = s.read(0, 100)
    first = s.read(0, 4)
    rest = s.read(first[-1].position, 100)
    assert first + rest == everything
    assert s.pending(first[-1].position) == len(rest)


def test_acknowledge_prunes_only_up_to_the_position(app, url):
    s = snapshotted(url)
    for i in range(5):
        app.execute("INSERT INTO people (id) VALUES (?)", (i,))
    changes = s.read(0, 100)
    s.acknowledge(changes[3].position)
    assert s.read(0, 100) == changes[4:]
    assert s.pending(0) == 2


# -- snapshot -----------------------------------------------------------------

def test_existing_rows_arrive_as_snapshot_rows_in_chunks(app, url):
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(25)])
    s = source(url, snapshot_chunk=10)
    sizes, after = [], 0
    while batch := s.read(after, 1000):
        sizes.append(sum(c.op == ch.SNAPSHOT for c in batch))
        after = batch[-1].position
    assert sizes == [10, 10, 5]
    snapshot = [c.after for c in s.read(0, 1000) if c.op == ch.SNAPSHOT]
    assert snapshot == rows_of(app)


def test_a_table_ending_on_a_chunk_boundary_does_not_pause_the_snapshot(app, url):
    app.execute("CREATE TABLE pairs (a INTEGER PRIMARY KEY)")
    app.executemany("INSERT INTO pairs VALUES (?)", [(i,) for i in range(10)])
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(3)])
    s = source(url, ["pairs", "people"], snapshot_chunk=5)
    after, seen = 0, []
    while batch := s.read(after, 1000):  # an empty read would mean "nothing to capture now"
        seen += [c for c in batch if c.op == ch.SNAPSHOT]
        after = batch[-1].position
    assert len(seen) == 13


def test_pending_counts_rows_the_snapshot_has_still_to_read(app, url):
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(25)])
    s = source(url, snapshot_chunk=10)
    assert s.pending(0) == 1 + 25  # the schema row, then every row still to snapshot
    first = s.read(0, 1000)
    assert s.pending(first[-1].position) == 15
    assert s.pending(drain(s)[-1].position) == 0


def test_pending_refuses_a_source_never_prepared(app, url):
    with pytest.raises(ch.SourceNotReady, match="capture is not set up"):
        SQLiteSource(url, ["people"]).pending(0)


def test_an_interrupted_snapshot_resumes_from_the_last_chunk(app, url):
    app.execute("CREATE TABLE pairs (a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b))")
    app.executemany("INSERT INTO pairs VALUES (?, ?, ?)", [(a, b, f"{a}{b}") for a in "xyz" for b in range(4)])
    first = source(url, ["pairs"], snapshot_chunk=5)
    first.read(0, 1000)
    first.read(0, 1000)
    first.close()

    second = source(url, ["pairs"], snapshot_chunk=5)
    changes = drain(second)

    snapshot = [(c.after["a"], c.after["b"]) for c in changes if c.op == ch.SNAPSHOT]
    assert snapshot == [(a, b) for a in "xyz" for b in range(4)]  # all rows, each once, in key order
    assert [c.op for c in changes].count(ch.SCHEMA) == 1


def test_changes_during_the_snapshot_keep_the_log_consistent(app, url):
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(30)])
    s = source(url, snapshot_chunk=10)
    s.read(0, 1000)  # first chunk: ids 0-9
    app.execute("UPDATE people SET name = 'early' WHERE id = 3")  # already snapshotted
    app.execute("UPDATE people SET name = 'late' WHERE id = 25")  # not yet snapshotted
    app.execute("DELETE FROM people WHERE id IN (4, 26)")
    app.execute("INSERT INTO people (id, name) VALUES (100, 'new')")
    changes = drain(s)
    assert fold(changes) == {row["id"]: row for row in rows_of(app)}
    assert sum(c.op == ch.SNAPSHOT and c.after["id"] == 25 for c in changes) == 1


# -- schema changes -----------------------------------------------------------

def test_an_added_column_is_followed(app, url):
    app.execute("INSERT INTO people (id, name) VALUES (1, 'a')")
    s = source(url)
    before = drain(s)
    app.execute("ALTER TABLE people ADD COLUMN district TEXT DEFAULT '东城'")
    app.execute("INSERT INTO people (id, name, district) VALUES (2, 'b', '西城')")  # old triggers still fire

    changes = drain(s, before[-1].position)
    app.execute("UPDATE people SET district = '海淀' WHERE id = 1")
    update = s.read(changes[-1].position, 100)

    assert [c.op for c in changes[:2]] == [ch.INSERT, ch.SCHEMA]
    assert "district" not in changes[0].after  # written before the triggers were rebuilt
    schema = changes[1]
    assert schema.schema.columns[-1] == Column("district", "TEXT", False, "'东城'")
    resnapshot = [c.after for c in changes if c.op == ch.SNAPSHOT and c.position > schema.position]
    assert resnapshot == [
        {"id": 1, "name": "a", "score": None, "photo": None, "note": None, "district": "东城"},
        {"id": 2, "name": "b", "score": None, "photo": None, "note": None, "district": "西城"}]
    assert [c.after["district"] for c in update] == ["海淀"]
    assert s.schemas()["people"] == schema.schema


def test_a_renamed_column_is_followed(app, url):
    s = snapshotted(url)
    app.execute("ALTER TABLE people RENAME COLUMN note TO remark")
    s.read(0, 100)
    app.execute("INSERT INTO people (id, remark) VALUES (1, 'r')")
    assert drain(s)[-1].after["remark"] == "r"


def test_a_table_removed_from_the_configuration_is_no_longer_captured(app, url):
    app.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    source(url, ["people", "other"])
    s = source(url, ["people"])
    app.execute("INSERT INTO other VALUES (1)")
    assert {c.table for c in drain(s)} == {"people"}


# -- apply target and reader --------------------------------------------------

SCHEMA = TableSchema(
    "cases",
    (Column("region", "TEXT", True), Column("no", "INTEGER", True), Column("title", "TEXT"),
     Column("status", "TEXT", True, "'open'")),
    ("region", "no"),
)


def target_and_reader(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'replayed.db'}"
    return SQLiteTarget(url), SQLiteReader(url)


def test_target_creates_tables_as_described(tmp_path):
    target, reader = target_and_reader(tmp_path)
    target.apply_schema(SCHEMA)
    target.apply_schema(SCHEMA)
    assert reader.tables() == ["cases"]
    assert reader.table_schema("cases") == SCHEMA


def test_target_applies_row_operations_in_order(tmp_path):
    target, reader = target_and_reader(tmp_path)
    target.apply_schema(SCHEMA)
    row = {"region": "京", "no": 1, "title": "a", "status": "open"}
    target.apply([
        RowOp("cases", ch.INSERT, {"region": "京", "no": 1}, row),
        RowOp("cases", ch.INSERT, {"region": "京", "no": 2}, {**row, "no": 2}),
        RowOp("cases", ch.INSERT, {"region": "沪", "no": 1}, {**row, "region": "沪"}),
        RowOp("cases", ch.UPDATE, {"region": "京", "no": 1}, {"title": "b"}),
        RowOp("cases", ch.UPDATE, {"region": "京", "no": 1}, {"status": "closed", "title": "c"}),
        RowOp("cases", ch.DELETE, {"region": "京", "no": 2}),
        RowOp("cases", ch.INSERT, {"region": "京", "no": 2}, {**row, "no": 2, "title": "again"}),
    ])
    target.apply([])
    assert list(reader.rows("cases")) == [
        {"region": "京", "no": 1, "title": "c", "status": "closed"},
        {"region": "京", "no": 2, "title": "again", "status": "open"},
        {"region": "沪", "no": 1, "title": "a", "status": "open"},
    ]


def test_target_finds_rows_whose_key_holds_null(tmp_path):
    target, reader = target_and_reader(tmp_path)
    loose = TableSchema("loose", (Column("a", "TEXT"), Column("b", "TEXT")), ("a", "b"))  # SQLite keys may be NULL
    target.apply_schema(loose)
    target.apply([RowOp("loose", ch.INSERT, {}, {"a": None, "b": "x"}),
                  RowOp("loose", ch.INSERT, {}, {"a": None, "b": None}),
                  RowOp("loose", ch.INSERT, {}, {"a": "k", "b": None})])
    target.apply([RowOp("loose", ch.UPDATE, {"a": None, "b": "x"}, {"b": "y"}),
                  RowOp("loose", ch.DELETE, {"a": None, "b": None}),
                  RowOp("loose", ch.UPDATE, {"a": "k", "b": None}, {"a": "m"})])
    assert sorted(map(str, reader.rows("loose"))) == ["{'a': 'm', 'b': None}", "{'a': None, 'b': 'y'}"]


def test_target_rolls_back_a_failing_batch(tmp_path):
    target, reader = target_and_reader(tmp_path)
    target.apply_schema(SCHEMA)
    row = {"region": "京", "no": 1, "title": "a", "status": "open"}
    with pytest.raises(sqlite3.IntegrityError):
        target.apply([RowOp("cases", ch.INSERT, {}, row), RowOp("cases", ch.INSERT, {}, row)])
    assert list(reader.rows("cases")) == []


def test_target_follows_schema_changes(tmp_path):
    target, reader = target_and_reader(tmp_path)
    target.apply_schema(SCHEMA)
    target.apply([RowOp("cases", ch.INSERT, {}, {"region": "京", "no": 1, "title": "a", "status": "open"})])

    added = TableSchema("cases", SCHEMA.columns + (Column("level", "INTEGER", True, "3"),), SCHEMA.primary_key)
    target.apply_schema(added)
    assert reader.table_schema("cases") == added
    assert list(reader.rows("cases"))[0]["level"] == 3

    dropped = TableSchema("cases", tuple(c for c in added.columns if c.name != "title"), SCHEMA.primary_key)
    target.apply_schema(dropped)
    assert reader.table_schema("cases") == dropped

    rekeyed = TableSchema("cases", dropped.columns, ("no",))  # not an ALTER: the table is rebuilt
    target.apply_schema(rekeyed)
    assert reader.table_schema("cases") == rekeyed
    assert list(reader.rows("cases")) == [{"region": "京", "no": 1, "status": "open", "level": 3}]
    assert reader.tables() == ["cases"]


def test_target_drops_a_table_with_its_checkpoint_in_one_go(tmp_path):
    target, reader = target_and_reader(tmp_path)
    target.drop_table("cases", checkpoint="consumer:a:cases")  # neither the table nor checkpoints exist yet
    target.apply_schema(SCHEMA)
    target.apply([RowOp("cases", ch.INSERT, {}, {"region": "京", "no": 1, "title": "a", "status": "open"})],
                 checkpoint=("consumer:a:cases", 7))
    target.apply([], checkpoint=("consumer:a:other", 9))
    target.drop_table("cases", checkpoint="consumer:a:cases")
    assert reader.tables() == []
    assert (target.checkpoint("consumer:a:cases"), target.checkpoint("consumer:a:other")) == (None, 9)


def test_reader_hides_capture_tables_and_streams_in_key_order(app, url):
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, str(i)) for i in (3, 1, 2)])
    app.execute("CREATE TABLE loose (v TEXT)")
    app.executemany("INSERT INTO loose VALUES (?)", [("b",), ("a",)])
    source(url).close()
    reader = SQLiteReader(url)
    assert reader.tables() == ["loose", "people"]
    assert [r["id"] for r in reader.rows("people")] == [1, 2, 3]
    assert [r["v"] for r in reader.rows("loose")] == ["b", "a"]  # rowid order without a key
    assert [r["v"] for r in reader.rows("loose", order_by=["v"])] == ["a", "b"]


def test_reader_of_a_missing_file_sees_no_tables_and_creates_nothing(tmp_path):
    assert SQLiteReader(f"sqlite:///{tmp_path / 'none.db'}").tables() == []
    assert not (tmp_path / "none.db").exists()


def test_a_sqlite_target_takes_the_values_other_sources_produce(tmp_path):
    """Exact decimals, UUIDs and arrays (from PostgreSQL) are kept as text, not refused."""
    import decimal
    import uuid as uuid_module

    from adapters import open_target
    from exchange.contracts import changes as ch
    from exchange.contracts.changes import Column, RowOp, TableSchema

    target = open_target(f"sqlite:///{tmp_path / 'replica.db'}")
    try:
        target.apply_schema(TableSchema("t", (Column("id", "INTEGER", True, None), Column("amount", "NUMERIC", False, None),
                                              Column("ref", "TEXT", False, None), Column("tags", "TEXT", False, None)),
                                        ("id",)))
        ref = uuid_module.uuid4()
        target.apply([RowOp("t", ch.INSERT, {"id": 1}, {"id": 1, "amount": decimal.Decimal("12.50"), "ref": ref,
                                                        "tags": ["a", "乙"]})])
    finally:
        target.close()
    row = sqlite3.connect(tmp_path / "replica.db").execute("SELECT amount, ref, tags FROM t").fetchone()
    assert row == (12.5, str(ref), '["a", "乙"]')


def test_a_resnapshot_pass_is_written_into_the_log_between_begin_and_end(app, url):
    app.executemany("INSERT INTO people (id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 6)])
    first = source(url, snapshot_chunk=2)
    stored = drain(first)[-1].position
    first.close()
    requester = SQLiteSource(url, ["people"])  # what exchange node resnapshot does, with no node reading
    requester.request_resnapshot(["people"])
    with pytest.raises(ValueError, match=r"not captured: places; the captured tables are: people"):
        requester.request_resnapshot(["places"])
    requester.close()
    app.execute("UPDATE people SET name = 'later' WHERE id = 1")
    changes = drain(source(url, snapshot_chunk=2), after=stored)

    ops = [c.op for c in changes]
    assert ops[0] == ch.SNAPSHOT_BEGIN and ops[-1] == ch.SNAPSHOT_END and ops.count(ch.SNAPSHOT_END) == 1
    assert sorted(c.after["id"] for c in changes if c.op == ch.SNAPSHOT) == [1, 2, 3, 4, 5]
    assert fold_names(changes)[1] == "later"


def fold_names(changes: list[ch.Change]) -> dict:
    names = {}
    for c in changes:
        if c.after is not None:
            names[c.after["id"]] = c.after["name"]
    return names
