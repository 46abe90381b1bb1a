"""Table-by-table comparison of two SQLite databases."""

from __future__ import annotations

import json
import sqlite3

import pytest

from exchange.tools.verify import verify

PEOPLE = "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, photo BLOB)"
ROWS = [(1, "张三", b"\x01"), (2, "李四", None), (3, "王五", b"\x00\xff")]


def database(path, rows=ROWS, extra_tables=()):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(PEOPLE)
    db.executemany("INSERT INTO people VALUES (?, ?, ?)", rows)
    for sql in extra_tables:
        db.execute(sql)
    return db


@pytest.fixture
def urls(tmp_path):
    return f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"


def test_equal_databases_are_reported_equal(tmp_path, urls):
    database(tmp_path / "source.db", extra_tables=["CREATE TABLE empty (k TEXT PRIMARY KEY)"])
    database(tmp_path / "target.db", extra_tables=["CREATE TABLE empty (k TEXT PRIMARY KEY)"])
    report = verify(*urls)
    assert report.equal
    assert [t.table for t in report.tables] == ["empty", "people"]
    people = report.tables[1]
    assert people.source.rows == people.target.rows == 3 and people.differences == []
    assert "EQUAL" in report.render() and "people  source 3 rows  target 3 rows  OK" in report.render()


def test_checksum_does_not_depend_on_insertion_order(tmp_path, urls):
    database(tmp_path / "source.db")
    database(tmp_path / "target.db", rows=list(reversed(ROWS)))
    report = verify(*urls)
    assert report.equal
    assert report.tables[0].source.checksum == report.tables[0].target.checksum


def test_each_kind_of_difference_is_named_by_key(tmp_path, urls):
    database(tmp_path / "source.db", rows=ROWS + [(4, "赵六", None)])
    target = database(tmp_path / "target.db", rows=ROWS + [(5, "extra", None)])
    target.execute("UPDATE people SET name = '改', photo = x'02' WHERE id = 2")

    report = verify(*urls)

    assert not report.equal
    assert [(d.key, d.reason) for d in report.tables[0].differences] == [
        ({"id": 2}, "values differ: name, photo"),
        ({"id": 4}, "missing in target"),
        ({"id": 5}, "missing in source"),
    ]
    text = report.render()
    assert "DIFFERENT" in text and '{"id":4}: missing in target' in text


def test_a_missing_table_is_a_difference(tmp_path, urls):
    database(tmp_path / "source.db", extra_tables=["CREATE TABLE only_here (k INTEGER PRIMARY KEY)"])
    database(tmp_path / "target.db")
    report = verify(*urls)
    only_here = next(t for t in report.tables if t.table == "only_here")
    assert not report.equal and only_here.target is None and only_here.source.rows == 0
    assert "only_here  source 0 rows  target missing  DIFFERENT" in report.render()


def test_only_the_requested_tables_are_compared(tmp_path, urls):
    database(tmp_path / "source.db", extra_tables=["CREATE TABLE only_here (k INTEGER PRIMARY KEY)"])
    database(tmp_path / "target.db")
    assert verify(*urls, tables=["people"]).equal


def test_differing_columns_make_a_table_different(tmp_path, urls):
    database(tmp_path / "source.db")
    database(tmp_path / "target.db").execute("ALTER TABLE people ADD COLUMN extra TEXT")
    report = verify(*urls)
    assert not report.equal
    assert report.tables[0].target.columns == ["extra", "id", "name", "photo"]
    assert "columns differ" in report.render()


def test_columns_are_compared_by_name_not_position(tmp_path, urls):
    database(tmp_path / "source.db")
    target = sqlite3.connect(tmp_path / "target.db", isolation_level=None)
    target.execute("CREATE TABLE people (photo BLOB, name TEXT, id INTEGER PRIMARY KEY)")
    target.executemany("INSERT INTO people (id, name, photo) VALUES (?, ?, ?)", ROWS)
    report = verify(*urls)
    assert report.equal, report.render()
    assert "columns differ" not in report.render()


def test_tables_without_a_key_are_compared_by_whole_rows(tmp_path, urls):
    for name, rows in (("source.db", [("a",), ("b",), ("c",)]), ("target.db", [("c",), ("a",), ("x",)])):
        db = sqlite3.connect(tmp_path / name, isolation_level=None)
        db.execute("CREATE TABLE tags (v TEXT)")
        db.executemany("INSERT INTO tags VALUES (?)", rows)
    differences = verify(*urls).tables[0].differences
    assert [(d.key, d.reason) for d in differences] == [({"v": "b"}, "missing in target"),
                                                        ({"v": "x"}, "missing in source")]


def test_the_report_is_json_ready(tmp_path, urls):
    database(tmp_path / "source.db")
    database(tmp_path / "target.db", rows=[(1, "张三", b"\x01")])
    report = verify(*urls)
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert data["equal"] is False
    assert data["tables"][0]["differences"][0] == {"key": {"id": 2}, "reason": "missing in target"}


def test_a_table_with_equal_checksums_but_listed_differences_is_not_reported_equal():
    from exchange.tools.verify import Difference, Side, TableResult

    side = Side(2, "0" * 64, ["id", "v"])
    assert TableResult("t", side, side).equal
    assert not TableResult("t", side, side, [Difference({"id": 1}, "missing in target")]).equal
