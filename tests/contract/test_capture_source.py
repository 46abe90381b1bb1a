"""The CaptureSource contract: what every capture adapter promises the node.

Bound to every backend that captures (backends.py); the node relies on
these alone: a snapshot of the rows present at start, then the committed
changes in order with strictly increasing positions, resumable after any
position it stored, and clear SourceNotReady errors.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from backends import VALUES, Backend
from suites import Contract, suites

from exchange.contracts import changes as ch
from exchange.contracts.changes import CaptureSource, SourceNotReady

PEOPLE = (("id", "integer"), ("name", "text"), ("score", "integer"))
ROWS = [{"id": i, "name": name, "score": 10 * i} for i, name in ((1, "张三"), (2, "李四"), (3, "Ann 🙂"))]


def drain(source: CaptureSource, after: int = 0) -> list[ch.Change]:
    """Read until a read returns nothing: every change committed so far after ``after``."""
    found: list[ch.Change] = []
    while batch := source.read(after, 100):
        found += batch
        after = batch[-1].position
    return found


def row_changes(changes: list[ch.Change]) -> list[ch.Change]:
    return [c for c in changes if c.op != ch.SCHEMA]


def increasing(changes: list[ch.Change]) -> bool:
    return all(a.position < b.position for a, b in zip(changes, changes[1:]))


def changed_columns(change: ch.Change) -> set[str]:
    """The columns an update reports as changed, as the node reads them."""
    return {k for k, v in change.after.items() if k not in change.before or change.before[k] != v}


def fold(changes: list[ch.Change], key: tuple[str, ...], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows a consumer holds after ``changes``, in key order, with every column of ``columns``
    (an update may carry only some columns; a column added later reads as NULL)."""
    held: dict[tuple, dict[str, Any]] = {}
    for c in row_changes(changes):
        old = None if c.before is None else tuple(c.before[k] for k in key)
        new = None if c.after is None else tuple(c.after[k] for k in key)
        if old is not None and old != new:  # a delete, or an update of the key
            held.pop(old, None)
        if new is not None:
            held[new] = {**held.get(new, {}), **c.after}
    return [{name: row.get(name) for name in columns} for _, row in sorted(held.items())]


