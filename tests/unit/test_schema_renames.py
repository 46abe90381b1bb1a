"""Which columns a schema change renamed: PostgreSQL by column number, SQLite by place."""

from __future__ import annotations

from adapters.postgres.schema_history import number_columns
from adapters.sqlite.source import _renames
from exchange.contracts.changes import Column, TableSchema


def test_columns_are_numbered_as_the_catalog_has_them_now():
    assert number_columns(["id", "v2", "n"], {"id": 1, "v2": 2, "n": 3}, {"id": 1, "val": 2, "n": 3}) == {
        "id": 1, "v2": 2, "n": 3}


def test_a_name_gone_from_the_catalog_keeps_the_number_between_its_neighbours():
    # val was renamed to v2 and back to val before capture read the change naming v2
    assert number_columns(["id", "v2", "n"], {"id": 1, "val": 2, "n": 3}, {"id": 1, "val": 2, "n": 3}) == {
        "id": 1, "v2": 2, "n": 3}


def test_a_name_taken_by_a_later_column_is_not_given_its_number():
    # val (2) was renamed to old_val and a new column val (5) added, after the change being read
    found = number_columns(["id", "val", "n"], {"id": 1, "old_val": 2, "n": 3, "val": 5},
                           {"id": 1, "val": 2, "n": 3})
    assert found == {"id": 1, "val": 2, "n": 3}


def test_a_last_column_not_in_the_catalog_is_not_taken_for_a_dropped_one():
    # b (3) was dropped and c added, and c renamed since: c may be new, so it stays unnumbered
    assert number_columns(["id", "a", "c"], {"id": 1, "a": 2, "c2": 4}, {"id": 1, "a": 2, "b": 3}) == {
        "id": 1, "a": 2}


def _schema(*names: str, types: tuple[str, ...] = ()) -> TableSchema:
    types = types or ("TEXT",) * len(names)
    return TableSchema("t", tuple(Column(n, t) for n, t in zip(names, types)), (names[0],))


def test_sqlite_takes_a_column_whose_name_alone_changed_as_renamed():
    assert _renames(_schema("id", "val", "n"), _schema("id", "v2", "n")) == {"val": "v2"}
    assert _renames(_schema("id", "a", "b"), _schema("id", "b", "a")) == {}  # a swap is not told from a re-read
    assert _renames(_schema("id", "a", "b"), _schema("id", "b")) == {}  # a column dropped
    assert _renames(_schema("id", "a"), _schema("id", "b", types=("TEXT", "INTEGER"))) == {}
