"""PostgreSQL capture: tables selected by pattern and exclusion, new tables while capture runs, partitioned tables."""

from __future__ import annotations

import time

import pytest
from test_postgres_adapter import app, drain, fold, people, sources  # noqa: F401  (fixtures)

import adapters
from adapters.selection import matches, select, selected
from exchange.contracts import changes as ch
from exchange.contracts.errors import InvalidInput


def test_patterns_match_schema_and_table_separately():
    assert matches("people", "*") and matches("people", "public.*") and matches("people", "public.people")
    assert not matches("sales.orders", "*") and matches("sales.orders", "*.*")
    assert matches("sales.order_lines", "sales.order_*") and not matches("sales.orders", "sales.order_*")
    assert not matches("Sales.orders", "sales.*")  # identifiers are case-sensitive once created
    assert selected("sales.orders", ["sales.*"], ["*.orders"]) is False
    assert select(["people", "sales.orders", "sales.order_lines"], ["public.people", "sales.*"],
                  ["sales.orders"]) == ["public.people", "sales.order_lines"]  # a literal keeps its spelling


def test_patterns_are_refused_for_sources_that_list_tables_by_name(tmp_path):
    with pytest.raises(InvalidInput, match=r"table patterns \(app\.\*\): only PostgreSQL"):
        adapters.open_source(f"sqlite:///{tmp_path / 'a.db'}", ["app.*"])
    with pytest.raises(InvalidInput, match=r"\[source\] exclude: only PostgreSQL"):
        adapters.open_source(f"sqlite:///{tmp_path / 'a.db'}", ["people"], exclude=["x"])


def read_until(source, done, what: str, timeout: float = 120) -> list[ch.Change]:
    """Changes read from ``source`` until ``done(changes)`` holds (tables appear at the next look for them)."""
    changes: list[ch.Change] = []
    deadline = time.monotonic() + timeout
    while not done(changes):
        assert time.monotonic() < deadline, f"{what} never arrived: {changes}"
        changes += drain(source)
    return changes


def test_a_pattern_captures_a_table_created_while_capture_runs_with_its_first_rows(app, sources):
    people(app, 3)
    app.run("CREATE SCHEMA sales; CREATE TABLE sales.order_lines (id int PRIMARY KEY, qty int); "
            "CREATE TABLE sales.customers (id int PRIMARY KEY); CREATE TABLE audit_trail (id int PRIMARY KEY)")
    source = sources(["public.*", "sales.order_*"], exclude=["audit_*"])
    assert sorted(source.schemas()) == ["people", "sales.order_lines"]
    first = drain(source)
    assert {c.table for c in first} == {"people", "sales.order_lines"}

    # Rows in the very transaction that creates the table, and right after it.
    app.run("BEGIN; CREATE TABLE sales.order_notes (id int PRIMARY KEY, note text); "
            "INSERT INTO sales.order_notes VALUES (1, 'first'); COMMIT")
    app.run("INSERT INTO sales.order_notes VALUES (2, 'second')")
    app.run("CREATE TABLE audit_more (id int PRIMARY KEY); INSERT INTO audit_more VALUES (1)")
    app.run("CREATE TABLE sales.customer_notes (id int PRIMARY KEY); INSERT INTO sales.customer_notes VALUES (1)")
    app.run("INSERT INTO audit_trail VALUES (1); INSERT INTO people VALUES (4, 'p4', 4)")
    changes = read_until(source, lambda found: len(fold([c for c in found if c.table == "sales.order_notes"])) == 2,
                         "the new table's rows")
    app.run("INSERT INTO sales.order_notes VALUES (3, 'third'); UPDATE sales.order_notes SET note = '1st' "
            "WHERE id = 1")
    changes += drain(source)

    notes = [c for c in changes if c.table == "sales.order_notes"]
    assert fold(notes) == {(1,): {"id": 1, "note": "1st"}, (2,): {"id": 2, "note": "second"},
                           (3,): {"id": 3, "note": "third"}}
    arrivals = [c.after["id"] for c in notes if c.op in (ch.SNAPSHOT, ch.INSERT)]
    assert sorted(arrivals) == [1, 2, 3]  # each row once: snapshot or stream, never both
    assert {c.table for c in changes} == {"people", "sales.order_notes"}  # excluded and unmatched: nothing
    assert "sales.order_notes" in source.schemas()


def test_exclude_leaves_out_tables_a_pattern_selects(app, sources):
    people(app, 2)
    app.run("CREATE TABLE scratch_1 (id int PRIMARY KEY); INSERT INTO scratch_1 VALUES (1)")
    app.run("CREATE TABLE visits (person int, day date)")  # no key: a pattern passes over it with a warning
    source = sources(["*"], exclude=["scratch_*"])
    assert sorted(source.schemas()) == ["people"]
    app.run("INSERT INTO scratch_1 VALUES (2); INSERT INTO people VALUES (3, 'p3', 3)")
    assert {c.table for c in drain(source)} == {"people"}


def test_a_partitioned_table_is_captured_through_its_root(app, sources):
    app.run("CREATE TABLE readings (site int, day date, value numeric, PRIMARY KEY (site, day)) "
            "PARTITION BY RANGE (day)")
    app.run("CREATE TABLE readings_2023 PARTITION OF readings FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')")
    app.run("CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    app.run("INSERT INTO readings VALUES (1, '2023-05-01', 1), (1, '2024-05-01', 2)")
    source = sources(["*"])
    assert list(source.schemas()) == ["readings"]  # the partitions are not resources of their own
    changes = drain(source)
    app.run("INSERT INTO readings VALUES (2, '2024-06-01', 3)")
    app.run("UPDATE readings SET value = 10 WHERE site = 1 AND day = '2023-05-01'")
    app.run("UPDATE readings SET day = '2024-07-01' WHERE site = 1 AND day = '2023-05-01'")  # to another partition
    app.run("DELETE FROM readings WHERE site = 1 AND day = '2024-05-01'")
    app.run("CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    app.run("INSERT INTO readings VALUES (3, '2025-01-02', 4)")  # a partition attached while capture runs
    changes += drain(source)

    assert {c.table for c in changes} == {"readings"}
    assert fold(changes, key=("site", "day")) == app.rows("readings")
    assert app.run("SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (source.publication,)) == [(True,)]
