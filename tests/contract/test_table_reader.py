"""The TableReader contract: what every table reader promises verify.

Bound to every backend that reads (backends.py): the user tables, sorted,
without capture or replay bookkeeping; each table's schema; its rows in key
order (text by code point, as verify merges), as dicts of column -> value in
the table's column order, with the values capture produces.
"""

from __future__ import annotations

import pytest
from backends import VALUES
from suites import Contract, suites

CASES = (("region", "text"), ("no", "integer"), ("title", "text"))


class TableReaderContract(Contract):
    """Every table reader passes these; ``backend`` is the database it reads."""

    def test_lists_the_user_tables_sorted_without_bookkeeping(self, backend):
        backend.create_table("people", (("id", "integer"), ("name", "text")), key=["id"])
        backend.create_table("cases", CASES, key=["region", "no"])
        if "capture" in backend.kinds:
            backend.source(["people"]).prepare()
        if "apply" in backend.kinds:
            backend.target().apply([], checkpoint=("replay", 1))

        assert backend.reader().tables() == ["cases", "people"]

    def test_describes_a_table(self, backend):
        backend.create_table("cases", CASES, key=["region", "no"])

        schema = backend.reader().table_schema("cases")

        assert schema.name == "cases" and schema.column_names == ("region", "no", "title")
        assert schema.primary_key == ("region", "no")
        assert [c.notnull for c in schema.columns] == [True, True, False]

    def test_a_missing_table_is_a_lookup_error_naming_it(self, backend):
        with pytest.raises(LookupError, match="'nowhere'"):
            backend.reader().table_schema("nowhere")

    def test_rows_come_in_key_order_with_their_columns_in_table_order(self, backend):
        backend.create_table("cases", CASES, key=["region", "no"])
        keys = [("沪", 2), ("B", 1), ("京", 10), ("a", 1), ("京", 9), ("b", 1)]
        backend.insert("cases", *({"title": f"{r}{n}", "region": r, "no": n} for r, n in keys))

        rows = list(backend.reader().rows("cases"))

        assert [(r["region"], r["no"]) for r in rows] == [("B", 1), ("a", 1), ("b", 1), ("京", 9), ("京", 10),
                                                          ("沪", 2)]
        assert all(list(r) == ["region", "no", "title"] for r in rows)
        assert rows[0]["title"] == "B1"

    @pytest.mark.parametrize("logical", list(VALUES))
    def test_values_read_as_written(self, backend, logical):
        if logical not in backend.native:
            pytest.skip(f"{backend.name} holds {logical} values in a type of its own")
        backend.create_table("kinds", (("id", "integer"), ("value", logical), ("nothing", logical)), key=["id"])
        backend.insert("kinds", {"id": 1, "value": VALUES[logical], "nothing": None})

        [row] = backend.reader().rows("kinds")

        assert row == {"id": 1, "value": VALUES[logical], "nothing": None}
        assert type(row["value"]) is type(VALUES[logical])


globals().update(suites(TableReaderContract, "read"))
