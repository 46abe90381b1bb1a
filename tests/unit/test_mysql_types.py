"""How declared column types become MariaDB types, names are checked, and verify's normal forms."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapters.mysql.dialect import checked, column_sql, default, key_length, quote, target_types
from adapters.mysql.target_types import canonical, column_type
from exchange.contracts.changes import Column, TableSchema
from exchange.contracts.errors import InvalidInput
from exchange.tools import equivalence


@pytest.mark.parametrize("declared, mariadb", [
    ("INTEGER", "bigint"), ("TEXT", "longtext"), ("REAL", "double"), ("BLOB", "longblob"), ("NUMERIC", "longtext"),
    ("", "longtext"), ("VARCHAR(20)", "longtext"),
    ("integer", "int"), ("bigint", "bigint"), ("smallint", "smallint"), ("bigint(20) unsigned", "bigint unsigned"),
    ("int(11)", "int"), ("tinyint(1)", "tinyint(1)"), ("tinyint(4)", "tinyint"), ("boolean", "tinyint(1)"),
    ("numeric(14,2)", "decimal(14,2)"), ("numeric(20)", "decimal(20,0)"), ("numeric", "decimal(65,30)"),
    ("numeric(80,2)", "longtext"), ("decimal(10,2) unsigned", "decimal(10,2) unsigned"),
    ("real", "double"), ("double precision", "double"), ("float", "float"),
    ("timestamp with time zone", "datetime(6)"), ("timestamp(3) without time zone", "datetime(6)"),
    ("datetime", "datetime(6)"), ("time without time zone", "time(6)"), ("time with time zone", "longtext"),
    ("date", "date"), ("jsonb", "json"), ("json", "json"), ("text[]", "json"), ("integer[]", "json"),
    ("uuid", "varchar(36)"), ("character varying(40)", "varchar(40)"), ("varchar(64)", "varchar(64)"),
    ("char(3)", "varchar(3)"), ("text", "longtext"), ("bytea", "longblob"), ("varbinary(16)", "varbinary(16)"),
    ("interval", "longtext"), ("enum('a','b')", "enum('a','b')"),
])
def test_declared_types_map_to_mariadb_types(declared, mariadb):
    assert column_type(declared) == mariadb


def test_text_in_a_key_is_varchar_sharing_the_index_bytes():
    one = TableSchema("t", (Column("code", "TEXT"), Column("n", "INTEGER")), ("code",))
    two = TableSchema("t", (Column("region", "text"), Column("no", "bigint"), Column("code", "varchar(10)")),
                      ("region", "no", "code"))
    assert key_length(one) == 768 and key_length(two) == (3072 - 32) // 8
    assert column_type("TEXT", 768) == "varchar(768)" and column_type("varchar(10)", 380) == "varchar(10)"
    assert column_type("bytea", 100) == "varbinary(400)" and column_type("bigint", 100) == "bigint"


def test_varchar_columns_too_long_for_a_row_together_become_longtext():
    schema = TableSchema("t", (Column("code", "varchar(9000)"), *(Column(f"c{i}", "varchar(4000)") for i in range(4)),
                               Column("note", "varchar(10)")), ("code",))
    assert list(target_types(schema).values()) == [
        "varchar(768)", "longtext", "varchar(4000)", "varchar(4000)", "varchar(4000)", "varchar(10)"]


def test_types_as_mariadb_reports_them_compare_with_the_types_written():
    assert canonical("BIGINT(20) UNSIGNED") == "bigint unsigned" and canonical("tinyint(1)") == "tinyint(1)"


def test_literal_defaults_are_kept_and_expressions_dropped():
    def given(text, type_):
        return default(Column("c", "", default=text), type_)
    assert given("'open'::text", "longtext") == "'open'" and given("3", "bigint") == "3"
    assert given("3", "longtext") == "'3'" and given("true", "tinyint(1)") == "1"
    assert given("nextval('s'::regclass)", "bigint") is None and given("now()", "datetime(6)") is None
    assert column_sql(Column("c", "text", default="'100%'::text"), "longtext").endswith("DEFAULT '100%%'")


@pytest.mark.parametrize("name, reason", [("", "empty"), ("x" * 65, "longer than 64"), ("a ", "ends with a space"),
                                          ("a\0", "NUL"), ("🐉", "basic plane")])
def test_names_mariadb_cannot_hold_are_refused_saying_why(name, reason):
    with pytest.raises(InvalidInput, match=reason):
        checked(name)


def test_names_are_quoted_with_backticks():
    assert quote('案件 `x` 100%') == '`案件 ``x`` 100%%`'


def test_verify_normal_forms_make_equivalent_values_equal():
    assert equivalence.value(datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == \
        equivalence.value(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert equivalence.value(Decimal("10.50")) == Decimal("10.5") and type(equivalence.value(Decimal("2.00"))) is int
    assert equivalence.value(["a", "京"]) == '["a","京"]'
    as_json = equivalence.column(["json", "jsonb"])
    assert as_json('{"b": [1, 2], "a": 1}') == as_json('{"a":1,"b":[1,2]}') and as_json("not json") == "not json"
    assert equivalence.column(["tinyint(1)", "boolean"])(1) is True
    assert equivalence.column(["bigint"])(1) == 1 and type(equivalence.value(1.0)) is float