class CaptureSourceContract(Contract):
    """Every capture source passes these; ``backend`` is the database it captures."""

    def people(self, backend: Backend, *rows: dict[str, Any]) -> CaptureSource:
        """Table ``people`` holding ``rows``, and a prepared source capturing it."""
        backend.create_table("people", PEOPLE, key=["id"])
        if rows:
            backend.insert("people", *rows)
        source = backend.source(["people"])
        source.prepare()
        return source

    # -- snapshot and row changes -------------------------------------------------

    def test_rows_present_at_start_arrive_after_the_schema(self, backend):
        source = self.people(backend, *ROWS)

        schema, *rows = changes = drain(source)

        assert (schema.op, schema.table) == (ch.SCHEMA, "people")
        assert schema.schema.column_names == ("id", "name", "score") and schema.schema.primary_key == ("id",)
        assert source.schemas()["people"] == schema.schema
        expected = ch.SNAPSHOT if backend.snapshot else ch.INSERT
        assert [(c.op, c.table, c.before, c.after) for c in rows] == [(expected, "people", None, r) for r in ROWS]
        assert increasing(changes)

    def test_committed_changes_arrive_in_commit_order(self, backend):
        source = self.people(backend)
        start = drain(source)
        after = start[-1].position if start else 0
        backend.insert("people", ROWS[0])
        backend.insert("people", ROWS[1])
        backend.update("people", {"id": 1}, {"name": "王五"})
        backend.delete("people", {"id": 2})
        assert source.pending(after) > 0

        changes = drain(source, after)

        insert, second, update, delete = rows = row_changes(changes)
        assert [c.op for c in rows] == [ch.INSERT, ch.INSERT, ch.UPDATE, ch.DELETE]
        assert all(c.position > after for c in changes) and increasing(changes)
        assert (insert.before, insert.after) == (None, ROWS[0])
        assert second.after == ROWS[1]
        assert update.before["id"] == 1 and update.after["id"] == 1
        assert update.after.items() <= {**ROWS[0], "name": "王五"}.items()
        assert "name" in changed_columns(update) and "id" not in changed_columns(update)
        assert delete.before["id"] == 2 and delete.after is None
        assert all(c.commit_time is not None and c.commit_time.tzinfo is not None for c in changes)

    def test_only_committed_changes_of_the_configured_tables_arrive(self, backend):
        backend.create_table("other", PEOPLE, key=["id"])
        source = self.people(backend)
        start = drain(source)
        backend.abandon("people", ROWS[0])
        backend.insert("other", ROWS[0])
        backend.insert("people", ROWS[1])

        changes = drain(source, start[-1].position if start else 0)

        assert {c.table for c in changes} == {"people"}
        assert [(c.op, c.after) for c in row_changes(changes)] == [(ch.INSERT, ROWS[1])]

    def test_a_changed_key_moves_the_row(self, backend):
        source = self.people(backend, ROWS[0])
        start = drain(source)
        backend.update("people", {"id": 1}, {"id": 10})

        changes = drain(source, start[-1].position)

        assert fold(start + changes, ("id",), ("id", "name", "score")) == [{**ROWS[0], "id": 10}]
        assert any(c.before and c.before["id"] == 1 for c in changes)

    def test_names_that_need_quoting_are_captured(self, backend):
        table = '案件 "Cases"'
        backend.create_table(table, (("Id", "integer"), ("名称 x", "text")), key=["Id"])
        backend.insert(table, {"Id": 1, "名称 x": "a"})
        source = backend.source([table])
        source.prepare()
        start = drain(source)
        backend.update(table, {"Id": 1}, {"名称 x": "b"})

        changes = drain(source, start[-1].position)

        assert start[0].schema.column_names == ("Id", "名称 x") and start[0].schema.primary_key == ("Id",)
        assert {c.table for c in start + changes} == {table}
        assert fold(start + changes, ("Id",), ("Id", "名称 x")) == [{"Id": 1, "名称 x": "b"}]

    @pytest.mark.parametrize("logical", list(VALUES))
    def test_values_arrive_as_the_table_holds_them(self, backend, logical):
        if logical not in backend.native:
            pytest.skip(f"{backend.name} holds {logical} values in a type of its own")
        backend.create_table("kinds", (("id", "integer"), ("value", logical), ("nothing", logical)), key=["id"])
        backend.insert("kinds", {"id": 1, "value": VALUES[logical], "nothing": None})
        source = backend.source(["kinds"])
        source.prepare()
        start = drain(source)
        backend.insert("kinds", {"id": 2, "value": VALUES[logical], "nothing": None})

        images = [c.after for c in row_changes(start + drain(source, start[-1].position))]

        assert images == backend.rows("kinds") == [{"id": i, "value": VALUES[logical], "nothing": None}
                                                   for i in (1, 2)]
        assert all(type(image["value"]) is type(VALUES[logical]) for image in images)

    # -- snapshot -------------------------------------------------------------------

    def chunked(self, backend: Backend) -> CaptureSource:
        """Eight rows in ``people`` and a prepared source that snapshots them two at a time."""
        if not backend.snapshot:
            pytest.skip(f"{backend.name} has no snapshot: the first rows arrive as inserts")
        backend.create_table("people", PEOPLE, key=["id"])
        backend.insert("people", *({"id": i, "name": f"p{i}", "score": i} for i in range(1, 9)))
        source = backend.source(["people"], **backend.chunked)
        source.prepare()
        return source

    def test_changes_while_the_snapshot_is_read_leave_no_gap_and_no_duplicate(self, backend):
        source = self.chunked(backend)
        first = source.read(0, 3)
        assert 0 < len(row_changes(first)) < 8
        backend.update("people", {"id": 1}, {"name": "early"})  # already read
        backend.update("people", {"id": 7}, {"name": "late"})  # not read yet
        backend.delete("people", {"id": 2})
        backend.delete("people", {"id": 8})
        backend.insert("people", {"id": 100, "name": "new", "score": 0})

        changes = first + drain(source, first[-1].position)

        snapshot = [c.after["id"] for c in changes if c.op == ch.SNAPSHOT]
        assert len(snapshot) == len(set(snapshot)) and snapshot == sorted(snapshot)
        assert increasing(changes)
        assert fold(changes, ("id",), ("id", "name", "score")) == backend.rows("people")

    def test_an_interrupted_snapshot_resumes_after_the_stored_position(self, backend):
        source = self.chunked(backend)
        stored = source.read(0, 3)
        stored += source.read(stored[-1].position, 2)
        source.read(stored[-1].position, 2)  # read, but the node stopped before storing it
        source.close()
        backend.update("people", {"id": 1}, {"name": "changed"})
        backend.delete("people", {"id": 7})

        reopened = backend.source(["people"], **backend.chunked)
        reopened.prepare()
        changes = stored + drain(reopened, stored[-1].position)

        snapshot = [c.after["id"] for c in changes if c.op == ch.SNAPSHOT]
        assert len(snapshot) == len(set(snapshot)) and set(snapshot) >= {1, 2, 3, 4, 5, 6, 8}
        assert [c.op for c in changes].count(ch.SCHEMA) == 1 and increasing(changes)
        assert fold(changes, ("id",), ("id", "name", "score")) == backend.rows("people")

    # -- positions ----------------------------------------------------------------

    def test_reading_again_after_a_position_gives_the_same_changes(self, backend):
        source = self.people(backend)
        start = drain(source)
        after = start[-1].position if start else 0
        for row in ROWS:
            backend.insert("people", row)

        first = source.read(after, 100)
        again = source.read(after, 100)  # the node failed to store ``first`` and reads it again

        assert first and again[:len(first)] == first

    def test_a_reopened_source_resumes_after_the_stored_position(self, backend):
        source = self.people(backend)
        start = drain(source)
        after = start[-1].position if start else 0
        for i in range(1, 5):
            backend.insert("people", {"id": i, "name": f"p{i}", "score": i})
        stored = source.read(after, 2)
        source.acknowledge(stored[-1].position)
        unstored = source.read(stored[-1].position, 100)  # read, but the node stopped before storing it
        source.close()
        backend.insert("people", {"id": 5, "name": "p5", "score": 5})

        reopened = backend.source(["people"])
        reopened.prepare()
        rest = drain(reopened, stored[-1].position)

        assert [c.after["id"] for c in row_changes(stored + rest)] == [1, 2, 3, 4, 5]
        assert increasing(stored + rest)
        assert [c.position for c in rest[:len(unstored)]] == [c.position for c in unstored]

    # -- prepare ------------------------------------------------------------------

    def test_prepare_is_idempotent(self, backend):
        source = self.people(backend, *ROWS[:2])
        source.prepare()
        backend.source(["people"]).prepare()

        changes = drain(source)

        assert [c.op for c in changes].count(ch.SCHEMA) == 1
        assert [c.after["id"] for c in row_changes(changes)] == [1, 2]

    def test_a_missing_source_is_not_ready(self, backend):
        url, name = backend.missing_source()
        with pytest.raises(SourceNotReady, match=re.escape(name)):
            backend.source(["people"], {"people": ["id"]}, url=url).prepare()

    def test_a_missing_table_is_not_ready_and_the_tables_are_named(self, backend):
        if not backend.catalog:
            pytest.skip(f"{backend.name} tables come into being with their first rows")
        backend.create_table("people", PEOPLE, key=["id"])
        with pytest.raises(SourceNotReady, match=r"'orders'.*people"):
            backend.source(["people", "orders"]).prepare()

    def test_a_source_never_prepared_is_not_ready(self, backend):
        backend.create_table("people", PEOPLE, key=["id"])
        with pytest.raises(SourceNotReady, match="capture is not set up"):
            backend.source(["people"]).pending(0)

    # -- keys -----------------------------------------------------------------------

    def test_a_table_without_key_is_refused_saying_how_to_configure_one(self, backend):
        backend.create_table("visits", (("person", "integer"), ("day", "text"), ("note", "text")))
        with pytest.raises(SourceNotReady, match=r"'visits'.*keys"):
            backend.source(["visits"]).prepare()

    def test_a_configured_key_stands_in_for_a_primary_key(self, backend):
        backend.create_table("visits", (("person", "integer"), ("day", "text"), ("note", "text")),
                             unique=["person", "day"])
        backend.insert("visits", {"person": 1, "day": "2024-01-02", "note": "a"})
        backend.insert("visits", {"person": 1, "day": "2024-01-03", "note": "stays"})  # (an emptied table truncates)
        source = backend.source(["visits"], {"visits": ["person", "day"]})
        source.prepare()
        assert source.schemas()["visits"].primary_key == ("person", "day")
        snapshot = drain(source)
        backend.update("visits", {"person": 1, "day": "2024-01-02"}, {"note": "b"})
        backend.delete("visits", {"person": 1, "day": "2024-01-02"})

        update, delete = row_changes(drain(source, snapshot[-1].position))

        assert snapshot[0].schema.primary_key == ("person", "day")
        assert sorted((c.after for c in row_changes(snapshot)), key=lambda r: r["day"]) == [
            {"person": 1, "day": "2024-01-02", "note": "a"}, {"person": 1, "day": "2024-01-03", "note": "stays"}]
        assert update.op == ch.UPDATE and update.after["note"] == "b"
        assert {k: update.before[k] for k in ("person", "day")} == {"person": 1, "day": "2024-01-02"}
        assert delete.op == ch.DELETE and {k: delete.before[k] for k in ("person", "day")} == {
            "person": 1, "day": "2024-01-02"}

    # -- schema changes -------------------------------------------------------------

    def test_an_added_column_is_reported_before_the_rows_that_carry_it(self, backend):
        source = self.people(backend, ROWS[0])
        first = drain(source)
        backend.add_column("people", "district", "text")
        backend.insert("people", {**ROWS[1], "district": "西城"})

        changes = drain(source, first[-1].position)

        schemas = [c for c in changes if c.op == ch.SCHEMA and "district" in c.schema.column_names]
        assert schemas and schemas[-1].schema.column_names == ("id", "name", "score", "district")
        assert all(c.position > schemas[0].position for c in changes if c.after and "district" in c.after)
        assert source.schemas()["people"] == schemas[-1].schema
        assert fold(first + changes, ("id",), schemas[-1].schema.column_names) == backend.rows("people")


globals().update(suites(CaptureSourceContract, "capture"))
