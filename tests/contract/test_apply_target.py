"""The ApplyTarget contract: what every apply target promises replay and consumer replicas.

Bound to every backend that applies (backends.py): tables made from a
TableSchema and altered to a changed one, row operations applied in order
in one transaction together with a checkpoint that outlives the target
object, and values that come back as they went in.
"""

from __future__ import annotations

import pytest
from backends import BACKENDS, VALUES, Backend
from suites import Contract, suites

from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, RowOp, TableSchema

KEY = {"region": "京", "no": 1}
ROW = {**KEY, "title": "a", "status": "open"}


class ApplyTargetContract(Contract):
    """Every apply target passes these; ``backend`` is the database it writes."""

    def cases(self, backend: Backend) -> TableSchema:
        return TableSchema("cases", (backend.column("region", "text", True), backend.column("no", "integer", True),
                                     backend.column("title", "text"),
                                     backend.column("status", "text", True, "'open'")), ("region", "no"))

    def test_creates_the_table_a_schema_describes(self, backend):
        schema = self.cases(backend)
        target = backend.target()
        target.apply_schema(schema)
        target.apply_schema(schema)

        reader = backend.reader()
        created = reader.table_schema("cases")

        assert reader.tables() == ["cases"]
        assert created.column_names == schema.column_names and created.primary_key == schema.primary_key
        assert [c.notnull for c in created.columns] == [True, True, False, True]

    def test_applies_row_operations_in_order(self, backend):
        target = backend.target()
        target.apply_schema(self.cases(backend))
        target.apply([
            RowOp("cases", ch.INSERT, KEY, ROW),
            RowOp("cases", ch.INSERT, {**KEY, "no": 2}, {**ROW, "no": 2}),
            RowOp("cases", ch.INSERT, {**KEY, "region": "沪"}, {**ROW, "region": "沪"}),
            RowOp("cases", ch.UPDATE, KEY, {"title": "b"}),
            RowOp("cases", ch.UPDATE, KEY, {"status": "closed", "title": "c"}),
            RowOp("cases", ch.DELETE, {**KEY, "no": 2}),
            RowOp("cases", ch.INSERT, {**KEY, "no": 2}, {**ROW, "no": 2, "title": "again"}),
        ], checkpoint=("replay", 7))
        target.apply([])

        assert list(backend.reader().rows("cases")) == [
            {"region": "京", "no": 1, "title": "c", "status": "closed"},
            {"region": "京", "no": 2, "title": "again", "status": "open"},
            {"region": "沪", "no": 1, "title": "a", "status": "open"},
        ]
        assert target.checkpoint("replay") == 7

    def test_checkpoints_are_kept_by_name_and_outlive_the_target(self, backend):
        target = backend.target()
        assert target.checkpoint("replay") is None
        target.apply_schema(self.cases(backend))
        target.apply([], checkpoint=("replay", 5))
        target.apply([RowOp("cases", ch.INSERT, KEY, ROW)], checkpoint=("consumer:a", 9))
        target.apply([], checkpoint=("replay", 6))
        target.close()

        reopened = backend.target()

        assert (reopened.checkpoint("replay"), reopened.checkpoint("consumer:a")) == (6, 9)
        assert reopened.checkpoint("other") is None
        assert list(backend.reader().rows("cases")) == [ROW]

    def test_a_failing_batch_leaves_rows_and_checkpoint_as_they_were(self, backend):
        target = backend.target()
        target.apply_schema(self.cases(backend))
        target.apply([RowOp("cases", ch.INSERT, KEY, ROW)], checkpoint=("replay", 1))
        second = {**ROW, "no": 2}
        with pytest.raises(backend.integrity_error):
            target.apply([RowOp("cases", ch.INSERT, {}, second), RowOp("cases", ch.INSERT, {}, second)],
                          checkpoint=("replay", 2))

        assert list(backend.reader().rows("cases")) == [ROW]
        assert target.checkpoint("replay") == 1
        target.apply([RowOp("cases", ch.INSERT, {}, second)], checkpoint=("replay", 2))  # still usable
        assert target.checkpoint("replay") == 2

    def test_an_added_column_is_applied_to_the_rows_held(self, backend):
        schema = self.cases(backend)
        target = backend.target()
        target.apply_schema(schema)
        target.apply([RowOp("cases", ch.INSERT, KEY, ROW)])
        added = TableSchema("cases", (*schema.columns, backend.column("level", "integer", True, "3"),
                                      backend.column("note", "text")), schema.primary_key)

        target.apply_schema(added)
        target.apply([RowOp("cases", ch.INSERT, {**KEY, "no": 2}, {**ROW, "no": 2, "level": 1, "note": "新"})])

        reader = backend.reader()
        assert reader.table_schema("cases").column_names == added.column_names
        assert list(reader.rows("cases")) == [{**ROW, "level": 3, "note": None},
                                              {**ROW, "no": 2, "level": 1, "note": "新"}]

    def test_renamed_columns_keep_their_values_even_when_names_are_swapped(self, backend):
        schema = self.cases(backend)
        target = backend.target()
        target.apply_schema(schema)
        target.apply([RowOp("cases", ch.INSERT, KEY, ROW)])
        title, status = (c for c in schema.columns if c.name in ("title", "status"))
        renamed = TableSchema("cases", (*schema.columns[:2], Column("status", title.type, title.notnull, title.default),
                                        Column("title", status.type, status.notnull, status.default),
                                        backend.column("remark", "text")), schema.primary_key)

        target.apply_schema(renamed, {"title": "status", "status": "title"})
        target.apply_schema(renamed, {"title": "status", "status": "title"})  # applied again: nothing to do

        assert list(backend.reader().rows("cases")) == [{**KEY, "status": "a", "title": "open", "remark": None}]
        swapped_back = TableSchema("cases", (*renamed.columns[:2], *schema.columns[2:], renamed.columns[4]),
                                   schema.primary_key)
        target.apply_schema(swapped_back, {"title": "status", "status": "title"})
        assert list(backend.reader().rows("cases")) == [{**ROW, "remark": None}]

    def test_the_table_is_altered_to_a_schema_without_a_column_and_with_another_key(self, backend):
        schema = self.cases(backend)
        target = backend.target()
        target.apply_schema(schema)
        target.apply([RowOp("cases", ch.INSERT, KEY, ROW), RowOp("cases", ch.INSERT, {}, {**ROW, "no": 2})])
        dropped = TableSchema("cases", tuple(c for c in schema.columns if c.name != "title"), schema.primary_key)
        rekeyed = TableSchema("cases", dropped.columns, ("no",))

        target.apply_schema(dropped)
        target.apply_schema(rekeyed)
        target.apply([RowOp("cases", ch.UPDATE, {"no": 2}, {"status": "closed"})])

        reader = backend.reader()
        assert reader.tables() == ["cases"]
        assert reader.table_schema("cases").column_names == ("region", "no", "status")
        assert reader.table_schema("cases").primary_key == ("no",)
        assert list(reader.rows("cases")) == [{"region": "京", "no": 1, "status": "open"},
                                              {"region": "京", "no": 2, "status": "closed"}]

    @pytest.mark.parametrize("kind", [b for b in BACKENDS if "capture" in b.kinds], ids=lambda b: b.name)
    def test_a_schema_any_kind_of_source_captured_applies(self, backend, kind):
        schema = TableSchema("kinds", (Column("id", kind.types["integer"], True),
                                       *(Column(logical, declared) for logical, declared in kind.types.items())),
                             ("id",))
        target = backend.target()
        target.apply_schema(schema)
        target.apply_schema(schema)

        created = backend.reader().table_schema("kinds")

        assert created.column_names == schema.column_names and created.primary_key == ("id",)

    def test_names_that_need_quoting_are_applied(self, backend):
        table = '案件 "Cases"'
        schema = TableSchema(table, (backend.column("Id", "integer", True), backend.column("名称 x", "text")), ("Id",))
        target = backend.target()
        target.apply_schema(schema)
        target.apply([RowOp(table, ch.INSERT, {"Id": 1}, {"Id": 1, "名称 x": "a"}),
                      RowOp(table, ch.INSERT, {"Id": 2}, {"Id": 2, "名称 x": "b"}),
                      RowOp(table, ch.UPDATE, {"Id": 1}, {"名称 x": "c"}),
                      RowOp(table, ch.DELETE, {"Id": 2})], checkpoint=(table, 1))
        target.apply_schema(TableSchema(table, (*schema.columns, backend.column("Level y", "integer")), ("Id",)))

        reader = backend.reader()
        assert reader.tables() == [table] and target.checkpoint(table) == 1
        assert list(reader.rows(table)) == [{"Id": 1, "名称 x": "c", "Level y": None}]

    @pytest.mark.parametrize("logical", list(VALUES))
    def test_every_value_type_is_applied(self, backend, logical):
        """Values of the kind's own types read back as written (type and all); values that
        another kind's source produces are accepted."""
        target = backend.target()
        target.apply_schema(TableSchema("kinds", (backend.column("id", "integer", True),
                                                  backend.column("value", logical),
                                                  backend.column("nothing", logical)), ("id",)))
        target.apply([RowOp("kinds", ch.INSERT, {"id": 1}, {"id": 1, "value": VALUES[logical], "nothing": None})])

        [row] = backend.reader().rows("kinds")

        assert row["id"] == 1 and row["nothing"] is None
        if logical in backend.native:
            assert type(row["value"]) is type(VALUES[logical]) and row["value"] == VALUES[logical]

    def test_large_runs_of_each_operation_apply_as_single_ones(self, backend):
        """Runs long enough for a target's bulk paths (COPY, joins) give the rows that single
        operations give: every value type, NULLs, text with tabs, newlines and backslashes."""
        logical = list(VALUES)
        target = backend.target()
        target.apply_schema(TableSchema("kinds", (backend.column("id", "integer", True),
                                                  *(backend.column(t, t) for t in logical)), ("id",)))
        rows = {i: {"id": i, **{t: VALUES[t] if (i + n) % 3 else None for n, t in enumerate(logical)}}
                for i in range(1, 1201)}
        target.apply([RowOp("kinds", ch.INSERT, {"id": i}, row) for i, row in rows.items()])
        changed = {"text": "a\tb\nc\\d\re", "integer": None}
        target.apply([RowOp("kinds", ch.UPDATE, {"id": i}, changed) for i in range(1, 1201, 2)] +
                     [RowOp("kinds", ch.DELETE, {"id": i}) for i in range(2, 1201, 2)], checkpoint=("replay", 2))

        expected = {i: {**row, **changed} for i, row in rows.items() if i % 2}
        held = {row["id"]: row for row in backend.reader().rows("kinds")}
        assert held.keys() == expected.keys() and target.checkpoint("replay") == 2
        for i, row in expected.items():
            for t in logical:
                if row[t] is None or t in backend.native:
                    assert held[i][t] == row[t], (i, t)


globals().update(suites(ApplyTargetContract, "apply"))
