"""DDL statements of the binlog as capture reads them (adapters/mysql/ddl.py), and binlog positions."""

from __future__ import annotations

import pytest

from adapters.mysql.ddl import Ddl, interpret
from adapters.mysql.position import UnsupportedChange, coordinate, pack, split, unpack


@pytest.mark.parametrize(("statement", "expected"), [
    ("ALTER TABLE `people` RENAME COLUMN name TO full_name", [("alter", "people", {"name": "full_name"})]),
    ("alter table app.people change `a` b varchar(10) not null, add c int", [("alter", "people", {"a": "b"})]),
    ("TRUNCATE people", [("truncate", "people", {})]),
    ("DROP TABLE IF EXISTS people, other.x, `案件`", [("drop", "people", {}), ("drop", "案件", {})]),
    ("CREATE TABLE IF NOT EXISTS new_cases LIKE people", [("create", "new_cases", {})]),
    ("GRANT SELECT ON app.* TO 'x'@'%'", []),
    ("CREATE USER people", []),
])
def test_statements_say_what_they_do_to_the_database_tables(statement, expected):
    assert [(d.kind, d.table, d.renames) for d in interpret(statement, "app", "app")] == expected


def test_renamed_tables_and_tables_moved_between_databases():
    found = interpret("RENAME TABLE people TO persons, other.a TO app.b, app.c TO other.d", "app", "app")
    assert [(d.kind, d.table, d.new) for d in found] == [("rename", "people", "persons"), ("create", "b", ""),
                                                         ("drop", "c", "")]


def test_the_columns_an_alter_leaves_are_derived_from_the_statement():
    ddl, = interpret("ALTER TABLE p ADD COLUMN z int FIRST, CHANGE a b text, DROP COLUMN c, ADD d int AFTER b",
                     "app", "app")
    assert ddl.columns(["id", "a", "c"]) == ["z", "id", "b", "d"]
    assert ddl.added_type("z") == "int" and ddl.added_type("b") == "text"
    assert Ddl("alter", "p", steps=(("drop", "gone"),)).columns(["id"]) is None  # not what the schema holds


def test_a_statement_that_cannot_be_parsed_names_every_word_it_could_touch():
    found = interpret("ALTER TABLE people CONVERT TO CHARACTER SET latin1", "app", "app")
    assert {d.kind for d in found} == {"unknown"} and "people" in {d.table for d in found}


def test_positions_order_binlog_coordinates_across_files():
    first, later, next_file = coordinate("binlog.000007", 4_000_000), coordinate("binlog.000007", 4_000_100), \
        coordinate("binlog.000008", 4)
    assert pack(first, 5) < pack(later) < pack(next_file) and unpack(pack(later, 900)) == later
    assert split(next_file) == (8, 4)
    with pytest.raises(UnsupportedChange, match="does not end in a number"):
        coordinate("binlog", 4)
