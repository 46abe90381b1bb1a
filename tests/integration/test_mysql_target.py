"""MariaDB as a replay target, a verify side and a consumer replica, against the session's server."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from support.records import capture_all, record_event

import adapters
from adapters.apply import ApplyError
from adapters.mysql import joined
from adapters.mysql.dialect import alter_sql
from adapters.mysql.reader import MySQLReader
from adapters.mysql.target import MySQLTarget
from adapters.sqlite.source import SQLiteSource
from consumer.replica import Replica
from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, DatabaseUnavailable, RowOp, TableSchema
from exchange.contracts.errors import InvalidInput
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged
from exchange.demos.sample import TABLES, SampleAgency
from exchange.tools.replay import replay
from exchange.tools.verify import verify

AGENCY = "91310000MB2F31887X"


@pytest.fixture
def url(mariadb, request):
    """A fresh database of the session's server for one test."""
    return mariadb.url(mariadb.create_database(f"t_{uuid.uuid4().hex[:12]}"))


def rows(url: str, table: str) -> list[dict]:
    reader = adapters.open_reader(url)
    try:
        return list(reader.rows(table))
    finally:
        reader.close()


# -- replay ------------------------------------------------------------------------

def test_a_sqlite_agency_replayed_into_mariadb_verifies_equal_through_schema_changes(tmp_path, url):
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=30, legal_persons=12, licences=20)
    source = SQLiteSource(f"sqlite:///{agency.path}", TABLES)
    source.prepare()
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    agency.run(150)
    capture_all(AGENCY, source, store_url, batch_size=100)
    with sqlite3.connect(agency.path) as db:
        db.execute("ALTER TABLE persons RENAME COLUMN phone TO mobile")
        db.execute("ALTER TABLE legal_persons ADD COLUMN remark TEXT")
        db.execute("UPDATE legal_persons SET remark = '备注 🐉' WHERE rowid % 3 = 0")
        db.execute("UPDATE persons SET mobile = '13800000000' WHERE rowid % 4 = 0")
        db.execute("DELETE FROM licences WHERE rowid % 5 = 0")
    capture_all(AGENCY, source, store_url, batch_size=100)
    source.close()
    sqlite_url = f"sqlite:///{agency.path}"

    summary = replay(store_url, AGENCY, url, progress=False)
    again = replay(store_url, AGENCY, url, progress=False)  # resumes at its checkpoint: nothing left
    report = verify(sqlite_url, url)

    assert report.equal and not any(t.differences for t in report.tables), report.render()
    assert summary["schema_changes"] >= 5 and again["events"] == 0
    assert [t.table for t in report.tables] == sorted(TABLES)
    reader = MySQLReader(url)
    try:
        assert "mobile" in reader.table_schema("persons").column_names
        assert reader.table_schema("licences").columns[-1] == Column("seal", "longblob")
        assert reader.table_schema("persons").columns[0] == Column("id_number", "varchar(768)", True)
    finally:
        reader.close()


def test_values_of_every_type_round_trip_exactly(url):
    schema = TableSchema("kinds", (
        Column("id", "bigint", True), Column("name", "text"), Column("big", "bigint(20) unsigned"),
        Column("wide", "numeric(30,0)"), Column("amount", "numeric(14,2)"), Column("any", "numeric"),
        Column("ratio", "double precision"), Column("flag", "boolean"), Column("day", "date"),
        Column("at", "timestamp with time zone"), Column("clock", "time without time zone"),
        Column("scan", "bytea"), Column("doc", "jsonb"), Column("tags", "text[]"), Column("ref", "uuid")), ("id",))
    row = {"id": 1, "name": "张三 🐉 'x' \\ \"y\"", "big": 2**64 - 1, "wide": Decimal(10**29 + 7),
           "amount": Decimal("-1234567890.12"), "any": Decimal("1.5"), "ratio": 0.1 + 0.2, "flag": True,
           "day": date(2024, 2, 29), "at": datetime(2024, 1, 2, 11, 4, 5, 123456, tzinfo=timezone(timedelta(hours=8))),
           "clock": time(23, 59, 59, 999999), "scan": bytes(range(256)), "doc": '{"b": [1, 2], "a": "京"}',
           "tags": ["a", "京"], "ref": uuid.UUID(int=7)}
    target, reader = MySQLTarget(url), MySQLReader(url)
    try:
        target.apply_schema(schema)
        target.apply([RowOp("kinds", ch.INSERT, {"id": 1}, row)])
        assert alter_sql(reader.table_schema("kinds"), schema, None) is None  # applied again: nothing to do
    finally:
        target.close()
        reader.close()

    [back] = rows(url, "kinds")

    assert back == {**row, "at": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
                    "any": Decimal("1.5" + "0" * 29), "tags": '["a", "京"]', "ref": str(uuid.UUID(int=7))}
    assert type(back["big"]) is int and type(back["flag"]) is bool and back["ratio"] == 0.30000000000000004


def test_renames_are_applied_once_and_a_dropped_table_takes_its_checkpoint(url):
    schema = TableSchema("cases", (Column("no", "INTEGER", True), Column("a", "TEXT"), Column("b", "TEXT"),
                                   Column("old", "TEXT")), ("no",))
    swapped = TableSchema("cases", (Column("no", "INTEGER", True), Column("b", "TEXT"), Column("a", "TEXT"),
                                    Column("new", "REAL")), ("no",))
    target = MySQLTarget(url)
    try:
        target.apply_schema(schema)
        target.apply([RowOp("cases", ch.INSERT, {"no": 1}, {"no": 1, "a": "x", "b": "y", "old": "z"})],
                     checkpoint=("replay:A:*", 3))
        target.apply_schema(swapped, {"a": "b", "b": "a"})
        target.apply_schema(swapped, {"a": "b", "b": "a"})
        assert rows(url, "cases") == [{"no": 1, "b": "x", "a": "y", "new": None}]

        target.drop_table("cases", checkpoint="replay:A:*")
        target.drop_table("cases", checkpoint="replay:A:*")
        assert MySQLReader(url).tables() == [] and target.checkpoint("replay:A:*") is None
    finally:
        target.close()


# -- verify across kinds -----------------------------------------------------------

MARIADB_TABLE = """CREATE TABLE people (id int PRIMARY KEY, name varchar(50), amount decimal(14,2), ratio double,
    active boolean, born date, seen datetime(6), doc json, photo longblob, big bigint unsigned)"""
POSTGRES_TABLE = """CREATE TABLE people (id integer PRIMARY KEY, name text, amount numeric(14,2),
    ratio double precision, active boolean, born date, seen timestamp with time zone, doc jsonb, photo bytea,
    big numeric(20,0))"""
PEOPLE = [(1, "张三 🐉", Decimal("10.50"), 0.1 + 0.2, True, date(1990, 5, 17), datetime(2024, 1, 2, 3, 4, 5, 6),
           '{"b": [1, 2], "a": "京"}', b"\x00\xff", 2**64 - 1),
          (2, "Ab", Decimal("-3.00"), 1e-300, False, None, None, None, None, 0),
          (3, None, None, None, None, None, None, None, None, None)]


CODES = ["b", "C", "a", "沪", "Z", "京", "ü", "e"]  # sorted by a case-insensitive collation, not by code point


def test_a_mariadb_source_verifies_equal_to_a_postgresql_copy_and_a_difference_is_named(mariadb, postgres, url):
    database = url.rpartition("/")[2]
    mariadb.execute(MARIADB_TABLE, dbname=database)
    conn = mariadb.connect(database)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", PEOPLE)
        cur.execute("CREATE TABLE codes (code varchar(20) PRIMARY KEY, n int)")  # the database's _ci collation
        cur.executemany("INSERT INTO codes VALUES (%s, %s)", [(c, i) for i, c in enumerate(CODES)])
    conn.close()
    copy = postgres.create_database(f"people_{uuid.uuid4().hex[:8]}")
    pg = postgres.connect(copy)
    with pg.cursor() as cur:
        cur.execute(POSTGRES_TABLE)
        for person in PEOPLE:
            seen = person[6] and person[6].replace(tzinfo=timezone.utc)
            cur.execute("INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (*person[:6], seen, *person[7:]))
        cur.execute("CREATE TABLE codes (code text PRIMARY KEY, n integer)")
        cur.executemany("INSERT INTO codes VALUES (%s, %s)", [(c, i) for i, c in enumerate(CODES)])
    pg.commit()

    equal = verify(url, postgres.url(copy))
    with pg.cursor() as cur:
        cur.execute("UPDATE people SET amount = 10.51 WHERE id = 1")
    pg.commit()
    pg.close()
    different = verify(url, postgres.url(copy))

    assert equal.equal, equal.render()
    assert [t.source.rows for t in equal.tables] == [len(CODES), len(PEOPLE)]
    assert [t.differences for t in equal.tables] == [[], []]  # both streamed in the same (code point) order
    assert verify(url, url).equal  # two streams of one database at once
    assert [t.equal for t in different.tables] == [True, False]
    assert [(d.key, d.reason) for d in different.tables[1].differences] == [({"id": 1}, "values differ: amount")]


def test_mariadb_replayed_from_postgresql_types_verifies_equal_to_sqlite_and_postgresql(tmp_path, url, postgres):
    """The same rows applied to all three kinds through their targets read as equal."""
    schema = TableSchema("cases", (Column("region", "text", True), Column("no", "bigint", True),
                                   Column("opened", "timestamp with time zone"), Column("fee", "numeric(8,2)"),
                                   Column("flag", "boolean"), Column("tags", "text[]")), ("region", "no"))
    data = [{"region": r, "no": n, "opened": datetime(2024, 5, n, tzinfo=timezone.utc), "fee": Decimal(f"{n}.25"),
             "flag": n % 2 == 0, "tags": ["x", r]} for r in ("沪", "B", "a", "b ") for n in (1, 2, 10)]
    copy = postgres.create_database(f"cases_{uuid.uuid4().hex[:8]}")
    urls = [url, postgres.url(copy)]
    for where in urls:
        target = adapters.open_target(where)
        try:
            target.apply_schema(schema)
            target.apply([RowOp("cases", ch.INSERT, {"region": d["region"], "no": d["no"]}, d) for d in data])
        finally:
            target.close()

    report = verify(*urls)

    assert report.equal and not report.tables[0].differences, report.render()
    assert [(r["region"], r["no"]) for r in rows(url, "cases")][:4] == [("B", 1), ("B", 2), ("B", 10), ("a", 1)]


# -- consumer replica -----------------------------------------------------------------

def _event(kind, key, version, **fields):
    return record_event(kind, "PROVIDER", key, version, **fields)


def test_a_consumer_replica_on_mariadb_applies_batches_with_their_checkpoint_and_withdraws(url):
    schema = {"name": "licences", "primary_key": ["id"],
              "columns": [{"name": "id", "type": "INTEGER", "notnull": True, "default": None},
                          {"name": "kind", "type": "TEXT", "notnull": False, "default": None}]}
    replica = Replica(url)
    try:
        assert (replica.position("P", "licences"), replica.items("P", "licences")) == (0, None)
        replica.set_items("P", "licences", ["kind"])
        events = [(3, _event(SchemaChanged, "__schema__", 1, table=schema)),
                  (5, _event(RecordCreated, 1, 1, row={"id": 1, "kind": "食品"})),
                  (8, _event(RecordCreated, 2, 1, row={"id": 2, "kind": "drugs"}))]
        assert replica.apply("P", "licences", events, 0, 10) == 3
        assert replica.apply("P", "licences", [(12, _event(RecordUpdated, 1, 2, changed={"kind": "面包"})),
                                               (13, _event(RecordDeleted, 2, 2))], 10, 15) == 2
        assert (replica.position("P", "licences"), replica.items("P", "licences")) == (15, ["kind"])
        assert rows(url, "licences") == [{"id": 1, "kind": "面包"}]

        replica.withdraw("P", "licences")

        assert (replica.position("P", "licences"), replica.items("P", "licences")) == (0, None)
        assert MySQLReader(url).tables() == []
    finally:
        replica.close()


def test_a_drop_interrupted_after_its_checkpoint_went_is_finished_on_open(mariadb, url):
    target = MySQLTarget(url)
    target.apply_schema(TableSchema("cases", (Column("no", "INTEGER", True),), ("no",)))
    target.close()
    mariadb.execute("INSERT INTO _exchange_drops VALUES ('cases')", dbname=url.rpartition("/")[2])

    reopened = MySQLTarget(url)
    reopened.close()

    assert MySQLReader(url).tables() == []


# -- bad input ------------------------------------------------------------------------

def test_a_server_that_is_down_is_named_by_host_and_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"mysql://root:secret@127.0.0.1:{port}/agency"
    with pytest.raises(DatabaseUnavailable, match=f"127.0.0.1:{port}"):
        MySQLTarget(down)
    done = subprocess.run([sys.executable, "-m", "exchange", "verify", "--source", down,
                           "--target", f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"127.0.0.1:{port}" in done.stderr and "secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_names_mariadb_cannot_hold_are_refused_by_name(url):
    target = MySQLTarget(url)
    try:
        with pytest.raises(InvalidInput, match="'x{65}'.*longer than 64"):
            target.apply_schema(TableSchema("x" * 65, (Column("no", "INTEGER"),), ()))
        with pytest.raises(InvalidInput, match="basic plane"):
            target.apply_schema(TableSchema("t", (Column("🐉", "INTEGER"),), ()))
        with pytest.raises(ApplyError, match="'t'.*Data too long for column 'region'"):
            target.apply_schema(TableSchema("t", (Column("region", "TEXT", True),), ("region",)))
            target.apply([RowOp("t", ch.INSERT, {}, {"region": "x" * 769})])
    finally:
        target.close()


TABLE = "cases `100%`"  # backticks and % signs in names too


@pytest.mark.parametrize("statement_bytes", [joined.MAX_STATEMENT, 200])
def test_runs_of_updates_and_deletes_change_exactly_their_rows(url, monkeypatch, statement_bytes):
    monkeypatch.setattr(joined, "MAX_STATEMENT", statement_bytes)  # 200: a statement a row or two
    schema = TableSchema(TABLE, (Column("region", "text", True), Column("no", "bigint", True),
                                   Column("note %", "text"), Column("at", "timestamp with time zone"),
                                   Column("scan", "bytea")), ("region", "no"))
    regions = ["a", "A", "a ", "100%", "it's", "京"]
    keys = [{"region": r, "no": n} for r in regions for n in (1, 2)]
    at = datetime(2024, 3, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    target = MySQLTarget(url)
    try:
        target.apply_schema(schema)
        target.apply([RowOp(TABLE, ch.INSERT, k, {**k, "note %": "old", "at": None, "scan": None}) for k in keys])
        target.apply([RowOp(TABLE, ch.DELETE, k) for k in keys if k["no"] == 2] +
                     [RowOp(TABLE, ch.UPDATE, k, {"note %": f"{k['region']}% 🐉", "at": at, "scan": b"\0%'"})
                      for k in keys if k["no"] == 1 and k["region"] != "A"], checkpoint=("replay", 2))
    finally:
        target.close()

    got = {(r["region"], r["no"]): (r["note %"], r["at"], r["scan"]) for r in rows(url, TABLE)}

    changed = (datetime(2024, 3, 1, 0, tzinfo=timezone.utc), b"\0%'")
    assert got == {(r, 1): (f"{r}% 🐉", *changed) if r != "A" else ("old", None, None) for r in regions}
